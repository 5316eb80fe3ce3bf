"""Trace events of one run and the fold into its summary: pure functions on values.

An event is a frozen value with a unique id (so a retried write never
duplicates it) and a per-run sequence number (so the order survives batching,
spooling and retries). `summarize` folds any set of one run's events, in any
arrival order, into the summary row the dashboard reads.
"""
from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from kernels.result import LimitHit, Output, RunResult

LESSON_CLIENT = "lesson"     # a run from the lesson page
API_CLIENT = "api"           # a run a Jupyter client sent over the kernel API
RUNNING = "running"          # summary status until a `finished` or `kernel_died` event arrives
EVALUE_CHARS = 500           # an error's message is kept short: tracebacks live in the outputs


class EventKind(str, enum.Enum):
    REQUESTED = "requested"
    KERNEL_ASSIGNED = "kernel_assigned"
    OUTPUT = "output"
    LIMIT = "limit"
    KERNEL_RESTARTED = "kernel_restarted"
    KERNEL_DIED = "kernel_died"
    KERNEL_EVENT = "kernel_event"    # anything else the kernel manager reports
    VERDICT = "verdict"
    FINISHED = "finished"


@dataclasses.dataclass(frozen=True)
class TraceEvent:
    id: str                  # 32 hex digits (new_id): the idempotency key of every write
    run_id: str
    seq: int                 # 0, 1, 2, ... within the run
    ts: float                # wall clock, seconds since the epoch
    kind: EventKind
    data: Mapping[str, Any]  # JSON-safe; always holds `elapsed_ms` since the request

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "run_id": self.run_id, "seq": self.seq, "ts": self.ts,
                "kind": self.kind.value, "data": dict(self.data)}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "TraceEvent":
        return cls(id=raw["id"], run_id=raw["run_id"], seq=int(raw["seq"]), ts=float(raw["ts"]),
                   kind=EventKind(raw["kind"]), data=raw.get("data") or {})


def new_id() -> str:
    """128 random bits in hex: unique as uuid4().hex, at a sixth of its cost (several per run)."""
    return os.urandom(16).hex()


def make_event(run_id: str, seq: int, ts: float, elapsed_ms: float, kind: EventKind,
               data: Mapping[str, Any]) -> TraceEvent:
    return TraceEvent(id=new_id(), run_id=run_id, seq=seq, ts=ts, kind=kind,
                      data={**json_safe(data), "elapsed_ms": round(elapsed_ms, 3)})


_PLAIN = (str, int, float, bool, type(None))


def json_safe(data: Mapping[str, Any]) -> dict[str, Any]:
    """Data from other modules may hold enums, tuples or odd objects: keep what JSON can say."""
    if all(type(v) in _PLAIN or isinstance(v, enum.Enum) for v in data.values()):
        # The common case, on every run's path: no JSON round trip.
        return {k: v.value if isinstance(v, enum.Enum) else v for k, v in data.items()}
    return json.loads(json.dumps(dict(data), default=str))


# --- what each kind of event records ----------------------------------------

def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()


def requested_data(*, user_id: str | None, lesson_slug: str | None, exercise_id: str | None,
                   kernel: str, code: str, client: str = LESSON_CLIENT) -> dict[str, Any]:
    return {"user_id": user_id, "lesson_slug": lesson_slug, "exercise_id": exercise_id,
            "kernel": kernel, "code_hash": code_hash(code), "code": code, "client": client}


def kernel_assigned_data(*, pool_hit: bool, container_id: str | None,
                         start_ms: float = 0.0) -> dict[str, Any]:
    """`start_ms` is how long a cold start took (0 for a pool hit)."""
    return {"pool_hit": pool_hit, "container_id": container_id,
            "start_ms": 0.0 if pool_hit else round(start_ms, 3)}


def output_data(output: Output, line: int | None = None) -> dict[str, Any]:
    """A summary, not the output itself: sizes and types, and an error's name, message and the
    learner's line it points at."""
    data: dict[str, Any] = {"output_type": output.output_type, "bytes": output_bytes(output)}
    if output.name:
        data["name"] = output.name
    if output.data:
        data["mime_types"] = sorted(output.data)
    if output.output_type == "error":
        data["ename"] = output.ename
        data["evalue"] = (output.evalue or "")[:EVALUE_CHARS]
        if line is not None:
            data["line"] = line
    return data


