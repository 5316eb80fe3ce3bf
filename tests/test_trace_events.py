"""The pure core of tracing: event constructors, the tracer's numbering and the summary fold."""
from __future__ import annotations

import asyncio
import itertools
import json
import random

from kernels.result import LimitHit, Output, RunResult, RunStatus
from server.tracing.events import (RUNNING, EventKind, TraceEvent, code_hash, output_data,
                                   summarize)
from kernels import events as ke
from server.tracing.tracer import HOLD, KernelEventRouter, RunTracer


class FakeClock:
    """Wall clock and monotonic clock that tests move by hand."""

    def __init__(self) -> None:
        self.wall, self.mono = 1_700_000_000.0, 100.0

    def advance(self, ms: float) -> None:
        self.wall += ms / 1000
        self.mono += ms / 1000


def traced_run(result: RunResult, *, pool_hit: bool = False, with_verdict: bool = True):
    """A run as the handler records it: 20 ms waiting (15 of them a cold start), outputs, result."""
    clock, emitted = FakeClock(), []
    tracer = RunTracer(emitted.append, clock=lambda: clock.wall, monotonic=lambda: clock.mono)
    tracer.requested(user_id="u1", lesson_slug="intro", exercise_id="ex1", kernel="python",
                     code="print('hi')")
    clock.advance(20)
    tracer.kernel_assigned(pool_hit=pool_hit, container_id="c0ffee", start_ms=15)
    clock.advance(5)
    for output in result.outputs:
        tracer.output(output)
        clock.advance(1)
    if with_verdict:
        tracer.verdict(result.status is RunStatus.OK, "ok")
    clock.advance(4)
    tracer.finished(result)
    return tracer, emitted


HELLO = Output("stream", name="stdout", text="hi\n")
OK = RunResult(RunStatus.OK, outputs=(HELLO, HELLO), bytes_out=6)


def asked(emitted: list, clock: FakeClock) -> RunTracer:
    tracer = RunTracer(emitted.append, clock=lambda: clock.wall, monotonic=lambda: clock.mono)
    tracer.requested_held(user_id="u1", lesson_slug="intro", exercise_id="ex1", kernel="python",
                          code="print('hi')")
    return tracer


async def test_a_lesson_runs_request_is_held_to_its_end_and_stamped_when_asked():
    """A lesson run builds no event on its way to its kernel nor while the kernel starts on it:
    the request is recorded at the run's end (or once it lasts), with the time it was made, and
    what was recorded meanwhile follows it in order."""
    clock, emitted = FakeClock(), []
    asked_at = clock.wall
    tracer = asked(emitted, clock)
    clock.advance(3)
    tracer.kernel_assigned(pool_hit=True, container_id="c0ffee")
    await asyncio.sleep(0)
    clock.advance(2)
    tracer.output(HELLO)
    assert emitted == []
    tracer.finished(OK)
    assert [e.kind for e in emitted] == [EventKind.REQUESTED, EventKind.KERNEL_ASSIGNED,
                                         EventKind.OUTPUT, EventKind.FINISHED]
    assert [e.seq for e in emitted] == [0, 1, 2, 3]
    assert [e.data["elapsed_ms"] for e in emitted] == [0.0, 3.0, 5.0, 5.0]
    assert emitted[0].ts == asked_at and emitted[0].data["code"] == "print('hi')"
    assert emitted[0].data["client"] == "lesson"


async def test_a_run_given_up_hands_on_what_was_held_at_once():
    clock, emitted = FakeClock(), []
    tracer = asked(emitted, clock)
    tracer.output(HELLO)
    tracer.release()                 # e.g. the run was cancelled as the server stopped
    assert [e.kind for e in emitted] == [EventKind.REQUESTED, EventKind.OUTPUT]
    await asyncio.sleep(HOLD + 0.05)
    assert len(emitted) == 2         # and nothing twice


