"""`RunTracer`: the run handler's and kernel manager's way to record one run.

It numbers the events, stamps them with the wall clock and the time since the
request (a monotonic clock, so timings survive clock steps), and hands each to
`emit` (the TraceBuffer's), which never waits. Tracing must never break a run,
so a failure to build an event is logged and swallowed.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from kernels.result import LimitHit, Output, RunResult
from server.tracing import events
from server.tracing.events import EventKind, TraceEvent

log = logging.getLogger("lessonserver.tracing")

Emit = Callable[[TraceEvent], None]
LIMITS = frozenset(limit.value for limit in LimitHit)


class RunTracer:
    def __init__(self, emit: Emit, run_id: str | None = None, *,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.run_id = run_id or events.new_id()
        self._emit = emit
        self._clock = clock
        self._monotonic = monotonic
        self._t0 = monotonic()
        self._seq = 0
        self._limits: set[str] = set()   # limits already recorded, so the result does not repeat one

    def requested(self, *, user_id: str | None, lesson_slug: str | None, exercise_id: str | None,
                  kernel: str, code: str) -> None:
        self._record(EventKind.REQUESTED, lambda: events.requested_data(
            user_id=user_id, lesson_slug=lesson_slug, exercise_id=exercise_id, kernel=kernel, code=code))

    def kernel_assigned(self, *, pool_hit: bool, container_id: str | None,
                        start_ms: float = 0.0) -> None:
        self._record(EventKind.KERNEL_ASSIGNED, lambda: events.kernel_assigned_data(
            pool_hit=pool_hit, container_id=container_id, start_ms=start_ms))

    def output(self, output: Output) -> None:
        self._record(EventKind.OUTPUT, lambda: events.output_data(output))

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

    def on_event(self, kind: str, data: Mapping[str, Any]) -> None:
        """The kernel manager's observer hook (`kernel.assigned`, `kernel.limit`, ...)."""
        name = kind.removeprefix("kernel.")
        if name == "assigned":
            self.kernel_assigned(pool_hit=bool(data.get("pool_hit")), container_id=data.get("ref"),
                                 start_ms=float(data.get("start_ms") or 0.0))
        elif name == "limit" and data.get("limit") in LIMITS:
            self.limit(LimitHit(data["limit"]), data.get("message"))
        elif name in ("restarted", "died"):
            kind_ = EventKind.KERNEL_RESTARTED if name == "restarted" else EventKind.KERNEL_DIED
            self._record(kind_, lambda: dict(data))
        else:
            self._record(EventKind.KERNEL_EVENT, lambda: {"event": kind, **data})

    def _record(self, kind: EventKind, build: Callable[[], Mapping[str, Any]]) -> None:
        try:
            elapsed_ms = (self._monotonic() - self._t0) * 1000.0
            event = events.make_event(self.run_id, self._seq, self._clock(), elapsed_ms, kind, build())
            self._seq += 1
            self._emit(event)
        except Exception:  # a trace must never fail the run it describes
            log.exception("trace event dropped", extra={"fields": {"run_id": self.run_id,
                                                                    "kind": kind.value}})


class KernelEventRouter:
    """The kernel manager's observer: hands each host-wide event to the run on that kernel.

    The run handler attaches its tracer for the length of a run; events of
    kernels with no run in progress (culling, idle deaths) have no run to go to.
    """

    def __init__(self) -> None:
        self._runs: dict[str, RunTracer] = {}

    def attach(self, kernel_id: str, tracer: RunTracer) -> None:
        self._runs[kernel_id] = tracer

    def detach(self, kernel_id: str) -> None:
        self._runs.pop(kernel_id, None)

    def __call__(self, kind: str, data: Mapping[str, Any]) -> None:
        tracer = self._runs.get(str(data.get("kernel_id")))
        if tracer is not None:
            tracer.on_event(kind, data)
