"""The cache's prefixes (the `prefix` label of its metrics) and what invalidates them.

Every key here holds a view without identity, so recording a learner's progress has nothing
to invalidate: a learner with a row gets pages rendered per request (private, no-cache).
A prefix keyed by learner would need an invalidation wherever progress is written
(PendingProgress, the account merge); tests/test_progress_freshness.py catches one without.
"""
from __future__ import annotations

CATALOG = "catalog"          # the anonymous catalog page
LESSON = "lesson"            # the anonymous view of one lesson page, by slug (or a cached 404)
LESSONS_API = "api_lessons"  # /api/lessons
# The dashboard's aggregates (server.admin.figures): bound to time, never invalidated.
ADMIN_RUNS = "admin_runs"          # the overview's run figures, by range
ADMIN_LEARNING = "admin_learning"  # learners per lesson and exercises passed


async def catalog_changed(cache) -> None:
    """The course was (re)loaded: every page may differ."""
    for prefix in (CATALOG, LESSON, LESSONS_API):
        await cache.invalidate(prefix)
