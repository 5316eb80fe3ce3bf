"""The admin overview's numbers: pure aggregates over values, and the few queries behind them.

Everything is computed per request from the live manager, the runs table and Redis; nothing is
kept between requests. The time range (`range=15m|1h|24h|7d`) lives in the URL."""
from __future__ import annotations

import collections
import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.tracing.queries import RUNS, _db_time

RANGES = {"15m": dt.timedelta(minutes=15), "1h": dt.timedelta(hours=1),
          "24h": dt.timedelta(hours=24), "7d": dt.timedelta(days=7)}
DEFAULT_RANGE = "1h"
BUCKETS = 30                      # bars in the runs-over-time chart
FAILED = ("error", "died")        # what counts toward the error rate


class BadRange(ValueError):
    pass


def parse_range(raw: str | None) -> str:
    if not raw:
        return DEFAULT_RANGE
    if raw not in RANGES:
        raise BadRange(f"range {raw!r}: use one of {', '.join(RANGES)}")
    return raw


def kernels_by(kernels: Iterable[Any]) -> dict[str, dict[str, int]]:
    """Live kernels (ManagedKernel values) counted by language, then by state."""
    table: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for kernel in kernels:
        table[kernel.plugin][kernel.execution_state] += 1
    return {plugin: dict(sorted(states.items())) for plugin, states in sorted(table.items())}


@dataclasses.dataclass(frozen=True)
class RunStats:
    total: int
    by_status: Mapping[str, int]
    by_verdict: Mapping[str, int]
    by_limit: Mapping[str, int]
    buckets: Sequence[int]        # runs per bucket, oldest first
    bucket_minutes: float
    pool_hits: int
    pool_misses: int

    @property
    def error_rate(self) -> float | None:
        """Runs that errored or whose kernel died, of all finished runs; None without runs."""
        finished = self.total - self.by_status.get("running", 0)
        return None if finished == 0 else sum(self.by_status.get(s, 0) for s in FAILED) / finished

    @property
    def per_minute(self) -> float:
        minutes = self.bucket_minutes * len(self.buckets)
        return self.total / minutes if minutes else 0.0

    @property
    def pool_hit_rate(self) -> float | None:
        taken = self.pool_hits + self.pool_misses
        return None if taken == 0 else self.pool_hits / taken


def bucket_counts(offsets_and_counts: Iterable[tuple[int, int]], buckets: int) -> list[int]:
    counts = [0] * buckets
    for index, count in offsets_and_counts:
        if 0 <= index < buckets:
            counts[index] += count
    return counts


async def run_stats(engine: AsyncEngine, range_name: str, now: dt.datetime) -> RunStats:
    since = now - RANGES[range_name]
    width = RANGES[range_name].total_seconds() / BUCKETS
    in_range = RUNS.c.requested_at >= _db_time(engine, since)
    epoch = (sa.func.extract("epoch", RUNS.c.requested_at) if engine.dialect.name == "postgresql"
             else sa.cast(sa.func.strftime("%s", RUNS.c.requested_at), sa.Float))
    bucket = sa.cast(sa.func.floor((epoch - since.timestamp()) / width), sa.Integer)

    outcome = (RUNS.c.status, RUNS.c.verdict, RUNS.c.limit_hit, RUNS.c.pool_hit)
    async with engine.connect() as conn:      # one scan of the range for every count
        rows = (await conn.execute(sa.select(*outcome, sa.func.count()).where(in_range)
                                   .group_by(*outcome))).all()
        per_bucket = (await conn.execute(sa.select(bucket, sa.func.count()).where(in_range)
                                         .group_by(bucket))).all()
    by_status, by_verdict, by_limit, pool = (collections.Counter() for _ in range(4))
    for status, verdict, limit, hit, n in rows:
        by_status[status] += n
        by_verdict["-" if verdict is None else verdict] += n
        if limit is not None:
            by_limit[limit] += n
        if hit is not None:
            pool[bool(hit)] += n
    pool_hits, pool_misses = pool[True], pool[False]
    return RunStats(sum(by_status.values()), dict(by_status), dict(by_verdict), dict(by_limit),
                    bucket_counts(((int(i), n) for i, n in per_bucket if i is not None), BUCKETS),
                    width / 60, pool_hits, pool_misses)


@dataclasses.dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    value: int


def bars(values: Sequence[int], width: float = 600, height: float = 120, gap: float = 2) -> list[Bar]:
    """SVG rectangles for a bar chart of `values`, scaled to the largest (an empty chart is flat)."""
    if not values:
        return []
    top = max(values) or 1
    step = width / len(values)
    return [Bar(round(i * step, 2), round(height - v / top * height, 2), round(step - gap, 2),
                round(v / top * height, 2), v) for i, v in enumerate(values)]


def percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f} %"


async def queue_depths(redis, queues: Sequence[str]) -> dict[str, dict[str, int]]:
    """Jobs waiting and failed per RQ queue, read from RQ's own keys (no rq import here)."""
    depths = {}
    for name in queues:
        waiting = await redis.llen(f"rq:queue:{name}")
        failed = await redis.zcard(f"rq:failed:{name}")
        depths[name] = {"waiting": int(waiting), "failed": int(failed)}
    return depths
