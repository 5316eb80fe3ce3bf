"""RQ jobs of the trace pipeline: write a batch of events, drop old raw events."""
from __future__ import annotations

import logging
import time
from typing import Any

from server.tracing.events import TraceEvent
from workers import deps

log = logging.getLogger("lessonserver.workers")
DAY = 86400


def write_batch(events: list[dict[str, Any]]) -> int:
    """Store one batch and refresh its runs' summaries; safe to run again (ids are keys)."""
    batch = [TraceEvent.from_json(raw) for raw in events]
    inserted = deps.current().trace_store().write(batch)
    log.debug("trace batch written", extra={"fields": {"events": len(batch), "new": inserted}})
    return inserted


def purge_old_events() -> int:
    """Retention: raw events older than `trace_retention_days` go; run summaries stay."""
    job_deps = deps.current()
    cutoff = time.time() - job_deps.settings.trace_retention_days * DAY
    dropped = job_deps.trace_store().purge_before(cutoff)
    log.info("old trace events dropped", extra={"fields": {
        "events": dropped, "days": job_deps.settings.trace_retention_days}})
    return dropped
