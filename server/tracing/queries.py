"""The read side of traces for the admin API: filtered run summaries and one run's events.

Values in, plain JSON-ready dicts out, over an async SQLAlchemy engine
(asyncpg on Postgres, aiosqlite embedded). The filter is a frozen value that
the handler parses from the query string.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

RUNS = sa.table("runs", *(sa.column(c) for c in (
    "id", "user_id", "lesson_slug", "exercise_id", "kernel", "code_hash", "code", "client", "status",
    "limit_hit", "verdict", "pool_hit", "container_id", "requested_at", "started_at", "finished_at",
    "queue_ms", "start_ms", "first_output_ms", "total_ms", "bytes_out", "event_count")))
EVENTS = sa.table("trace_events", *(sa.column(c) for c in ("id", "run_id", "seq", "ts", "kind", "data")))
LIST_COLUMNS = [c for c in RUNS.c if c.name != "code"]   # the code is in the single-run view


@dataclasses.dataclass(frozen=True)
class RunFilter:
    user: str | None = None
    exercise: str | None = None
    status: str | None = None
    since: dt.datetime | None = None      # requested at or after
    until: dt.datetime | None = None      # requested before
    limit: int = 50
    offset: int = 0


def where_runs(query: sa.Select, engine: AsyncEngine, equal: Iterable[tuple[Any, Any]],
               since: dt.datetime | None, until: dt.datetime | None) -> sa.Select:
    """`query` narrowed to runs whose columns equal the given values (None: any) and that
    were requested in [since, until)."""
    for column, value in equal:
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(RUNS.c.requested_at >= _db_time(engine, since))
    if until is not None:
        query = query.where(RUNS.c.requested_at < _db_time(engine, until))
    return query


async def search_runs(engine: AsyncEngine, f: RunFilter) -> list[dict[str, Any]]:
    """Newest first."""
    query = where_runs(sa.select(*LIST_COLUMNS), engine,
                       ((RUNS.c.user_id, f.user), (RUNS.c.exercise_id, f.exercise),
                        (RUNS.c.status, f.status)), f.since, f.until)
    query = query.order_by(RUNS.c.requested_at.desc(), RUNS.c.id).limit(f.limit).offset(f.offset)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [_jsonable(row) for row in rows]


async def get_run(engine: AsyncEngine, run_id: str) -> dict[str, Any] | None:
    """The run's summary with its events in order, or None."""
    async with engine.connect() as conn:
        run = (await conn.execute(sa.select(RUNS).where(RUNS.c.id == run_id))).mappings().first()
        if run is None:
            return None
        events = (await conn.execute(sa.select(EVENTS.c.id, EVENTS.c.seq, EVENTS.c.ts, EVENTS.c.kind,
                                               EVENTS.c.data)
                                     .where(EVENTS.c.run_id == run_id)
                                     .order_by(EVENTS.c.seq))).mappings().all()
    return {**_jsonable(run), "events": [_jsonable(e) for e in events]}


def _db_time(engine: AsyncEngine, when: dt.datetime) -> Any:
    # SQLite keeps naive UTC text (as SQLAlchemy writes it); Postgres compares aware times.
    if engine.dialect.name == "sqlite":
        return when.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat(" ", "microseconds")
    return when


def _jsonable(row: Any) -> dict[str, Any]:
    out = {}
    for key, value in dict(row).items():
        if isinstance(value, dt.datetime):
            value = (value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)).isoformat()
        elif key == "data" and isinstance(value, str):
            value = json.loads(value)
        elif key in ("requested_at", "started_at", "finished_at", "ts") and isinstance(value, str):
            value = dt.datetime.fromisoformat(value).replace(tzinfo=dt.timezone.utc).isoformat()
        elif key == "pool_hit" and value is not None:
            value = bool(value)
        out[key] = value
    return out