async def test_a_lesson_run_that_lasts_is_traced_as_it_goes():
    clock, emitted = FakeClock(), []
    tracer = asked(emitted, clock)
    tracer.output(HELLO)
    await asyncio.sleep(HOLD + 0.05)
    assert [e.kind for e in emitted] == [EventKind.REQUESTED, EventKind.OUTPUT]
    tracer.output(HELLO)                                   # no longer held
    assert [e.kind for e in emitted][-1] == EventKind.OUTPUT and len(emitted) == 3


def test_events_are_numbered_in_order_with_unique_ids_and_one_run_id():
    tracer, emitted = traced_run(OK)
    assert [e.seq for e in emitted] == list(range(len(emitted)))
    assert len({e.id for e in emitted}) == len(emitted)
    assert all(len(e.id) == 32 and int(e.id, 16) >= 0 for e in emitted)
    assert {e.run_id for e in emitted} == {tracer.run_id}
    assert [e.kind for e in emitted] == [EventKind.REQUESTED, EventKind.KERNEL_ASSIGNED,
                                         EventKind.OUTPUT, EventKind.OUTPUT, EventKind.VERDICT,
                                         EventKind.FINISHED]
    assert [e.data["elapsed_ms"] for e in emitted] == [0.0, 20.0, 25.0, 26.0, 27.0, 31.0]


def test_requested_records_who_what_and_a_hash_of_the_code():
    _, emitted = traced_run(OK)
    data = emitted[0].data
    assert (data["user_id"], data["lesson_slug"], data["exercise_id"], data["kernel"]) == \
        ("u1", "intro", "ex1", "python")
    assert data["code"] == "print('hi')" and data["code_hash"] == code_hash("print('hi')")
    assert len(data["code_hash"]) == 64


def test_output_summaries_keep_sizes_types_and_error_names_not_content():
    stream = output_data(Output("stream", name="stderr", text="é!\n"))
    assert stream == {"output_type": "stream", "name": "stderr", "bytes": 4}
    display = output_data(Output("display_data", data={"image/png": "AAAA", "text/plain": "<Figure>"}))
    assert display["mime_types"] == ["image/png", "text/plain"] and display["bytes"] == 12
    error = output_data(Output("error", ename="ZeroDivisionError", evalue="division by zero" * 100,
                               traceback=("Traceback", "ZeroDivisionError")))
    assert error["ename"] == "ZeroDivisionError" and len(error["evalue"]) == 500
    assert "traceback" not in error


def test_event_json_round_trips_and_is_json_safe():
    _, emitted = traced_run(OK)
    for event in emitted:
        raw = json.loads(json.dumps(event.to_json()))
        assert TraceEvent.from_json(raw) == event


def test_summary_of_a_finished_run():
    tracer, emitted = traced_run(OK)
    s = summarize(tracer.run_id, emitted)
    assert (s.user_id, s.lesson_slug, s.exercise_id, s.kernel) == ("u1", "intro", "ex1", "python")
    assert (s.status, s.verdict, s.limit_hit) == ("ok", "passed", None)
    assert (s.pool_hit, s.container_id) == (False, "c0ffee")
    assert (s.queue_ms, s.start_ms, s.first_output_ms, s.total_ms) == (5.0, 15.0, 25.0, 31.0)
    assert s.bytes_out == 6 and s.event_count == 6
    assert s.requested_at == 1_700_000_000.0 and s.finished_at == emitted[-1].ts


def test_a_pool_hit_has_no_start_time_and_all_waiting_is_queueing():
    tracer, emitted = traced_run(OK, pool_hit=True)
    s = summarize(tracer.run_id, emitted)
    assert (s.pool_hit, s.start_ms, s.queue_ms) == (True, 0.0, 20.0)


