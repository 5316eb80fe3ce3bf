"""The cache's prefixes (the `prefix` label of its metrics) and what invalidates them."""
from __future__ import annotations

CATALOG = "catalog"          # the anonymous catalog page
LESSON = "lesson"            # the anonymous view of one lesson page, by slug (or a cached 404)
LESSONS_API = "api_lessons"  # /api/lessons


async def catalog_changed(cache) -> None:
    """The course was (re)loaded: every page may differ."""
    for prefix in (CATALOG, LESSON, LESSONS_API):
        await cache.invalidate(prefix)