def output_bytes(output: Output) -> int:
    if output.text is not None:
        return len(output.text.encode("utf-8", "replace"))
    if output.data:
        return sum(len(v.encode("utf-8", "replace")) if isinstance(v, str) else len(json.dumps(v))
                   for v in output.data.values())
    if output.output_type == "error":
        return sum(len(line.encode("utf-8", "replace")) for line in output.traceback)
    return 0


def limit_data(limit: LimitHit, message: str | None = None) -> dict[str, Any]:
    return {"limit": LimitHit(limit).value, "message": message}


def verdict_data(passed: bool, message: str | None = None) -> dict[str, Any]:
    return {"passed": bool(passed), "message": message}


def finished_data(result: RunResult) -> dict[str, Any]:
    return {"status": result.status.value, "limit": result.limit.value if result.limit else None,
            "bytes_out": result.bytes_out, "bytes_dropped": result.bytes_dropped,
            "messages_dropped": result.messages_dropped, "outputs": len(result.outputs),
            "execution_count": result.execution_count}


# --- the fold ---------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class RunSummary:
    """One row of `runs`: what the dashboard and the learner's history read."""
    run_id: str
    user_id: str | None = None
    lesson_slug: str | None = None
    exercise_id: str | None = None
    kernel: str | None = None
    code_hash: str | None = None
    code: str | None = None
    client: str | None = None          # lesson | api
    status: str = RUNNING              # a RunStatus value once finished
    limit_hit: str | None = None
    verdict: str | None = None         # passed | failed
    pool_hit: bool | None = None
    container_id: str | None = None
    requested_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    queue_ms: float | None = None      # waiting for a kernel, less any cold start
    start_ms: float | None = None      # cold start of the kernel (0 on a pool hit)
    first_output_ms: float | None = None   # from the request to the first output
    total_ms: float | None = None      # from the request to the result
    bytes_out: int = 0
    event_count: int = 0


def summarize(run_id: str, events: Iterable[TraceEvent]) -> RunSummary:
    """Fold one run's events (any subset, any arrival order) into its summary."""
    summary = RunSummary(run_id=run_id)
    output_bytes_seen = 0
    finished_bytes: int | None = None
    for event in sorted(events, key=lambda e: e.seq):
        summary = _apply(summary, event)
        if event.kind is EventKind.OUTPUT:
            output_bytes_seen += int(event.data.get("bytes") or 0)
        elif event.kind is EventKind.FINISHED:
            finished_bytes = event.data.get("bytes_out")
    # The result counts what the kernel produced, even beyond the cap; outputs are the fallback.
    bytes_out = finished_bytes if finished_bytes is not None else output_bytes_seen
    return dataclasses.replace(summary, bytes_out=int(bytes_out))


def _apply(s: RunSummary, e: TraceEvent) -> RunSummary:
    d, elapsed = e.data, e.data.get("elapsed_ms")
    s = dataclasses.replace(s, event_count=s.event_count + 1)
    if e.kind is EventKind.REQUESTED:
        return dataclasses.replace(
            s, user_id=d.get("user_id"), lesson_slug=d.get("lesson_slug"),
            exercise_id=d.get("exercise_id"), kernel=d.get("kernel"), code_hash=d.get("code_hash"),
            code=d.get("code"), client=d.get("client") or LESSON_CLIENT, requested_at=e.ts)
    if e.kind is EventKind.KERNEL_ASSIGNED:
        start_ms = float(d.get("start_ms") or 0.0)
        queue_ms = None if elapsed is None else max(0.0, float(elapsed) - start_ms)
        return dataclasses.replace(s, pool_hit=d.get("pool_hit"), container_id=d.get("container_id"),
                                   started_at=e.ts, start_ms=start_ms, queue_ms=queue_ms)
    if e.kind is EventKind.OUTPUT:
        return s if s.first_output_ms is not None else dataclasses.replace(s, first_output_ms=elapsed)
    if e.kind is EventKind.LIMIT:
        return s if s.limit_hit else dataclasses.replace(s, limit_hit=d.get("limit"))
    if e.kind is EventKind.KERNEL_DIED:
        return s if s.status != RUNNING else dataclasses.replace(
            s, status="died", finished_at=e.ts, total_ms=elapsed)
    if e.kind is EventKind.VERDICT:
        return dataclasses.replace(s, verdict="passed" if d.get("passed") else "failed")
    if e.kind is EventKind.FINISHED:
        return dataclasses.replace(s, status=d.get("status") or s.status,
                                   limit_hit=s.limit_hit or d.get("limit"),
                                   finished_at=e.ts, total_ms=elapsed)
    return s