def test_a_limit_in_the_result_is_traced_once_and_lands_in_the_summary():
    result = RunResult(RunStatus.LIMIT, outputs=(HELLO,), limit=LimitHit.TIMEOUT,
                       message="stopped after 10 s", bytes_out=3)
    clock, emitted = FakeClock(), []
    tracer = RunTracer(emitted.append, clock=lambda: clock.wall, monotonic=lambda: clock.mono)
    tracer.limit(LimitHit.TIMEOUT, "wall clock")        # the kernel manager saw it first
    tracer.finished(result)
    assert [e.kind for e in emitted].count(EventKind.LIMIT) == 1
    s = summarize(tracer.run_id, emitted)
    assert (s.status, s.limit_hit) == ("limit", "timeout")


def test_a_limit_only_in_the_result_gets_its_own_event():
    result = RunResult(RunStatus.LIMIT, limit=LimitHit.OUTPUT, message="too much output")
    tracer, emitted = traced_run(result, with_verdict=False)
    limits = [e for e in emitted if e.kind is EventKind.LIMIT]
    assert [e.data["limit"] for e in limits] == ["output"]
    assert limits[0].data["message"] == "too much output"


def test_summary_does_not_depend_on_arrival_order_or_batching():
    tracer, emitted = traced_run(OK)
    expected = summarize(tracer.run_id, emitted)
    for shuffled in itertools.islice(itertools.permutations(emitted), 0, 720, 37):
        assert summarize(tracer.run_id, shuffled) == expected


def test_partial_runs_stay_running_and_fall_back_to_output_bytes():
    tracer, emitted = traced_run(OK)
    s = summarize(tracer.run_id, emitted[:4])          # the result has not arrived yet
    assert s.status == RUNNING and s.total_ms is None and s.bytes_out == 6
    s = summarize(tracer.run_id, emitted[2:4])         # outputs before the request
    assert s.user_id is None and s.event_count == 2


def test_a_kernel_death_ends_a_run_that_never_finished():
    clock, emitted = FakeClock(), []
    tracer = RunTracer(emitted.append, clock=lambda: clock.wall, monotonic=lambda: clock.mono)
    tracer.requested(user_id=None, lesson_slug=None, exercise_id=None, kernel="python", code="")
    tracer.restarted("memory")
    clock.advance(7)
    tracer.died("exit", exit_code=137)
    s = summarize(tracer.run_id, emitted)
    assert (s.status, s.total_ms) == ("died", 7.0)
    died_then_finished = emitted + [TraceEvent(
        id="f" * 32, run_id=tracer.run_id, seq=99, ts=clock.wall, kind=EventKind.FINISHED,
        data={"status": "died", "elapsed_ms": 9.0, "bytes_out": 0})]
    assert summarize(tracer.run_id, died_then_finished).total_ms == 9.0


def test_kernel_manager_hook_maps_its_events_and_wraps_unknown_ones():
    emitted: list[TraceEvent] = []
    tracer = RunTracer(emitted.append)
    tracer.on_event(ke.KernelAssigned("k1", "u", "python", False, "c0ffee", 812.5))
    tracer.on_event(ke.KernelLimited("k1", "u", "python", "memory", "256 MiB"))
    tracer.on_event(ke.KernelRestarted("k1", "u", "python", "oom", True, "c1", 0.0))
    tracer.on_event(ke.KernelDied("k1", "u", "python", "c0ffee", 137, True, "oom", False))
    tracer.on_event(ke.KernelGone("k1", "u", "idle", culled=True))
    assert [e.kind for e in emitted] == [EventKind.KERNEL_ASSIGNED, EventKind.LIMIT,
                                         EventKind.KERNEL_RESTARTED, EventKind.KERNEL_DIED,
                                         EventKind.KERNEL_EVENT]
    assert emitted[0].data["container_id"] == "c0ffee" and emitted[0].data["start_ms"] == 812.5
    assert emitted[1].data["limit"] == "memory"
    assert emitted[3].data["oom_killed"] is True
    assert emitted[4].data["event"] == "KernelGone" and emitted[4].data["culled"] is True
    tracer.finished(RunResult(RunStatus.LIMIT, limit=LimitHit.MEMORY))
    assert [e.kind for e in emitted].count(EventKind.LIMIT) == 1
    s = summarize(tracer.run_id, emitted)
    assert (s.status, s.limit_hit, s.start_ms) == ("limit", "memory", 812.5)


