"""RQ jobs of the trace pipeline: write a batch of events, drop old raw events."""
from __future__ import annotations

import logging
import time
from typing import Any

from server.tracing.buffer import BatchRejected
from server.tracing.events import TraceEvent
from workers import deps, recovery
from workers.trace_store import BAD_DATA

log = logging.getLogger("lessonserver.workers")
DAY = 86400


class BadBatch(BatchRejected):
    """A batch no retry can write (malformed events, values the schema refuses)."""


def write_batch(events: list[dict[str, Any]]) -> int:
    """Store one batch and refresh its runs' summaries; safe to run again (ids are keys).

    A database that is away fails the job and RQ retries it with backoff; a
    batch that is bad in itself skips the retries and goes straight to the
    failed-job registry, where the reason is kept.
    """
    try:
        batch = [TraceEvent.from_json(raw) for raw in events]
        inserted = deps.current().trace_store().write(batch)
    except (KeyError, TypeError, ValueError, *BAD_DATA) as exc:
        _no_retry()
        raise BadBatch(f"trace batch refused: {type(exc).__name__}: {exc}"[:500]) from exc
    log.debug("trace batch written", extra={"fields": {"events": len(batch), "new": inserted}})
    return inserted


def _no_retry() -> None:
    from rq import get_current_job
    job = get_current_job()
    if job is not None:        # None in embedded mode, where the buffer sets the batch aside
        job.retries_left = 0
        job.meta[recovery.BAD_BATCH] = True     # and never replayed from the failed registry
        job.save_meta()


def purge_old_events() -> int:
    """Retention: raw events older than `trace_retention_days` go; run summaries stay."""
    job_deps = deps.current()
    cutoff = time.time() - job_deps.settings.trace_retention_days * DAY
    dropped = job_deps.trace_store().purge_before(cutoff)
    log.info("old trace events dropped", extra={"fields": {
        "events": dropped, "days": job_deps.settings.trace_retention_days}})
    return dropped
