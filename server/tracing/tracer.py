"""`RunTracer`: the run handler's and kernel manager's way to record one run.

It numbers the events, stamps them with the wall clock and the time since the
request (a monotonic clock, so timings survive clock steps), and hands each to
`emit` (the TraceBuffer's), which never waits. Tracing must never break a run,
so a failure to build an event is logged and swallowed.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from kernels import events as kernel_events
from kernels.result import LimitHit, Output, RunResult
from server.tracing import events
from server.tracing.events import EventKind, TraceEvent

log = logging.getLogger("lessonserver.tracing")

Emit = Callable[[TraceEvent], None]
Stamp = tuple[float, float]     # (wall clock, monotonic clock) when it happened
LIMITS = frozenset(limit.value for limit in LimitHit)
HOLD = 0.05     # seconds a run's held events wait, unless it ends sooner


class RunTracer:
    def __init__(self, emit: Emit, run_id: str | None = None, *,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic, held: bool = False) -> None:
        """`held`: every event is stamped when it happens, and built and handed on (in order)
        once the run has ended or lasted HOLD: a Jupyter client's run, whose events the
        kernel's reader reports between one message to the client and the next, while the
        kernel, the server and the client share the host's cores."""
        self.run_id = run_id or events.new_id()
        self._emit = emit
        self._hold_all = held
        self._clock = clock
        self._monotonic = monotonic
        self._t0 = monotonic()
        self._seq = 0
        self._limits: set[str] = set()   # limits already recorded, so the result does not repeat one
        self._held: list[tuple[EventKind, Callable[[], Mapping[str, Any]], Stamp]] | None = None
        self._release_at: asyncio.Handle | None = None      # when what is held is handed on

    def requested(self, *, user_id: str | None, lesson_slug: str | None, exercise_id: str | None,
                  kernel: str, code: str, client: str = events.LESSON_CLIENT) -> None:
        self._record(EventKind.REQUESTED, lambda: events.requested_data(
            user_id=user_id, lesson_slug=lesson_slug, exercise_id=exercise_id, kernel=kernel,
            code=code, client=client))

    def requested_held(self, *, user_id: str | None, lesson_slug: str | None,
                       exercise_id: str | None, kernel: str, code: str) -> None:
        """`requested`, stamped now and recorded once the run has lasted HOLD or ended, whichever
        comes first; events recorded meanwhile follow it, in order. Building and handing them
        on then slows neither the lesson run's way to its kernel nor the kernel taking the
        code up (80 us of the loop just then, on two cores shared with the kernel)."""
        self._hold(EventKind.REQUESTED, lambda: events.requested_data(
            user_id=user_id, lesson_slug=lesson_slug, exercise_id=exercise_id, kernel=kernel,
            code=code), self._stamp())

    def kernel_assigned(self, *, pool_hit: bool, container_id: str | None,
                        start_ms: float = 0.0) -> None:
        self._record(EventKind.KERNEL_ASSIGNED, lambda: events.kernel_assigned_data(
            pool_hit=pool_hit, container_id=container_id, start_ms=start_ms))

    def output(self, output: Output, line: int | None = None) -> None:
        """`line`: the learner's line an error points at, when the caller knows their code."""
        self._record(EventKind.OUTPUT, lambda: events.output_data(output, line))

    def limit(self, limit: LimitHit, message: str | None = None) -> None:
        self._limits.add(str(getattr(limit, "value", limit)))
        self._record(EventKind.LIMIT, lambda: events.limit_data(limit, message))

    def restarted(self, reason: str) -> None:
        self._record(EventKind.KERNEL_RESTARTED, lambda: {"reason": reason})

    def died(self, reason: str, exit_code: int | None = None) -> None:
        self._record(EventKind.KERNEL_DIED, lambda: {"reason": reason, "exit_code": exit_code})

    def verdict(self, passed: bool, message: str | None = None) -> None:
        self._record(EventKind.VERDICT, lambda: events.verdict_data(passed, message))

    def finished(self, result: RunResult) -> None:
        """The result; a limit it reports is recorded first (once), so the trace names it."""
        if result.limit is not None and result.limit.value not in self._limits:
            self.limit(result.limit, result.message)
        self._record(EventKind.FINISHED, lambda: events.finished_data(result))
        self.release()        # the run's end: nothing is held past it (a commit may follow)

    def on_event(self, event: kernel_events.KernelEvent) -> None:
        """What the kernel manager reported about this run's kernel."""
        if isinstance(event, kernel_events.KernelAssigned):
            self.kernel_assigned(pool_hit=event.pool_hit, container_id=event.ref,
                                 start_ms=event.start_ms)
        elif isinstance(event, kernel_events.KernelLimited):
            if event.limit in LIMITS:
                self.limit(LimitHit(event.limit), event.message)
        elif isinstance(event, kernel_events.KernelRestarted):
            self._record(EventKind.KERNEL_RESTARTED, lambda: _fields(event))
        elif isinstance(event, kernel_events.KernelDied):
            self._record(EventKind.KERNEL_DIED, lambda: _fields(event))
        else:
            self._record(EventKind.KERNEL_EVENT, lambda: {"event": type(event).__name__,
                                                          **_fields(event)})

    def _stamp(self) -> Stamp:
        return self._clock(), self._monotonic()

    def _record(self, kind: EventKind, build: Callable[[], Mapping[str, Any]],
                stamp: Stamp | None = None) -> None:
        try:
            stamp = stamp or self._stamp()
            if self._held is not None or self._hold_all:   # after what is held, in order
                self._hold(kind, build, stamp)
            else:
                self._hand_on(kind, build, stamp)
        except Exception:  # a trace must never fail the run it describes
            self._dropped(kind)

    def _hand_on(self, kind: EventKind, build: Callable[[], Mapping[str, Any]],
                 stamp: Stamp) -> None:
        ts, now = stamp
        elapsed_ms = (now - self._t0) * 1000.0
        event = events.make_event(self.run_id, self._seq, ts, elapsed_ms, kind, build())
        self._seq += 1
        self._emit(event)

    def _hold(self, kind: EventKind, build: Callable[[], Mapping[str, Any]], stamp: Stamp) -> None:
        """Keep the event, in order, until the run ends (`finished`) or HOLD has passed."""
        if self._held is None:
            self._release_at = asyncio.get_running_loop().call_later(HOLD, self.release)
            self._held = []
        self._held.append((kind, build, stamp))

    def release(self) -> None:
        """Hand on what is held, now: the run ended, or its caller gave it up."""
        if self._release_at is not None:
            self._release_at.cancel()
            self._release_at = None
        held, self._held = self._held or [], None
        for kind, build, stamp in held:
            try:
                self._hand_on(kind, build, stamp)
            except Exception:
                self._dropped(kind)

    def _dropped(self, kind: EventKind) -> None:
        log.exception("trace event dropped", extra={"fields": {"run_id": self.run_id,
                                                                "kind": kind.value}})


