"""One kernel session per learner per lesson, that survives a dropped WebSocket.

The page's socket attaches to its session; when the socket drops (a train
tunnel, a laptop lid), the run in progress goes on, its frames are kept, and
the kernel is kept for a grace period. A socket that comes back within it gets
the same kernel (variables intact) and every frame it missed, in order. After
the grace period with no socket, the kernel is shut down.

When the server stops, new runs are refused in plain words while the runs in
flight are given LS_SHUTDOWN_GRACE to finish (`stop_accepting`, `drain`).
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from kernels.events import KernelEvent, KernelGone
from kernels.manager import KernelManager, UnknownKernel

log = logging.getLogger("lessonserver.ws")

MISSED_FRAMES = 2000        # frames kept for a detached page; a run's output is capped anyway
RESTARTING = "The server is restarting; run again in a moment."

Sink = Callable[[dict[str, Any]], None]


@dataclasses.dataclass(eq=False)
class LessonSession:
    user_id: str
    slug: str
    kernel_id: str | None = None
    running: asyncio.Future | None = None     # the run in progress (a task once it waits)
    answer: asyncio.Future | None = None       # the learner's reply to input(), while asked
    asking: dict[str, Any] | None = None        # the input_request frame, re-sent on reconnect
    sink: Sink | None = None                    # the attached socket's send
    missed: collections.deque = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=MISSED_FRAMES))
    expiry: asyncio.TimerHandle | None = None
    refusing: str | None = None                 # while the server stops: why new runs are refused
    notice: tuple[str, asyncio.TimerHandle] | None = None       # (run id, its "started" timer)

    @property
    def busy(self) -> bool:
        return self.running is not None and not self.running.done()

    def send(self, frame: dict[str, Any]) -> None:
        if self.notice is not None and frame.get("run") is not None:
            self.settle(frame["run"])           # the run's own frame says it started
        if self.sink is not None:
            self.sink(frame)
        else:
            self.missed.append(frame)

    def announce(self, frame: dict[str, Any], after: float) -> None:
        """Send a run's "started" `frame` only if the run has sent nothing else `after` seconds
        on: a faster run's first frame tells the page it started. A status the page would show
        for a blink is not worth a frame that wakes it while the kernel takes the code up."""
        if self.notice is not None:
            self.notice[1].cancel()
        self.notice = (frame["run"], asyncio.get_running_loop().call_later(
            after, self._announce, frame))

    def settle(self, run_id: str) -> None:
        """The run ended: its "started" frame, if not sent yet, never is."""
        if self.notice is not None and self.notice[0] == run_id:
            self.notice[1].cancel()
            self.notice = None

    def _announce(self, frame: dict[str, Any]) -> None:
        self.notice = None
        self.send(frame)


def closed_in_words(reason: str) -> str:
    """A closing reason for the learner: our own sentences as they are, a short reason
    ("idle timeout") inside one."""
    if reason.endswith("."):
        return reason
    return f"The kernel was closed ({reason}); the next run starts a new one."


class LessonSessions:
    def __init__(self, manager: KernelManager, grace: float) -> None:
        self.manager = manager
        self.grace = grace
        self._sessions: dict[tuple[str, str], LessonSession] = {}
        self.refusing: str | None = None

    def observe(self, event: KernelEvent) -> None:
        """The manager's observer: a page whose kernel was closed under it (its access ended,
        its account was deleted, it idled out) is told now, not at its next run."""
        if not isinstance(event, KernelGone):
            return
        for session in self._sessions.values():
            if session.kernel_id == event.kernel_id:
                session.kernel_id = None
                session.send({"type": "kernel", "state": "dead",
                              "message": closed_in_words(event.reason)})

    def attach(self, user_id: str, slug: str, sink: Sink) -> LessonSession:
        """The session of this learner and lesson, now sending to `sink` (the newest page wins)."""
        session = self._sessions.setdefault((user_id, slug), LessonSession(user_id, slug))
        session.refusing = self.refusing
        if session.expiry is not None:
            session.expiry.cancel()
            session.expiry = None
        if session.sink is not None and session.sink != sink:   # bound methods: compare by ==
            session.sink({"type": "error", "run": None,
                          "message": "This lesson was opened in another tab; this one is now idle."})
        session.sink = sink
        while session.missed:
            sink(session.missed.popleft())
        if session.asking is not None and session.answer is not None and not session.answer.done():
            sink(session.asking)                # the program is still waiting for an answer
        return session

    def detach(self, session: LessonSession, sink: Sink) -> None:
        if session.sink != sink:
            return                              # a newer page took over already
        session.sink = None                     # a pending input() waits for the page to return
        self._expire_later(session)

    def _expire_later(self, session: LessonSession) -> None:
        loop = asyncio.get_running_loop()
        session.expiry = loop.call_later(self.grace, lambda: loop.create_task(self._expire(session)))

    async def _expire(self, session: LessonSession) -> None:
        session.expiry = None
        if session.sink is not None:
            return
        if session.busy:                        # let the run finish; look again after it
            await asyncio.wait({session.running})
            if session.sink is None:
                self._expire_later(session)
            return
        self._sessions.pop((session.user_id, session.slug), None)
        await self.shutdown(session, "lesson page closed")

    async def shutdown(self, session: LessonSession, reason: str) -> None:
        kernel_id, session.kernel_id = session.kernel_id, None
        if kernel_id is not None:
            try:
                await self.manager.shutdown(kernel_id, reason)
            except UnknownKernel:
                pass

    def stop_accepting(self, message: str = RESTARTING) -> None:
        self.refusing = message
        for session in self._sessions.values():
            session.refusing = message

    async def drain(self, grace: float) -> int:
        """Wait up to `grace` seconds for the runs in flight; returns how many are still going."""
        running = {session.running for session in self._sessions.values() if session.busy}
        if running:
            log.info("waiting for runs in flight", extra={"fields": {"runs": len(running),
                                                                     "grace_s": grace}})
            _, running = await asyncio.wait(running, timeout=grace)
        return len(running)

    async def close(self) -> None:
        """Cancel what is still running (its trace is ended as interrupted) and wait for it."""
        cancelled = []
        for session in list(self._sessions.values()):
            if session.expiry is not None:
                session.expiry.cancel()
            if session.busy:
                session.running.cancel()
                cancelled.append(session.running)
        self._sessions.clear()
        await asyncio.gather(*cancelled, return_exceptions=True)
