"""server/eager_task.start: the first step now, the rest as a task, as a task would behave."""
import asyncio
import contextvars

import pytest

from server.eager_task import start

where = contextvars.ContextVar("where", default="caller")


async def test_the_first_step_runs_before_start_returns_and_the_rest_as_a_task():
    steps = []

    async def run():
        steps.append("until the first wait")
        where.set("the run's own")
        await asyncio.sleep(0.01)
        steps.append("after it")
        return where.get()

    task = start(run(), name="a run")
    assert steps == ["until the first wait"] and where.get() == "caller"
    assert isinstance(task, asyncio.Task) and task.get_name() == "a run" and not task.done()
    assert await task == "the run's own" and steps[-1] == "after it"


async def test_a_coroutine_that_never_waits_gives_a_finished_future():
    async def refused():
        return "said why"

    async def broken():
        raise ValueError("bad frame")

    done = start(refused())
    assert done.done() and done.result() == "said why"
    failed = start(broken())
    assert failed.done() and isinstance(failed.exception(), ValueError)


async def test_a_cancel_reaches_the_coroutine_and_its_cleanup_may_wait():
    seen = []

    async def long_run():
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("cancelled")
            await asyncio.sleep(0.01)        # cleanup that waits, as a kernel interrupt does
            seen.append("cleaned up")
            raise

    task = start(long_run())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled", "cleaned up"] and task.cancelled()


async def test_waits_on_sleep_zero_and_on_futures_resume_with_their_results():
    loop = asyncio.get_running_loop()
    answer = loop.create_future()

    async def run():
        await asyncio.sleep(0)
        return await answer

    task = start(run())
    loop.call_later(0.01, answer.set_result, 42)
    assert await task == 42
