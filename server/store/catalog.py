"""The course catalog mirrored into the database, so SQL (admin views, reports) can join on it.

The lesson files stay the source of truth: `entries_from` turns a parsed
Catalog into rows (pure), `sync_catalog` makes the tables match them. It
never touches progress, so renaming or withdrawing a lesson keeps learners'
records.
"""
from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.models import Course, Exercise, Lesson
from server.store import from_row, upsert


@dataclasses.dataclass(frozen=True)
class CourseRow:
    slug: str
    title: str
    description: str
    position: int


@dataclasses.dataclass(frozen=True)
class ExerciseRow:
    lesson_slug: str
    id: str
    title: str
    check_kind: str
    position: int         # order within the lesson


@dataclasses.dataclass(frozen=True)
class LessonRow:
    slug: str
    course_slug: str
    title: str
    kernel: str
    paid: bool
    position: int
    prerequisites: tuple[str, ...]
    content_hash: str


@dataclasses.dataclass(frozen=True)
class CatalogEntry:
    """One course with its lessons and their exercises, as rows."""
    course: CourseRow
    lessons: tuple[LessonRow, ...]
    exercises: tuple[ExerciseRow, ...]


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def entries_from(catalog: Any) -> tuple[CatalogEntry, ...]:
    """Rows for every course of a server.course.model.Catalog, in catalog order."""
    return tuple(_entry(position, course) for position, course in enumerate(catalog.courses))


def _entry(position: int, course: Any) -> CatalogEntry:
    lessons = tuple(
        LessonRow(slug=lesson.slug, course_slug=course.slug, title=lesson.title, kernel=lesson.kernel,
                  paid=bool(lesson.paid), position=index, prerequisites=tuple(lesson.prerequisites),
                  content_hash=content_hash(lesson.body))
        for index, lesson in enumerate(course.lessons))
    exercises = tuple(
        ExerciseRow(lesson_slug=lesson.slug, id=exercise.id, title=exercise.title,
                    check_kind=str(getattr(exercise.check.kind, "value", exercise.check.kind)),
                    position=index)
        for lesson in course.lessons for index, exercise in enumerate(lesson.exercises))
    return CatalogEntry(CourseRow(course.slug, course.title, course.description or "", position),
                        lessons, exercises)


async def sync_catalog(engine: AsyncEngine, entries: Iterable[CatalogEntry]) -> None:
    """Upsert every course, lesson and exercise; delete the ones no longer listed. One transaction.

    Upserts rather than delete-and-insert: several servers starting together
    may sync the same catalog at once.
    """
    entries = tuple(entries)
    courses = [e.course for e in entries]
    lessons = [lesson for e in entries for lesson in e.lessons]
    exercises = [exercise for e in entries for exercise in e.exercises]
    async with engine.begin() as conn:
        await _upsert(conn, engine, Course, ("slug",), courses)
        await _upsert(conn, engine, Lesson, ("slug",), lessons)
        await _upsert(conn, engine, Exercise, ("lesson_slug", "id"), exercises)
        await _delete_missing(conn, Exercise, ("lesson_slug", "id"), {(x.lesson_slug, x.id) for x in exercises})
        await _delete_missing(conn, Lesson, ("slug",), {(x.slug,) for x in lessons})
        await _delete_missing(conn, Course, ("slug",), {(x.slug,) for x in courses})


async def _upsert(conn: AsyncConnection, engine: AsyncEngine, model: Any, keys: tuple[str, ...],
                  rows: Sequence[Any]) -> None:
    if not rows:
        return
    values = [_values(row) for row in rows]
    stmt = upsert(engine, model.__table__)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys),
        set_={name: stmt.excluded[name] for name in values[0] if name not in keys})
    await conn.execute(stmt, values)


async def _delete_missing(conn: AsyncConnection, model: Any, keys: tuple[str, ...],
                          wanted: set[tuple[str, ...]]) -> None:
    columns = [getattr(model, key) for key in keys]
    stored = {tuple(row) for row in await conn.execute(sa.select(*columns))}
    stale = stored - wanted
    if stale:
        where = sa.and_(*(column == sa.bindparam(f"k_{key}") for column, key in zip(columns, keys)))
        await conn.execute(sa.delete(model).where(where),
                           [{f"k_{key}": value for key, value in zip(keys, row)} for row in stale])


def _values(row: Any) -> dict[str, Any]:
    values = dataclasses.asdict(row)
    if "prerequisites" in values:
        values["prerequisites"] = list(values["prerequisites"])  # JSON array
    return values


async def lessons(engine: AsyncEngine) -> list[LessonRow]:
    """The stored lessons in course and lesson order."""
    query = (sa.select(Lesson.__table__).join(Course, Course.slug == Lesson.course_slug)
             .order_by(Course.position, Lesson.position, Lesson.slug))
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [from_row(LessonRow, row, prerequisites=tuple(row["prerequisites"] or ())) for row in rows]


async def exercises(engine: AsyncEngine, lesson_slug: str) -> list[ExerciseRow]:
    query = sa.select(Exercise.__table__).where(Exercise.lesson_slug == lesson_slug).order_by(Exercise.position)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [from_row(ExerciseRow, row) for row in rows]
