"""Catalog rows: the pure conversion from parsed lessons, and syncing them on SQLite and Postgres."""
from __future__ import annotations

import dataclasses

import pytest
import sqlalchemy as sa

from server.course.model import Catalog, Check, CheckKind, Course, Exercise, Lesson
from server.store import catalog as store
from server.store import progress, users


def exercise(ex_id: str, kind: CheckKind = CheckKind.OUTPUT) -> Exercise:
    return Exercise(id=ex_id, title=f"Exercise {ex_id}", language="python", starter="",
                    check=Check(kind, expected="1" if kind is CheckKind.OUTPUT else None,
                                code="assert True" if kind is CheckKind.TESTS else None))


def lesson(slug: str, *exercises: Exercise, paid: bool = False, prerequisites: tuple[str, ...] = (),
           body: str = "") -> Lesson:
    return Lesson(slug=slug, title=slug.title(), summary="", kernel="python", paid=paid, order=0,
                  prerequisites=prerequisites, exercises=exercises, body=body or f"# {slug}",
                  path=f"{slug}.md", course="c")


CATALOG = Catalog(courses=(
    Course("basics", "Basics", "Start here", (
        lesson("values", exercise("print"), exercise("sum", CheckKind.TESTS)),
        lesson("loops", exercise("for"), paid=True, prerequisites=("values",)),
    )),
    Course("shell", "Shell", "", (lesson("files", exercise("ls")),)),
))


def test_entries_from_is_a_pure_conversion():
    entries = store.entries_from(CATALOG)
    assert [e.course for e in entries] == [store.CourseRow("basics", "Basics", "Start here", 0),
                                           store.CourseRow("shell", "Shell", "", 1)]
    values, loops = entries[0].lessons
    assert (values.slug, values.course_slug, values.position, values.paid, values.prerequisites) == \
        ("values", "basics", 0, False, ())
    assert (loops.position, loops.paid, loops.prerequisites, loops.kernel) == (1, True, ("values",), "python")
    assert entries[0].exercises == (store.ExerciseRow("values", "print", "Exercise print", "output", 0),
                                    store.ExerciseRow("values", "sum", "Exercise sum", "tests", 1),
                                    store.ExerciseRow("loops", "for", "Exercise for", "output", 0))
    assert values.content_hash == store.content_hash("# values") and len(values.content_hash) == 64
    assert store.entries_from(CATALOG) == entries   # same input, same rows
    edited = store.entries_from(Catalog(courses=(Course("basics", "Basics", "", (
        lesson("values", body="# values, edited"),)),)))
    assert edited[0].lessons[0].content_hash != values.content_hash
    with pytest.raises(dataclasses.FrozenInstanceError):
        values.title = "x"


async def test_sync_inserts_everything(db_engine):
    await store.sync_catalog(db_engine, store.entries_from(CATALOG))
    stored = await store.lessons(db_engine)
    assert stored == [row for e in store.entries_from(CATALOG) for row in e.lessons]
    assert [x.id for x in await store.exercises(db_engine, "values")] == ["print", "sum"]


async def test_sync_is_idempotent_and_follows_edits(db_engine):
    await store.sync_catalog(db_engine, store.entries_from(CATALOG))
    await store.sync_catalog(db_engine, store.entries_from(CATALOG))
    edited = Catalog(courses=(
        Course("basics", "Basics again", "New text", (
            lesson("loops", exercise("while"), prerequisites=()),          # moved first, exercise replaced
            lesson("values", exercise("sum", CheckKind.TESTS), exercise("print"), body="# new"),  # reordered
        )),
    ))
    await store.sync_catalog(db_engine, store.entries_from(edited))
    stored = await store.lessons(db_engine)
    assert [(row.slug, row.position, row.paid) for row in stored] == [("loops", 0, False), ("values", 1, False)]
    assert stored[1].content_hash == store.content_hash("# new")
    assert [x.id for x in await store.exercises(db_engine, "loops")] == ["while"]
    assert [x.id for x in await store.exercises(db_engine, "values")] == ["sum", "print"]
    assert await store.exercises(db_engine, "files") == []
    async with db_engine.connect() as conn:
        courses = (await conn.execute(sa.text("SELECT slug, title, description FROM courses"))).all()
    assert [tuple(c) for c in courses] == [("basics", "Basics again", "New text")]


async def test_removed_lessons_keep_their_progress(db_engine):
    await store.sync_catalog(db_engine, store.entries_from(CATALOG))
    user = await users.create_anonymous(db_engine)
    await progress.record(db_engine, user.id, "files", "ls", passed=True, code="ls")
    await store.sync_catalog(db_engine, store.entries_from(Catalog(courses=CATALOG.courses[:1])))
    assert [row.slug for row in await store.lessons(db_engine)] == ["values", "loops"]
    [kept] = await progress.get_for_user(db_engine, user.id)
    assert (kept.lesson_slug, kept.exercise_id, kept.status) == ("files", "ls", "passed")


async def test_an_empty_catalog_empties_the_tables(db_engine):
    await store.sync_catalog(db_engine, store.entries_from(CATALOG))
    await store.sync_catalog(db_engine, ())
    assert await store.lessons(db_engine) == []
    assert await store.exercises(db_engine, "values") == []


async def test_the_bundled_course_syncs(db_engine):
    from server.config import PROJECT_ROOT
    from server.course.loader import load_catalog
    catalog = load_catalog(PROJECT_ROOT / "lessons", frozenset({"python", "bash", "sql"}))
    assert catalog.courses
    await store.sync_catalog(db_engine, store.entries_from(catalog))
    stored = await store.lessons(db_engine)
    assert [row.slug for row in stored] == [l.slug for c in catalog.courses for l in c.lessons]
    for lesson in (l for c in catalog.courses for l in c.lessons):
        assert [x.id for x in await store.exercises(db_engine, lesson.slug)] == \
            [ex.id for ex in lesson.exercises]
