"""The operations page's rules and actions: pool rows, and reloading lessons from disk.

A reload parses the lessons folder as start-up does, keeps the check report that
`lessonserver lessons check` would print, and - when the report is clean, or the admin
chose to leave the broken lessons out - syncs the catalog rows, swaps the served library
in one assignment and drops the cached pages. It reloads this process; other `serve`
processes load the folder when they restart.
"""
from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from server.cache import keys as cache_keys
from server.course.check import CheckResult
from server.course.loader import load_catalog
from server.course.model import Catalog
from server.library import Shelf, build_library
from server.store import catalog as catalog_store


@dataclasses.dataclass(frozen=True)
class PoolRow:
    plugin: str
    size: int
    ready: int
    starting: int
    drained: bool


def pool_rows(pools: Mapping[str, Any]) -> list[PoolRow]:
    return [PoolRow(name, pool.size, pool.ready, pool.starting, pool.drained)
            for name, pool in sorted(pools.items())]


def report_of(catalog: Catalog) -> CheckResult:
    """The check report of a loaded folder, as `lessons check FOLDER` gives it."""
    lessons = tuple(lesson for course in catalog.courses for lesson in course.lessons)
    return CheckResult(lessons, len(catalog.courses), tuple(catalog.errors))


def refusal(report: CheckResult, force: bool) -> str | None:
    """Why the reload is not applied, or None to apply it."""
    if not report.lessons:
        return "No lessons were found: the course being served is kept."
    if report.errors and not force:
        return (f"{len(report.errors)} errors: the course being served is kept. Fix them, or "
                "reload leaving the broken lessons out.")
    return None


@dataclasses.dataclass(frozen=True)
class Reload:
    report: CheckResult
    refused: str | None          # None: the new course is served now
    before: int                  # lessons served before, and after
    after: int


def lesson_count(catalog: Catalog) -> int:
    return sum(len(course.lessons) for course in catalog.courses)


async def reload_lessons(shelf: Shelf, lessons_dir: Path, kernels: frozenset[str],
                         engine: AsyncEngine, cache, *, force: bool = False) -> Reload:
    catalog = await asyncio.to_thread(load_catalog, lessons_dir, kernels)
    report = report_of(catalog)
    before = lesson_count(shelf.current.catalog)
    refused = refusal(report, force)
    if refused is not None:
        return Reload(report, refused, before, before)
    library = await asyncio.to_thread(build_library, catalog)
    # Rows first (progress refers to lessons), then the pages, then the cached copies.
    await catalog_store.sync_catalog(engine, catalog_store.entries_from(catalog))
    shelf.swap(library)
    if cache is not None:
        await cache_keys.catalog_changed(cache)
    return Reload(report, None, before, lesson_count(catalog))
