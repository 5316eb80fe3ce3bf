"""Learner progress per exercise: one upserted row each, counting attempts.

`record` is a single INSERT ... ON CONFLICT DO UPDATE ... RETURNING on both
Postgres and SQLite, so concurrent submissions of the same exercise never
lose an attempt and never race a read against a write.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.models import Progress, utcnow
from server.store import INSERTS, from_row


class Status(str, enum.Enum):
    PASSED = "passed"
    FAILED = "failed"


@dataclasses.dataclass(frozen=True)
class ProgressRow:
    lesson_slug: str
    exercise_id: str
    status: Status
    attempts: int
    code: str             # the learner's latest submission, passing or not
    updated_at: dt.datetime
    solution_shown_at: dt.datetime | None = None   # first shown the solution (reveal=N)


COLUMNS = tuple(getattr(Progress, f.name) for f in dataclasses.fields(ProgressRow))


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One run's attempt at an exercise, as its learner's progress counts it."""
    user_id: str
    lesson_slug: str
    exercise_id: str
    passed: bool
    code: str
    last_run: str | None = None   # the run as the page showed it, for a reload


def _row(row: sa.RowMapping) -> ProgressRow:
    return from_row(ProgressRow, row, status=Status(row["status"]))


def by_exercise(rows: Iterable[ProgressRow]) -> dict[tuple[str, str], ProgressRow]:
    """{(lesson_slug, exercise_id): row}: the shape pages look statuses up in."""
    return {(row.lesson_slug, row.exercise_id): row for row in rows}


async def get_for_user(engine: AsyncEngine, user_id: str) -> list[ProgressRow]:
    query = (sa.select(*COLUMNS).where(Progress.user_id == user_id)
             .order_by(Progress.lesson_slug, Progress.exercise_id))
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [_row(row) for row in rows]


async def last_runs(engine: AsyncEngine, user_id: str, lesson_slug: str) -> dict[str, str]:
    """{exercise_id: stored latest run} of one learner in one lesson: what a reloaded page shows.
    Only here, not in every page's rows: each may hold tens of KB."""
    query = sa.select(Progress.exercise_id, Progress.last_run).where(
        Progress.user_id == user_id, Progress.lesson_slug == lesson_slug,
        Progress.last_run.is_not(None))
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return {exercise_id: last_run for exercise_id, last_run in rows}


async def mark_solution_shown(engine: AsyncEngine, user_id: str, lesson_slug: str,
                              exercise_id: str) -> ProgressRow | None:
    """Record that the learner was shown the solution (the first time counts); None when the
    learner has no row for the exercise (no attempt yet)."""
    stmt = (sa.update(Progress)
            .where(Progress.user_id == user_id, Progress.lesson_slug == lesson_slug,
                   Progress.exercise_id == exercise_id)
            .values(solution_shown_at=sa.func.coalesce(Progress.solution_shown_at, utcnow()))
            .returning(*COLUMNS))
    async with engine.begin() as conn:
        row = (await conn.execute(stmt)).mappings().one_or_none()
    return _row(row) if row is not None else None


async def record(engine: AsyncEngine, user_id: str, lesson_slug: str, exercise_id: str,
                 passed: bool, code: str, last_run: str | None = None) -> ProgressRow:
    """Count one attempt; a passed exercise stays passed whatever comes after. `last_run` is
    the run as the page showed it (kept for a reload), in the same statement."""
    async with engine.begin() as conn:
        return await _record(conn, user_id, lesson_slug, exercise_id, passed, code, last_run)


async def record_each_in_lesson(engine: AsyncEngine,
                                attempts: Sequence[Attempt]) -> list[list[ProgressRow]]:
    """As `record` for each attempt, and each learner's rows of its lesson after them (for a
    run's verdict, "2 of 3 passed"), all in one transaction: the attempts counted in their
    order, then the rows in one read. Runs that finish together (a live event's) cost one
    checkout and commit in all, not one each: 0.45 ms of the server's CPU a run against
    1.7 ms (200 runs on a local Postgres). One attempt the database refuses fails the
    transaction: the caller then stores them one by one."""
    async with engine.begin() as conn:
        for a in attempts:
            await _record(conn, a.user_id, a.lesson_slug, a.exercise_id, a.passed, a.code,
                          a.last_run)
        rows = (await conn.execute(_IN_LESSONS, {
            "users": sorted({a.user_id for a in attempts}),
            "lessons": sorted({a.lesson_slug for a in attempts})})).mappings().all()
    pairs: dict[tuple[str, str], list[ProgressRow]] = {}
    for row in rows:
        pairs.setdefault((row["user_id"], row["lesson_slug"]), []).append(_row(row))
    return [list(pairs.get((a.user_id, a.lesson_slug), ())) for a in attempts]


async def _record(conn: AsyncConnection, user_id: str, lesson_slug: str, exercise_id: str,
                  passed: bool, code: str, last_run: str | None) -> ProgressRow:
    status = Status.PASSED if passed else Status.FAILED
    row = (await conn.execute(_UPSERTS[conn.dialect.name], {
        "user_id": user_id, "lesson_slug": lesson_slug, "exercise_id": exercise_id,
        "status": status.value, "code": code, "updated_at": utcnow(), "last_run": last_run,
    })).mappings().one()
    return _row(row)


def _upsert(insert: Callable[[sa.Table], Any]) -> Any:
    """Count one attempt of one exercise; a passed exercise stays passed, and a run with no
    `last_run` keeps the one stored."""
    stmt = insert(Progress.__table__).values(
        user_id=sa.bindparam("user_id"), lesson_slug=sa.bindparam("lesson_slug"),
        exercise_id=sa.bindparam("exercise_id"), status=sa.bindparam("status"), attempts=1,
        code=sa.bindparam("code"), updated_at=sa.bindparam("updated_at"),
        last_run=sa.bindparam("last_run"))
    return stmt.on_conflict_do_update(
        index_elements=["user_id", "lesson_slug", "exercise_id"], set_={
            "status": sa.case((Progress.status == Status.PASSED.value, Status.PASSED.value),
                              else_=stmt.excluded.status),
            "attempts": Progress.attempts + 1,
            "code": stmt.excluded.code,
            "updated_at": stmt.excluded.updated_at,
            "last_run": sa.func.coalesce(stmt.excluded.last_run, Progress.last_run),
        }).returning(*COLUMNS)


# Built once, one per dialect: building them per run (the ON CONFLICT clause, its EXCLUDED
# alias) cost a live event 2 ms of the server's CPU per learner (10.6 -> 7.9 ms in all).
_UPSERTS = {dialect: _upsert(insert) for dialect, insert in INSERTS.items()}
# Several learners' rows of several lessons: a few pairs too many, which the caller sorts out.
_IN_LESSONS = sa.select(Progress.user_id, *COLUMNS).where(
    Progress.user_id.in_(sa.bindparam("users", expanding=True)),
    Progress.lesson_slug.in_(sa.bindparam("lessons", expanding=True)))
