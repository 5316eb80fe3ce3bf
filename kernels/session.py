"""The one owner of a sandboxed kernel's ZMQ sockets: lesson runs and Jupyter clients alike.

One KernelSession per kernel. A reader per channel (`SocketReader`) checks each message and
hands it to `_dispatch`, which routes it at once by its parent id: to the run
that sent the request (folded there, so output past the cap is discarded at
the reader and a run buffers at most its cap), to the Jupyter clients
(`Relay`s) attached to the kernel, or nowhere (dropped and counted). Nothing
queues without a bound.

Every execute_request is a run with limits, whoever sent it: `execute()` for
lesson runs, and requests relayed from a Jupyter client. The wall-clock limit
escalates: an interrupt_request, then SIGINT through the sandbox, then killing
the sandbox. A relayed run that hits a limit is told to its client as a stderr
stream and an error reply in plain words. The session never starts kernels:
after a kill or a death, `dead` is true and the owner replaces the kernel.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import zmq
import zmq.asyncio
from jupyter_client.session import DELIM, Session

from kernels import fold, messages
from kernels.connection import channel_url
from kernels.messages import BadMessage, ClientMessage, KernelMessage
from kernels.result import LimitHit, Output, RunLimits, RunResult, RunStatus
from kernels.socket_reader import NOBLOCK, SocketReader

if TYPE_CHECKING:
    from kernels.relay import Relay
    from kernels.sandbox import KernelExit, Sandbox, SandboxKernel

log = logging.getLogger(__name__)

GRACE = 1.0            # seconds each escalation step waits before the next
PROBE_EVERY = 0.1      # seconds between kernel_info probes while iopub connects
READY_TIMEOUT = 10.0   # seconds the first handshake may take
REQUESTS = 1024        # client requests remembered for routing their replies
CHANNELS = {"shell": zmq.DEALER, "control": zmq.DEALER, "stdin": zmq.DEALER, "iopub": zmq.SUB}
OUTPUT_KINDS = frozenset({*fold.OUTPUT_TYPES, "update_display_data", "clear_output"})
PENDING_INPUTS = 8     # input requests a lesson run keeps while the learner answers one
UNREAD_STREAM = 4096   # bytes of a stream message that, past the cap, is dropped unparsed
_MORE = NOBLOCK | int(zmq.SNDMORE)          # plain ints: see kernels/socket_reader.py

OnOutput = Callable[[Output], None]   # called from the kernel's reader: must not block
OnInput = Callable[[str, bool], Awaitable[str]]


def shared_context(kernels: int) -> zmq.asyncio.Context:
    """One ZMQ context for the sessions of all of a host's kernels (their owner closes it).

    A context per session cost each kernel an I/O thread and a reaper thread, and each
    session ~1 ms to make and tear down: a live event's 200 first runs woke 200 threads
    on a 2-core host. Room for every kernel's sockets twice (a replacement overlaps the
    kernel it replaces), within what the system allows.
    """
    context = zmq.asyncio.Context()
    wanted = max(1024, 2 * len(CHANNELS) * kernels + 64)
    context.set(zmq.MAX_SOCKETS, min(wanted, context.get(zmq.SOCKET_LIMIT)))
    return context


class SessionClosed(RuntimeError):
    """The kernel is gone (killed, dead or closed); the manager must replace it."""


@dataclasses.dataclass
class SessionHooks:
    """What the session tells its owner about relayed runs (the manager traces them)."""
    run_started: Callable[[str, str], None] = lambda run_id, code: None
    run_output: Callable[[str, Output], None] = lambda run_id, output: None
    run_ended: Callable[[str, RunResult], None] = lambda run_id, result: None
    status: Callable[[str], None] = lambda state: None
    admit_run: Callable[[], str | None] = lambda: None   # a refusal in plain words, or None


@dataclasses.dataclass(eq=False)
class _Run:
    id: str
    state: fold.RunState
    relay: Relay | None = None            # the client that sent it; None for lesson runs
    header: dict | None = None            # the request's header, parent of our notes
    started: bool = False                 # the kernel said busy for it
    waiting_input: bool = False           # a relayed input_request is unanswered
    told: bool = False                    # its client was told why output stopped
    on_output: OnOutput | None = None     # a lesson run's outputs, handed on as they arrive
    inputs: collections.deque = dataclasses.field(default_factory=collections.deque)
    wake: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)


class KernelSession:
    def __init__(self, sandbox: Sandbox, kernel: SandboxKernel, limits: RunLimits | None = None,
                 hooks: SessionHooks | None = None,
                 context: zmq.asyncio.Context | None = None) -> None:
        self.sandbox = sandbox
        self.kernel = kernel
        self.limits = limits or RunLimits()                # for relayed runs (lesson runs pass their own)
        self.hooks = hooks or SessionHooks()
        self.killed = False                  # we killed it (timeout escalation, fork bomb)
        self.exit: KernelExit | None = None  # how it ended, once it has
        self.dropped = 0                     # messages nobody was waiting for
        self.unsent = 0                      # ours the kernel would not take (1000 unread)
        self.malformed = 0                   # messages with a bad signature or shape
        self.execution_state = "starting"
        info = kernel.connection
        self._session = Session(key=str(info["key"]).encode(),
                                signature_scheme=info.get("signature_scheme", "hmac-sha256"),
                                username="lessonserver")
        self._own_context = context is None         # a lone session (tests, benches) has its own
        self._context = context if context is not None else zmq.asyncio.Context()
        self._sockets: dict[str, zmq.Socket] = {}
        for name, kind in CHANNELS.items():
            sock = zmq.Socket(self._context, kind)   # read by a SocketReader, not zmq.asyncio
            sock.setsockopt(zmq.LINGER, 0)
            if kind == zmq.SUB:
                sock.setsockopt(zmq.SUBSCRIBE, b"")
            elif name in ("shell", "stdin"):
                # The kernel sends input_request to the stdin socket whose identity is the
                # shell requester's, as jupyter_client sets it.
                sock.setsockopt(zmq.IDENTITY, self._session.bsession)
            sock.connect(channel_url(info, name))
            self._sockets[name] = sock
        self._runs: dict[str, _Run] = {}
        self._window = fold.start(self.limits)  # output with parents of no run of ours
        self._requests: collections.OrderedDict[str, Relay] = collections.OrderedDict()
        self._relays: set[Relay] = set()
        self._probes: set[str] = set()
        self._probe_answers: set[tuple[str, str]] = set()
        self._probed = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._readers = {name: SocketReader(sock, functools.partial(self._received, name))
                         for name, sock in self._sockets.items()}
        self._exited = asyncio.create_task(self._watch())
        self._exited.add_done_callback(self._wake_runs)   # however it ends
        self._ready = False
        self._closed = False

    def bind(self, limits: RunLimits, hooks: SessionHooks) -> None:
        """Hand a session opened ahead (a pooled kernel's, past its handshake) to its owner."""
        self.limits = limits
        self.hooks = hooks
        self._window = fold.start(limits)

    @property
    def dead(self) -> bool:
        return self.killed or self.exit is not None or self._closed

    async def wait_exit(self) -> KernelExit:
        """Resolves when the kernel ends, for whatever reason (one sandbox.wait per kernel)."""
        return await asyncio.shield(self._exited)

    async def _watch(self) -> KernelExit:
        self.exit = await self.sandbox.wait(self.kernel)
        return self.exit

    def _wake_runs(self, _: object = None) -> None:
        for run in self._runs.values():
            run.wake.set()

    # --- reading and routing ----------------------------------------------------

    def _received(self, channel: str, frames: list[bytes]) -> None:
        try:
            self._dispatch(messages.from_frames(channel, frames, self._session.key,
                                                self._session.sign))
        except BadMessage as exc:
            self.malformed += 1
            log.info("kernel %s: %s message skipped: %s", self.kernel.id, channel, exc)
        except Exception:  # one odd message must not stop the reader or the run
            self.malformed += 1
            log.exception("kernel %s: %s message skipped", self.kernel.id, channel)

    def _dispatch(self, msg: KernelMessage) -> None:
        parent = msg.parent_id
        if parent in self._probes:
            self._probe_answers.add((msg.channel, parent))
            self._probed.set()
            return
        if msg.channel == "iopub" and msg.msg_type == "status":
            self._note_status(msg)
        run = self._runs.get(parent) if parent is not None else None
        if run is not None:
            self._to_run(run, msg)
        elif msg.channel == "iopub":
            self._foreign_output(msg)
        elif parent in self._requests:          # a reply to a client's own request
            self._requests[parent].put(msg)
        else:
            self.dropped += 1

    def _note_status(self, msg: KernelMessage) -> None:
        state = msg.content.get("execution_state")
        if not isinstance(state, str):
            return
        run = self._runs.get(msg.parent_id or "")
        if state == "busy" and run is not None and not run.started:
            run.started = True
            self._window = fold.start(self.limits)
            # A client's run is timed from now: its supervisor wakes to start the clock. A
            # lesson run's clock started at its send, so its supervisor sleeps on.
            if run.relay is not None:
                self.hooks.run_started(run.id, str((run.header or {}).get("code", "")))
                run.wake.set()
        self.execution_state = state
        self.hooks.status(state)

    def _to_run(self, run: _Run, msg: KernelMessage) -> None:
        if msg.channel == "stdin":
            if run.relay is None:
                if len(run.inputs) >= PENDING_INPUTS:   # a kernel forging requests: not kept
                    self.dropped += 1
                    return
                run.inputs.append(msg)
            else:
                run.waiting_input = True
                run.relay.put(msg)
            run.wake.set()
            return
        kind = msg.msg_type
        if _unread(run.state, msg):
            run.state = fold.drop_unread(run.state, len(msg.raw_content))
            return
        if kind in OUTPUT_KINDS or kind in ("status", "execute_input", "execute_reply"):
            was_capped = run.state.capped
            run.state, outputs = fold.fold(run.state, msg.as_dict())
            if kind in OUTPUT_KINDS:
                if run.relay is None:
                    self._hand_on(run, outputs)
                else:
                    self._relay_outputs(run, msg, outputs)
            elif run.relay is not None:
                self._broadcast(msg) if msg.channel == "iopub" else run.relay.put(msg)
            # A client's run is relayed here; its supervisor wakes only for what it acts on.
            if run.state.capped != was_capped or run.state.done:
                run.wake.set()
            return
        if run.relay is not None:               # comms, clear, anything else of a client's run
            self._broadcast(msg) if msg.channel == "iopub" else run.relay.put(msg)

    def _relay_outputs(self, run: _Run, msg: KernelMessage,
                       outputs: tuple[Output, ...]) -> None:
        self._broadcast_admitted(msg, outputs)   # the client first: tracing is not on its path
        for output in outputs:
            self.hooks.run_output(run.id, output)

    def _broadcast_admitted(self, msg: KernelMessage, outputs: tuple[Output, ...]) -> bool:
        """Pass on what the fold kept of `msg` (a stream may be cut); False when nothing."""
        kept = [o for o in outputs if o.output_type != "clear_output"]
        if not kept and msg.msg_type != "clear_output":
            return False                          # over the cap: discarded here
        if msg.msg_type == "stream" and kept and kept[-1].text != msg.content.get("text"):
            msg = msg.with_content({**msg.content, "text": kept[-1].text})
        self._broadcast(msg)
        return True

    def _foreign_output(self, msg: KernelMessage) -> None:
        """iopub with no run of ours: status and comms go to clients; output passes the
        kernel's own window (reset at each run), so inventing parent ids dodges no cap."""
        if not self._relays:
            self.dropped += 1
            return
        if _unread(self._window, msg):
            self._window = fold.drop_unread(self._window, len(msg.raw_content))
            self.dropped += 1
            return
        if msg.msg_type in OUTPUT_KINDS:
            self._window, outputs = fold.fold(self._window, {**msg.as_dict(),
                                                             "parent_header": {"msg_id": None}})
            if not self._broadcast_admitted(msg, outputs):
                self.dropped += 1
            return
        self._broadcast(msg)

    def _broadcast(self, msg: KernelMessage) -> None:
        for relay in list(self._relays):
            relay.put(msg)

    # --- the handshake ------------------------------------------------------------

    async def ready(self) -> None:
        """Wait until iopub is subscribed, so no output of the first run is lost."""
        if self._ready:
            return
        loop = asyncio.get_running_loop()
        give_up = loop.time() + READY_TIMEOUT
        while True:
            if self.dead:
                raise SessionClosed(f"kernel {self.kernel.id} ended")
            if loop.time() >= give_up:
                raise SessionClosed(f"kernel {self.kernel.id} did not answer")
            probe = self._send_raw("shell", "kernel_info_request", {})
            self._probes.add(probe)
            until = min(give_up, loop.time() + PROBE_EVERY)
            while loop.time() < until:
                answered = {parent for channel, parent in self._probe_answers if channel == "shell"}
                if answered & {p for c, p in self._probe_answers if c == "iopub"}:
                    self._ready = True
                    return
                self._probed.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._probed.wait(), max(0.0, until - loop.time()))

    def _send_raw(self, channel: str, msg_type: str, content: dict,
                  metadata: dict | None = None) -> str:
        header = messages.new_header(msg_type, self._session.session)
        self._send_parts(channel, messages.to_parts(header, {}, metadata or {}, content))
        return header["msg_id"]

    def _send_parts(self, channel: str, parts: list[bytes]) -> None:
        if self._closed:
            return
        send = self._sockets[channel].send
        try:   # never waits: a kernel that leaves 1000 messages unread is stuck, not slow
            # send_multipart's own loop ORs IntFlag enums in Python for every frame. Only the
            # first frame can be refused: ZMQ takes the rest of a message it has begun.
            send(DELIM, _MORE)
            send(self._session.sign(parts), _MORE)
            for part in parts[:-1]:
                send(part, _MORE)
            send(parts[-1], NOBLOCK)
        except zmq.Again:
            self.unsent += 1
            if self.unsent == 1:   # once: a client may keep sending to a stuck kernel
                log.warning("kernel %s: %s message not sent: the kernel reads none",
                            self.kernel.id, channel)
        self._readers[channel].after_send()

    # --- lesson runs ------------------------------------------------------------------

    async def execute(self, code: str, limits: RunLimits, on_output: OnOutput | None = None,
                      on_input: OnInput | None = None, *, store_history: bool = True) -> RunResult:
        if self.dead:
            raise SessionClosed(f"kernel {self.kernel.id} is gone")
        if inspect.iscoroutinefunction(on_output):   # would make coroutines nobody awaits
            raise TypeError("on_output is called from the kernel's reader: pass a plain function")
        await self.ready()
        msg_id = self._send_raw("shell", "execute_request", {
            "code": code, "silent": False, "store_history": store_history,
            "user_expressions": {}, "allow_stdin": on_input is not None, "stop_on_error": True})
        run = _Run(msg_id, fold.start(limits, msg_id), on_output=on_output)
        self._runs[msg_id] = run
        try:
            return await self._supervise(run, on_input, started_at_send=True)
        finally:
            self._end(run)

    def _hand_on(self, run: _Run, outputs: tuple[Output, ...]) -> None:
        """A lesson run's outputs go out from the reader, in order, without a task hop."""
        for output in outputs:
            if run.on_output is None:
                return
            try:
                run.on_output(output)
            except Exception:  # a closed socket must not leave the run without limits
                log.exception("kernel %s: on_output failed; not forwarding more", self.kernel.id)
                run.on_output = None

    async def _supervise(self, run: _Run, on_input: OnInput | None = None, *,
                         started_at_send: bool = False) -> RunResult:
        """Wait for the run's end, enforcing its limits; the result, whatever happened."""
        loop = asyncio.get_running_loop()
        limits = run.state.limits
        step, timed_out, capped = 0, False, False   # escalation: 0 none, 1 message, 2 signal
        paused: float | None = None
        deadline = loop.time() + limits.timeout if started_at_send else None
        while True:
            if run.state.done:
                break
            if self._closed:
                raise SessionClosed(f"kernel {self.kernel.id} was closed during the run")
            if self._exited.done():
                ended = self._exit_result()
                return fold.finish(run.state, timed_out=timed_out, died=True,
                                   exit_code=ended.exit_code if ended else None,
                                   oom_killed=bool(ended and ended.oom_killed))
            if run.inputs:
                answer_began = loop.time()
                await self._answer(run.inputs.popleft(), on_input)
                if deadline is not None:
                    deadline += loop.time() - answer_began
                continue
            if deadline is None and run.started:
                deadline = loop.time() + limits.timeout
            if run.state.capped and not capped:
                capped = True
                if run.relay is not None:        # said now, before the kernel's reply
                    self._note(run, fold.limit_message(LimitHit.OUTPUT, run.state))
                if step == 0:                    # stop the flood; what still comes is discarded
                    step = 1
                    await self.interrupt()
                    deadline = loop.time() + GRACE
            if run.waiting_input and paused is None:
                paused = loop.time()              # a client's input() stops the clock
            elif not run.waiting_input and paused is not None:
                if deadline is not None:
                    deadline += loop.time() - paused
                paused = None
            timeout = None if deadline is None or paused is not None \
                else max(0.0, deadline - loop.time())
            run.wake.clear()
            if await self._sleep(run, timeout):
                continue
            if paused is not None or deadline is None or loop.time() < deadline:
                continue
            if step == 0 and run.relay is not None:
                self._note(run, fold.limit_message(LimitHit.TIMEOUT, run.state))
            timed_out = timed_out or step == 0
            if step == 2:
                await self._kill()
                return fold.finish(run.state, timed_out=timed_out)
            step += 1
            await (self.interrupt() if step == 1 else self.sandbox.interrupt(self.kernel))
            deadline = loop.time() + GRACE
        if run.state.limit is LimitHit.PIDS:
            await self._kill()                   # children of a fork bomb keep spinning otherwise
        return fold.finish(run.state, timed_out=timed_out)

    async def _sleep(self, run: _Run, timeout: float | None) -> bool:
        """True when the run was woken (a message, the kernel's end, close) before `timeout`.

        A timer, not a task: the reader wakes a run several times per execution, and the
        kernel's end wakes every run (see `_wake_runs`)."""
        if run.wake.is_set():
            return True
        timer = None
        if timeout is not None:
            timer = asyncio.get_running_loop().call_later(timeout, run.wake.set)
        await run.wake.wait()
        if timer is None:
            return True
        timer.cancel()
        return timer.when() > asyncio.get_running_loop().time()

    def _exit_result(self) -> KernelExit | None:
        if self._exited.cancelled() or self._exited.exception() is not None:
            return None
        return self._exited.result()

    async def _answer(self, msg: KernelMessage, on_input: OnInput | None) -> None:
        content = msg.content
        value = "" if on_input is None else await on_input(str(content.get("prompt", "")),
                                                           bool(content.get("password")))
        self._send_parts("stdin", messages.to_parts(
            messages.new_header("input_reply", self._session.session), dict(msg.header), {},
            {"value": value}))

    def _end(self, run: _Run) -> None:
        self._runs.pop(run.id, None)

    # --- Jupyter clients --------------------------------------------------------------

    def attach(self, relay: Relay) -> None:
        self._relays.add(relay)
        relay.attach(self)

    def detach(self, relay: Relay) -> None:
        self._relays.discard(relay)
        for msg_id in [m for m, r in self._requests.items() if r is relay]:
            del self._requests[msg_id]

    def send_client(self, relay: Relay, msg: ClientMessage) -> None:
        """Sign a client's message with the kernel's key and send it; an execute_request
        becomes a run with the kernel's limits."""
        if self.dead:
            return
        if msg.channel == "stdin" and msg.msg_type == "input_reply":
            run = self._runs.get(str(msg.parent.get("msg_id")))
            if run is not None:
                run.waiting_input = False
                run.wake.set()
        elif msg.msg_type == "execute_request":
            refusal = self.hooks.admit_run()
            if refusal is not None:
                self._refuse(relay, msg, refusal)
                return
            self._requests[msg.msg_id] = relay
            run = _Run(msg.msg_id, fold.start(self.limits, msg.msg_id), relay,
                       {**msg.header, "code": msg.content.get("code", "")})
            self._runs[msg.msg_id] = run
            self._spawn(self._watch_run(run))
        else:
            self._requests[msg.msg_id] = relay
        while len(self._requests) > REQUESTS:
            self._requests.popitem(last=False)
        self._send_parts(msg.channel, messages.to_parts(msg.header, msg.parent, msg.metadata,
                                                        msg.content))

    async def _watch_run(self, run: _Run) -> None:
        try:
            result = await self._supervise(run)
        except SessionClosed:
            return
        finally:
            self._end(run)
        if result.limit is not None or result.status is RunStatus.DIED:
            self._tell(run, result)
        if run.started or result.limit is not None:
            self.hooks.run_ended(run.id, result)

    def _tell(self, run: _Run, result: RunResult) -> None:
        """A limit or death in plain words, as the client's own stream, reply and idle."""
        header = _parent_of(run)
        if not run.told:
            self._note(run, result.message or "The run was stopped")
        if self.dead and run.relay is not None:   # the kernel cannot answer for itself any more
            reason = (result.limit.value if result.limit else "died")
            run.relay.put(messages.server_message("shell", "execute_reply", {
                "status": "error", "ename": "LimitExceeded" if result.limit else "KernelDied",
                "evalue": f"{result.message} ({reason})", "traceback": [],
                "execution_count": result.execution_count}, header))
            self._broadcast(messages.server_message("iopub", "status", {"execution_state": "idle"},
                                                    header))

    def _note(self, run: _Run, text: str) -> None:
        run.told = True
        self._broadcast(messages.server_message("iopub", "stream", {
            "name": "stderr", "text": f"\n[{text}]\n"}, _parent_of(run)))

    def _refuse(self, relay: Relay, msg: ClientMessage, refusal: str) -> None:
        header = dict(msg.header)
        relay.put(messages.server_message("iopub", "stream", {"name": "stderr",
                                                              "text": f"[{refusal}]\n"}, header))
        relay.put(messages.server_message("shell", "execute_reply", {
            "status": "error", "ename": "RateLimited", "evalue": refusal, "traceback": [],
            "execution_count": None}, header))
        relay.put(messages.server_message("iopub", "status", {"execution_state": "idle"}, header))

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- control ------------------------------------------------------------------------

    async def interrupt(self) -> None:
        """Ask the kernel to interrupt the running code (the kernel raises KeyboardInterrupt)."""
        if not self.dead:
            self._send_raw("control", "interrupt_request", {})

    async def _kill(self) -> None:
        self.killed = True
        await self.sandbox.kill(self.kernel)

    async def close(self) -> None:
        """Stop talking to the kernel; the kernel itself is the caller's to kill."""
        if self._closed:
            return
        self._closed = True
        self._wake_runs()                         # wakes a run in progress
        for relay in list(self._relays):
            relay.attach(None)
        self._relays.clear()
        for reader in self._readers.values():
            reader.close()
        tasks = (self._exited, *self._tasks)
        for task in tasks:
            task.cancel()
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:  # also when our caller is cancelled: a context left to the GC blocks in term()
            for sock in self._sockets.values():
                sock.close(linger=0)
            if self._own_context:
                self._context.destroy(linger=0)


def _unread(state: fold.RunState, msg: KernelMessage) -> bool:
    """Past the cap a big stream is discarded unparsed: a flood costs the reader no JSON work
    (small ones are still read, since limit signs such as a failed fork come in them)."""
    return state.capped and msg.msg_type == "stream" and len(msg.raw_content) > UNREAD_STREAM


def _parent_of(run: _Run) -> dict:
    """The client's request header, as the parent of what we tell it about the run."""
    return {k: v for k, v in (run.header or {}).items() if k != "code"}