def test_a_failing_emit_never_breaks_the_run():
    def broken(_event):
        raise RuntimeError("buffer gone")
    tracer = RunTracer(broken)
    tracer.requested(user_id="u", lesson_slug="l", exercise_id="e", kernel="python", code="1")
    tracer.output(Output("stream", name="stdout", text="x"))   # no exception reaches the caller


def test_random_interleavings_of_many_runs_fold_per_run():
    rng = random.Random(7)
    runs = [traced_run(OK) for _ in range(5)]
    mixed = [e for _, emitted in runs for e in emitted]
    rng.shuffle(mixed)
    for tracer, emitted in runs:
        mine = [e for e in mixed if e.run_id == tracer.run_id]
        assert summarize(tracer.run_id, mine) == summarize(tracer.run_id, emitted)


def test_router_sends_kernel_events_to_the_run_on_that_kernel_only_while_attached():
    router, mine, other = KernelEventRouter(), [], []
    tracer, other_tracer = RunTracer(mine.append), RunTracer(other.append)
    router.attach("k1", tracer)
    router.attach("k2", other_tracer)
    router(ke.KernelDied("k1", "u", "python", "c", 9, False, "exited", False))
    router(ke.KernelGone("k3", "u", "idle", culled=True))
    router.detach("k1")
    router(ke.KernelRestarted("k1", "u", "python", "late", True, "c", 0.0))
    assert [e.kind for e in mine] == [EventKind.KERNEL_DIED] and other == []


async def test_router_traces_a_jupyter_clients_run_from_start_to_end():
    """Built at the run's end (or once it lasts), in order: the kernel's reader reports them
    between one message to the client and the next."""
    emitted: list[TraceEvent] = []
    router = KernelEventRouter(emitted.append)
    router(ke.RunStarted("k1", "api:token", "python", "m1", "print(1)"))
    router(ke.RunOutput("k1", "m1", Output("stream", name="stdout", text="1\n")))
    await asyncio.sleep(0)
    assert emitted == []
    router(ke.KernelLimited("k1", "api:token", "python", "timeout", "Stopped after 1 s"))
    router(ke.RunEnded("k1", "m1", RunResult(RunStatus.LIMIT, limit=LimitHit.TIMEOUT,
                                             message="Stopped after 1 s")))
    router(ke.KernelDied("k1", "u", "python", "c", 9, False, "exited", True))   # after the run
    assert [e.kind for e in emitted] == [EventKind.REQUESTED, EventKind.OUTPUT, EventKind.LIMIT,
                                         EventKind.FINISHED]
    assert [e.seq for e in emitted] == [0, 1, 2, 3]
    s = summarize(emitted[0].run_id, emitted)
    assert (s.client, s.user_id, s.kernel, s.code, s.status, s.limit_hit) == (
        "api", "api:token", "python", "print(1)", "limit", "timeout")


async def test_a_jupyter_clients_long_run_is_traced_as_it_goes():
    emitted: list[TraceEvent] = []
    router = KernelEventRouter(emitted.append)
    router(ke.RunStarted("k1", "api:token", "python", "m1", "import time; time.sleep(9)"))
    await asyncio.sleep(HOLD + 0.05)
    assert [e.kind for e in emitted] == [EventKind.REQUESTED]
    router(ke.RunOutput("k1", "m1", Output("stream", name="stdout", text="1\n")))
    await asyncio.sleep(HOLD + 0.05)
    assert [e.kind for e in emitted] == [EventKind.REQUESTED, EventKind.OUTPUT]
