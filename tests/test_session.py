"""KernelSession on a real kernel in the local sandbox: streaming, input, interrupts, escalation."""
from __future__ import annotations

import asyncio

import pytest

from kernels.manager import start_spec
from kernels.plugins import discover
from kernels.result import LimitHit, Output, RunLimits, RunStatus
from kernels.sandbox import create_sandbox
from kernels.session import KernelSession, SessionClosed

SHORT = RunLimits(timeout=1.0, output_bytes=4096)


@pytest.fixture
async def session(make_settings):
    settings = make_settings(LS_SANDBOX="local")
    sandbox = create_sandbox(settings)
    python = next(p for p in discover() if p.name == "python")
    kernel = await sandbox.start(start_spec(settings, python))
    session = KernelSession(sandbox, kernel)
    yield session
    await session.close()
    await sandbox.kill(kernel)
    await sandbox.close()


async def test_outputs_stream_in_order_as_they_arrive(session):
    seen: list[tuple[float, Output]] = []

    def on_output(output: Output) -> None:
        seen.append((asyncio.get_running_loop().time(), output))

    began = asyncio.get_running_loop().time()
    result = await session.execute(
        "import time, sys\nprint('a', flush=True)\ntime.sleep(0.5)\n"
        "print('b', file=sys.stderr)\n6 * 7", SHORT, on_output)
    assert result.status is RunStatus.OK and result.message is None
    assert [(o.output_type, o.text or o.data["text/plain"]) for _, o in seen] == [
        ("stream", "a\n"), ("stream", "b\n"), ("execute_result", "42")]
    assert seen[0][0] - began < 0.4  # 'a' came before the sleep ended, not with the reply
    assert result.outputs == tuple(o for _, o in seen)
    assert result.execution_count == 1


async def test_state_is_kept_between_runs_and_errors_are_reported(session):
    await session.execute("x = 41", SHORT)
    assert (await session.execute("print(x + 1)", SHORT)).stdout == "42\n"
    result = await session.execute("1/0", SHORT)
    assert result.status is RunStatus.ERROR and result.error.ename == "ZeroDivisionError"


async def test_input_is_answered_through_the_callback(session):
    asked = []

    async def on_input(prompt: str, password: bool) -> str:
        asked.append((prompt, password))
        return "Ada"

    result = await session.execute("name = input('Name? ')\nprint('Hi', name)", SHORT,
                                   on_input=on_input)
    assert asked == [("Name? ", False)] and result.stdout == "Hi Ada\n"


async def test_timeout_interrupts_and_the_kernel_lives_on(session):
    result = await session.execute("import time\nx = 1\ntime.sleep(60)", SHORT)
    assert (result.status, result.limit, result.message) == (
        RunStatus.LIMIT, LimitHit.TIMEOUT, "Stopped after 1 s")
    assert not session.dead
    assert (await session.execute("print(x)", SHORT)).stdout == "1\n"


async def test_code_that_ignores_interrupts_is_killed(session):
    code = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass"
    began = asyncio.get_running_loop().time()
    result = await session.execute(code, SHORT)
    assert (result.status, result.limit) == (RunStatus.LIMIT, LimitHit.TIMEOUT)
    assert asyncio.get_running_loop().time() - began < SHORT.timeout + 4
    assert session.killed and session.dead
    assert (await asyncio.wait_for(session.wait_exit(), 5)) is not None
    with pytest.raises(SessionClosed):
        await session.execute("print(1)", SHORT)


async def test_output_flood_is_cut_then_stopped(session):
    forwarded: list[Output] = []

    def on_output(output: Output) -> None:
        forwarded.append(output)

    result = await session.execute("while True: print('x' * 99)", SHORT, on_output)
    assert (result.status, result.limit) == (RunStatus.LIMIT, LimitHit.OUTPUT)
    assert sum(len(o.text or "") for o in forwarded) == 4096
    assert result.bytes_dropped > 0 and result.message.startswith("Output cut at 4 KB (")
    assert (await session.execute("print(1)", SHORT)).stdout == "1\n"


async def test_interrupt_from_outside(session):
    run = asyncio.create_task(session.execute("import time; time.sleep(60)", RunLimits(timeout=30)))
    await asyncio.sleep(0.5)
    await session.interrupt()
    result = await asyncio.wait_for(run, 5)
    assert result.status is RunStatus.ERROR and result.error.ename == "KeyboardInterrupt"
    assert result.message == "Interrupted"


async def test_death_during_a_run_ends_it_at_once(session):
    result = await asyncio.wait_for(session.execute("import os; os._exit(3)", SHORT), 3)
    assert (result.status, result.message) == (RunStatus.DIED, "The kernel died (exit code 3)")
    assert session.dead and session.exit.exit_code == 3


SEND = ("import threading, time\n"
        "k = get_ipython().kernel\n"
        "def send(kind, content, parent):\n"
        "    k.session.send(k.iopub_socket, kind, content, parent={'msg_id': parent})\n")


async def test_malformed_kernel_messages_are_skipped_and_counted(session):
    code = SEND + (
        "for content in ({'name': 'stdout', 'text': 5}, {'name': 'stdout', 'text': ['a']}):\n"
        "    send('stream', content, k.get_parent()['header']['msg_id'])\n"
        "send('display_data', {'data': [1, 2], 'transient': 'x'}, k.get_parent()['header']['msg_id'])\n"
        "send('error', {'ename': 'E', 'evalue': 'v', 'traceback': 7}, "
        "k.get_parent()['header']['msg_id'])\n"
        "print('done')")
    result = await session.execute(code, SHORT)
    assert result.status is RunStatus.OK and result.stdout == "done\n"
    again = await session.execute("print('next')", SHORT)      # the kernel and its limits work on
    assert again.stdout == "next\n"


async def test_messages_for_nobody_are_dropped_not_buffered(session):
    """A kernel flooding with invented parent ids cannot grow the server (issue 9, item 1)."""
    code = SEND + (
        "def flood():\n"
        "    for n in range(200):\n"
        "        send('stream', {'name': 'stdout', 'text': 'A' * 65536}, f'forged-{n}')\n"
        "t = threading.Thread(target=flood); t.start(); t.join()\n"
        "print('done')")
    result = await session.execute(code, RunLimits(timeout=20.0, output_bytes=4096))
    assert result.status is RunStatus.OK and result.stdout == "done\n"
    await asyncio.sleep(0.2)
    assert session.dropped >= 200
    assert all(not run.pending for run in session._runs.values())


async def test_a_kernel_that_reads_nothing_never_makes_the_server_wait(session):
    """Sends never block the event loop: past the kernel's queues they are refused and counted."""
    stop = ("import os, signal, threading\n"
            "threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGSTOP)).start()")
    assert (await session.execute(stop, SHORT)).status is RunStatus.OK
    await asyncio.sleep(0.6)                       # the whole kernel is stopped: it reads nothing
    loop = asyncio.get_running_loop()
    began = loop.time()
    for _ in range(20_000):
        session._send_raw("shell", "kernel_info_request", {})
    assert session.unsent > 0
    assert loop.time() - began < 5
