"""The dashboard's aggregates through the cache (server.cache).

Each overview refresh (every 10 s, per open admin page) and each look at the learning index
scans the runs or the progress of the whole range; during a live event, with those tables
growing fastest, several admins would do it again and again. Through the cache the figures
are computed once per key and TTL across all `serve` processes, and each says when it was
computed, so the page can say how old it is. They are bound to time, not to any change, so
nothing invalidates them.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from server.admin import learning, overview
from server.cache import keys
from server.cache.cache import Cache, Computed
from server.cache.freshness import Policy

T = TypeVar("T")
REFRESH = 10.0       # seconds between the overview's own refreshes (admin_overview.html)


def policy(ttl: float, grace: float) -> Policy:
    """LS_CACHE_TTL and LS_CACHE_GRACE, at most one overview refresh each: a figure is never
    more than two refreshes old."""
    return Policy(ttl=min(ttl, REFRESH), grace=min(grace, REFRESH))


@dataclasses.dataclass(frozen=True)
class Figures(Generic[T]):
    value: T
    computed_at: dt.datetime


async def run_stats(cache: Cache, engine: AsyncEngine, range_name: str) -> Figures[overview.RunStats]:
    async def compute() -> Computed:
        now = dt.datetime.now(dt.timezone.utc)
        return _encode(now, dataclasses.asdict(await overview.run_stats(engine, range_name, now)))
    at, data = _decode((await cache.get(keys.ADMIN_RUNS, range_name, compute)).value)
    return Figures(overview.RunStats(**data), at)


async def lesson_buckets(cache: Cache, engine: AsyncEngine) -> Figures[list[learning.LessonBucket]]:
    async def compute() -> Computed:
        now = dt.datetime.now(dt.timezone.utc)
        return _encode(now, [dataclasses.asdict(b) for b in await learning.lesson_buckets(engine)])
    at, data = _decode((await cache.get(keys.ADMIN_LEARNING, "all", compute)).value)
    return Figures([learning.LessonBucket(**bucket) for bucket in data], at)


def _encode(at: dt.datetime, data) -> Computed:
    return Computed(json.dumps({"at": at.isoformat(), "data": data}).encode())


def _decode(raw: bytes) -> tuple[dt.datetime, object]:
    parsed = json.loads(raw)
    return dt.datetime.fromisoformat(parsed["at"]), parsed["data"]