def _fields(event: Any) -> dict[str, Any]:
    return {f.name: getattr(event, f.name) for f in dataclasses.fields(event)
            if f.name not in ("output", "result")}


class KernelEventRouter:
    """The kernel manager's observer: hands each host-wide event to the run on that kernel.

    A lesson run's handler attaches its tracer for the length of the run. Runs
    that Jupyter clients send over the channels socket have no handler of
    ours: the router traces them itself, from RunStarted to RunEnded, as
    client "api" with the kernel's owner. Events of kernels with no run in
    progress (culling, idle deaths) have no run to go to.
    """

    def __init__(self, emit: Emit | None = None) -> None:
        self._emit = emit
        self._runs: dict[str, RunTracer] = {}
        self._api_runs: dict[str, RunTracer] = {}   # by the client's msg_id

    def attach(self, kernel_id: str, tracer: RunTracer) -> None:
        self._runs[kernel_id] = tracer

    def detach(self, kernel_id: str) -> None:
        self._runs.pop(kernel_id, None)

    def __call__(self, event: kernel_events.KernelEvent) -> None:
        if isinstance(event, kernel_events.RunStarted):
            if self._emit is not None:
                tracer = RunTracer(self._emit, held=True)
                tracer.requested(user_id=event.owner, lesson_slug=None, exercise_id=None,
                                 kernel=event.plugin, code=event.code, client=events.API_CLIENT)
                self._api_runs[event.run_id] = self._runs[event.kernel_id] = tracer
            return
        if isinstance(event, kernel_events.RunOutput):
            tracer = self._api_runs.get(event.run_id)
            if tracer is not None:
                tracer.output(event.output)
            return
        if isinstance(event, kernel_events.RunEnded):
            tracer = self._api_runs.pop(event.run_id, None)
            if tracer is not None:
                tracer.finished(event.result)
                if self._runs.get(event.kernel_id) is tracer:
                    del self._runs[event.kernel_id]
            return
        tracer = self._runs.get(getattr(event, "kernel_id", ""))
        if tracer is not None:
            tracer.on_event(event)
