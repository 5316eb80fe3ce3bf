"""Run code in one sandboxed kernel with limits: the ZMQ shell around `kernels.fold`.

One KernelSession per kernel. Reader tasks put every message of the shell,
iopub and stdin channels on one queue; `execute` folds those of its own
request into a RunState and reacts to what the fold reports. The wall-clock
limit escalates: an interrupt_request, then SIGINT through the sandbox, then
killing the sandbox (C code holding the GIL ignores the first two). The
session never starts kernels: after a kill or a death, `dead` is true and the
owner (the manager) replaces the kernel.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import zmq.asyncio
from jupyter_client.asynchronous import AsyncKernelClient

from kernels import fold
from kernels.result import LimitHit, Output, RunLimits, RunResult

if TYPE_CHECKING:
    from kernels.sandbox import KernelExit, Sandbox, SandboxKernel

log = logging.getLogger(__name__)

GRACE = 1.0            # seconds each escalation step waits before the next
PROBE_EVERY = 0.1      # seconds between kernel_info probes while iopub connects
READY_TIMEOUT = 10.0   # seconds the first handshake may take

OnOutput = Callable[[Output], Awaitable[None]]
OnInput = Callable[[str, bool], Awaitable[str]]


class SessionClosed(RuntimeError):
    """The kernel is gone (killed, dead or closed); the manager must replace it."""


class KernelSession:
    def __init__(self, sandbox: Sandbox, kernel: SandboxKernel) -> None:
        self.sandbox = sandbox
        self.kernel = kernel
        self.killed = False                  # we killed it (timeout escalation, fork bomb)
        self.exit: KernelExit | None = None  # how it ended, once it has
        self._context = zmq.asyncio.Context()
        self._client = AsyncKernelClient(context=self._context)
        self._client.load_connection_info(dict(kernel.connection))
        self._client.start_channels(shell=True, iopub=True, stdin=True, hb=False, control=True)
        self._queue: asyncio.Queue[tuple[str, dict]] = asyncio.Queue()
        self._readers = [asyncio.create_task(self._read(name, channel)) for name, channel in (
            ("shell", self._client.shell_channel), ("iopub", self._client.iopub_channel),
            ("stdin", self._client.stdin_channel), ("control", self._client.control_channel))]
        self._exited = asyncio.create_task(self._watch())
        self._ready = False
        self._closed = False

    @property
    def dead(self) -> bool:
        return self.killed or self.exit is not None or self._closed

    async def wait_exit(self) -> KernelExit:
        """Resolves when the kernel ends, for whatever reason (one sandbox.wait per kernel)."""
        return await asyncio.shield(self._exited)

    async def _watch(self) -> KernelExit:
        self.exit = await self.sandbox.wait(self.kernel)
        return self.exit

    async def _read(self, name: str, channel) -> None:
        while True:
            try:
                msg = await channel.get_msg()
            except asyncio.CancelledError:
                raise
            except Exception:  # a garbled frame must not stop the reader
                log.exception("kernel %s: unreadable %s message", self.kernel.id, name)
                continue
            self._queue.put_nowait((name, msg))

    async def _next(self, deadline: float) -> tuple[str, Any] | None:
        """(channel, message), ("exit", KernelExit), or None when the deadline passes."""
        if not self._queue.empty():
            return self._queue.get_nowait()
        if self._exited.done():
            return self._exit_event()
        getter = asyncio.ensure_future(self._queue.get())
        timeout = max(0.0, deadline - asyncio.get_running_loop().time())
        done, _ = await asyncio.wait({getter, self._exited}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            return getter.result()
        getter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await getter
        if getter.done() and not getter.cancelled():  # a message won the race with cancel
            return getter.result()
        return self._exit_event() if self._exited in done else None

    def _exit_event(self) -> tuple[str, Any]:
        if self._exited.cancelled() or self._exited.exception() is not None:
            return "closed", None            # close() was called, or the sandbox lost track
        return "exit", self._exited.result()

    async def _handshake(self) -> None:
        """Wait until iopub is subscribed, so no output of the first run is lost."""
        if self._ready:
            return
        loop = asyncio.get_running_loop()
        give_up = loop.time() + READY_TIMEOUT
        probes: set[str] = set()
        replied = published = False
        while not (replied and published):
            if loop.time() >= give_up:
                raise SessionClosed(f"kernel {self.kernel.id} did not answer")
            probes.add(self._client.kernel_info())
            probe_until = min(give_up, loop.time() + PROBE_EVERY)
            while not (replied and published) and loop.time() < probe_until:
                event = await self._next(probe_until)
                if event is None:
                    break
                channel, msg = event
                if channel in ("exit", "closed"):
                    raise SessionClosed(f"kernel {self.kernel.id} ended")
                if msg.get("parent_header", {}).get("msg_id") in probes:
                    replied = replied or channel == "shell"
                    published = published or channel == "iopub"
        self._ready = True

    async def execute(self, code: str, limits: RunLimits, on_output: OnOutput | None = None,
                      on_input: OnInput | None = None) -> RunResult:
        if self.dead:
            raise SessionClosed(f"kernel {self.kernel.id} is gone")
        await self._handshake()
        loop = asyncio.get_running_loop()
        msg_id = self._client.execute(code, store_history=True, allow_stdin=on_input is not None)
        state = fold.start(limits, msg_id)
        step, timed_out = 0, False           # escalation step: 0 none, 1 message, 2 signal
        deadline = loop.time() + limits.timeout
        while not state.done:
            event = await self._next(deadline)
            if event is None:                # the deadline of the current step passed
                timed_out = timed_out or step == 0
                if step == 2:
                    await self._kill()
                    return fold.finish(state, timed_out=timed_out)
                step += 1
                await (self.interrupt() if step == 1 else self.sandbox.interrupt(self.kernel))
                deadline = loop.time() + GRACE
                continue
            channel, msg = event
            if channel == "closed":
                raise SessionClosed(f"kernel {self.kernel.id} was closed during the run")
            if channel == "exit":
                return fold.finish(state, timed_out=timed_out, died=True,
                                   exit_code=msg.exit_code, oom_killed=msg.oom_killed)
            if channel == "stdin":
                deadline += await self._answer(msg, msg_id, on_input)
                continue
            was_capped = state.capped
            state, outputs = fold.fold(state, msg)
            for output in outputs:
                if on_output is not None:
                    try:
                        await on_output(output)
                    except Exception:  # a closed socket must not leave the run without limits
                        log.exception("kernel %s: on_output failed; not forwarding more",
                                      self.kernel.id)
                        on_output = None
            if state.capped and not was_capped and step == 0:
                step = 1                     # stop the flood; what still comes is discarded
                await self.interrupt()
                deadline = loop.time() + GRACE
        if state.limit is LimitHit.PIDS:
            await self._kill()               # children of a fork bomb keep spinning otherwise
        return fold.finish(state, timed_out=timed_out)

    async def _answer(self, msg: dict, msg_id: str, on_input: OnInput | None) -> float:
        """Answer an input_request; returns the seconds spent waiting for the learner."""
        if msg.get("parent_header", {}).get("msg_id") != msg_id or on_input is None:
            return 0.0
        loop = asyncio.get_running_loop()
        began = loop.time()
        content = msg.get("content", {})
        value = await on_input(content.get("prompt", ""), bool(content.get("password")))
        self._client.input(value)
        return loop.time() - began

    async def interrupt(self) -> None:
        """Ask the kernel to interrupt the running code (the kernel raises KeyboardInterrupt)."""
        if not self.dead:
            self._client.control_channel.send(self._client.session.msg("interrupt_request", {}))

    async def _kill(self) -> None:
        self.killed = True
        await self.sandbox.kill(self.kernel)

    async def close(self) -> None:
        """Stop talking to the kernel; the kernel itself is the caller's to kill."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(("closed", None))   # wakes a run in progress
        for task in (*self._readers, self._exited):
            task.cancel()
        try:
            await asyncio.gather(*self._readers, self._exited, return_exceptions=True)
        finally:  # also when our caller is cancelled: a context left to the GC blocks in term()
            self._client.stop_channels()
            self._context.destroy(linger=0)
