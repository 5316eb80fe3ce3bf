"""Progress upserts on SQLite and Postgres: attempts count, passed sticks, concurrency loses nothing."""
from __future__ import annotations

import asyncio
import dataclasses

import pytest
import sqlalchemy as sa

from server.store import progress, users
from server.store.progress import Status


@pytest.fixture
async def user_id(db_engine):
    return (await users.create_anonymous(db_engine)).id


async def test_first_attempt_creates_the_row(db_engine, user_id):
    row = await progress.record(db_engine, user_id, "intro", "hello", passed=False, code="print(1)")
    assert (row.lesson_slug, row.exercise_id, row.status, row.attempts, row.code) == \
        ("intro", "hello", Status.FAILED, 1, "print(1)")
    assert row.updated_at.tzinfo is not None
    assert await progress.get_for_user(db_engine, user_id) == [row]


async def test_attempts_count_and_passed_stays_passed(db_engine, user_id):
    await progress.record(db_engine, user_id, "intro", "hello", passed=False, code="a")
    passed = await progress.record(db_engine, user_id, "intro", "hello", passed=True, code="b")
    assert passed.status is Status.PASSED and passed.attempts == 2
    after = await progress.record(db_engine, user_id, "intro", "hello", passed=False, code="c")
    assert after.status == "passed" and after.attempts == 3
    assert after.code == "c"   # the latest submission is what the editor restores
    assert after.updated_at >= passed.updated_at
    [stored] = await progress.get_for_user(db_engine, user_id)
    assert stored == after


async def test_rows_are_per_user_and_exercise(db_engine, user_id):
    other = (await users.create_anonymous(db_engine)).id
    await progress.record(db_engine, user_id, "loops", "b", passed=True, code="")
    await progress.record(db_engine, user_id, "intro", "a", passed=False, code="")
    await progress.record(db_engine, other, "intro", "a", passed=True, code="x")
    mine = await progress.get_for_user(db_engine, user_id)
    assert [(r.lesson_slug, r.exercise_id, r.status) for r in mine] == \
        [("intro", "a", Status.FAILED), ("loops", "b", Status.PASSED)]
    assert {key: row.status for key, row in progress.by_exercise(mine).items()} == \
        {("intro", "a"): "failed", ("loops", "b"): "passed"}
    assert [r.status for r in await progress.get_for_user(db_engine, other)] == [Status.PASSED]
    assert await progress.get_for_user(db_engine, "0" * 32) == []


async def test_a_write_with_its_lesson_gives_that_lessons_rows_after_it(db_engine, user_id):
    other = (await users.create_anonymous(db_engine)).id
    await progress.record(db_engine, user_id, "intro", "a", passed=True, code="")
    await progress.record(db_engine, user_id, "loops", "z", passed=True, code="")   # another lesson
    await progress.record(db_engine, other, "intro", "b", passed=True, code="")     # another learner
    [rows] = await progress.record_each_in_lesson(
        db_engine, [progress.Attempt(user_id, "intro", "b", passed=False, code="y")])
    assert sorted((r.exercise_id, r.status, r.attempts) for r in rows) == \
        [("a", Status.PASSED, 1), ("b", Status.FAILED, 1)]
    [again] = await progress.record_each_in_lesson(
        db_engine, [progress.Attempt(user_id, "intro", "b", passed=True, code="w")])
    assert {r.exercise_id: (r.status, r.attempts, r.code) for r in again}["b"] == \
        (Status.PASSED, 2, "w")
    assert sorted(r.exercise_id for r in await progress.get_for_user(db_engine, user_id)) == \
        ["a", "b", "z"]


async def test_concurrent_attempts_are_all_counted(db_engine, user_id):
    results = await asyncio.gather(*(
        progress.record(db_engine, user_id, "intro", "race", passed=(i == 7), code=f"#{i}")
        for i in range(20)))
    assert sorted(r.attempts for r in results) == list(range(1, 21))
    [stored] = await progress.get_for_user(db_engine, user_id)
    assert stored.attempts == 20 and stored.status is Status.PASSED


async def test_unicode_and_large_code_round_trip(db_engine, user_id):
    code = "print('héllo ✓ 🐍')\n" * 5000
    row = await progress.record(db_engine, user_id, "intro", "big", passed=True, code=code)
    assert row.code == code
    assert (await progress.get_for_user(db_engine, user_id))[0].code == code


async def test_progress_needs_a_real_user(db_engine):
    with pytest.raises(sa.exc.IntegrityError):
        await progress.record(db_engine, "f" * 32, "intro", "a", passed=True, code="")


def test_rows_are_frozen_values():
    row = progress.ProgressRow("l", "e", Status.PASSED, 1, "", None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.attempts = 2
