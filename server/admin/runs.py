"""The admin runs list: its URL parameters as a frozen value, and the one SQL query that
filters, sorts and pages (with the user's email joined in).

Every parameter lives in the URL; `status` also takes a limit's name (`status=timeout`
means the runs stopped by the timeout), since that is how people ask."""
from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from kernels.result import LimitHit
from server.admin.display import who
from server.handlers.admin_runs import STATUSES, BadFilter, parse_count, parse_time
from server.tracing.queries import LIST_COLUMNS, RUNS, _jsonable, where_runs

USERS = sa.table("users", sa.column("id"), sa.column("email"), sa.column("name"))
LIMITS = frozenset(hit.value for hit in LimitHit)
SORTS = {"requested": RUNS.c.requested_at, "total": RUNS.c.total_ms,
         "first_output": RUNS.c.first_output_ms, "status": RUNS.c.status,
         "user": RUNS.c.user_id, "exercise": RUNS.c.exercise_id}
PAGE_SIZES = (25, 50, 100, 200)
PARAMS = ("user", "exercise", "status", "client", "since", "until", "sort", "dir", "page", "size")


@dataclasses.dataclass(frozen=True)
class RunsQuery:
    user: str | None = None
    exercise: str | None = None
    status: str | None = None           # running | ok | error | limit | died
    limit: str | None = None            # timeout | output | memory | pids | disk
    client: str | None = None           # lesson | api
    since: Any = None
    until: Any = None
    sort: str = "requested"
    descending: bool = True
    page: int = 1
    size: int = 50

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size


def parse(args: Mapping[str, str]) -> RunsQuery:
    """The page's query string (one value per name) as a RunsQuery; BadFilter names the
    parameter and lists what it takes."""
    unknown = sorted(set(args) - set(PARAMS))
    if unknown:
        raise BadFilter(f"unknown parameter {unknown[0]!r}; this page takes {', '.join(PARAMS)}")
    status, limit = args.get("status") or None, None
    if status in LIMITS:
        status, limit = "limit", status
    elif status is not None and status not in STATUSES:
        raise BadFilter(f"status {status!r} is not one we record; use one of "
                        f"{', '.join(sorted(STATUSES))}, or a limit: {', '.join(sorted(LIMITS))}")
    client = args.get("client") or None
    if client not in (None, "lesson", "api"):
        raise BadFilter(f"client {client!r}: use lesson or api")
    sort = args.get("sort") or "requested"
    if sort not in SORTS:
        raise BadFilter(f"sort {sort!r}: use one of {', '.join(SORTS)}")
    direction = args.get("dir") or "desc"
    if direction not in ("asc", "desc"):
        raise BadFilter(f"dir {direction!r}: use asc or desc")
    size = parse_count(args, "size", 50, 1, max(PAGE_SIZES))
    return RunsQuery(user=args.get("user") or None, exercise=args.get("exercise") or None,
                     status=status, limit=limit, client=client,
                     since=parse_time(args, "since"), until=parse_time(args, "until"), sort=sort,
                     descending=direction == "desc", page=parse_count(args, "page", 1, 1, None),
                     size=size)


def url(args: Mapping[str, str], **changes: Any) -> str:
    """This page's URL with `changes` applied (None drops a parameter); empty values left out."""
    merged = {**args, **{k: (None if v is None else str(v)) for k, v in changes.items()}}
    query = urllib.parse.urlencode({k: v for k, v in merged.items() if k in PARAMS and v})
    return "/admin/runs" + (f"?{query}" if query else "")


def sort_url(args: Mapping[str, str], column: str) -> str:
    """The header link: sort by `column`, flipping the direction when it is already the sort."""
    current, direction = args.get("sort") or "requested", args.get("dir") or "desc"
    flipped = "asc" if current == column and direction == "desc" else "desc"
    return url(args, sort=column, dir=flipped, page=None)


async def search(engine: AsyncEngine, q: RunsQuery) -> tuple[list[dict[str, Any]], bool]:
    """One page of runs with each user's email and name, and whether a next page exists."""
    query = (sa.select(*LIST_COLUMNS, USERS.c.email.label("user_email"),
                       USERS.c.name.label("user_name"))
             .select_from(RUNS.outerjoin(USERS, USERS.c.id == RUNS.c.user_id)))
    query = where_runs(query, engine, ((RUNS.c.user_id, q.user), (RUNS.c.exercise_id, q.exercise),
                                       (RUNS.c.status, q.status), (RUNS.c.limit_hit, q.limit),
                                       (RUNS.c.client, q.client)), q.since, q.until)
    column = SORTS[q.sort]
    # The database's own NULL order (no NULLS LAST), so one ascending index serves both
    # directions; the tie-break follows the same direction for the same reason.
    order = (lambda c: c.desc()) if q.descending else (lambda c: c.asc())
    query = query.order_by(*(order(c) for c in dict.fromkeys((column, RUNS.c.requested_at,
                                                               RUNS.c.id))))
    query = query.limit(q.size + 1).offset(q.offset)      # one more tells whether a next page exists
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [_jsonable(row) for row in rows[:q.size]], len(rows) > q.size


async def user_label(engine: AsyncEngine, user_id: str | None) -> str:
    if user_id is None:
        return "-"
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(USERS.c.email, USERS.c.name)
                                  .where(USERS.c.id == user_id))).first()
    return who(user_id, row.email if row else None, row.name if row else None)
