"""Progress writes of runs that finish together share a transaction (issue 11: a live event's
runs): each run still gets its own learner's rows of its lesson, every attempt is counted, and
a write the database refuses fails alone; on SQLite and on real Postgres."""
from __future__ import annotations

import asyncio
import itertools
import zlib

import sqlalchemy as sa

from server.learning import pending_progress
from server.learning.pending_progress import PendingProgress, ProgressWrite
from server.store import progress, users


def transactions(engine) -> list[int]:
    """A counter of the transactions `engine` begins from now on."""
    begun = [0]
    sa.event.listen(engine.sync_engine, "begin", lambda conn: begun.__setitem__(0, begun[0] + 1))
    return begun


def lane(user_id: str) -> int:
    return zlib.crc32(user_id.encode()) % pending_progress.LANES


async def test_writes_that_arrive_together_share_transactions_and_each_gets_its_rows(db_engine, tmp_path):
    learners = [(await users.create_anonymous(db_engine)).id for _ in range(30)]
    writes = [ProgressWrite(u, "intro", "a", i % 2 == 0, f"code {i}") for i, u in enumerate(learners)]
    writes += [ProgressWrite(u, "other", "x", True, "x") for u in learners[:5]]     # another lesson
    writes += [ProgressWrite(u, "intro", "a", False, "again") for u in learners[:3]]  # a second try
    pending = PendingProgress(db_engine, tmp_path / "spool")
    begun = transactions(db_engine)
    results = await asyncio.gather(*(pending.record(w) for w in writes))
    assert begun[0] <= 2 * pending_progress.LANES        # not one each: 38 writes
    for write, rows in zip(writes, results):
        assert {row.lesson_slug for row in rows} == {write.lesson_slug}    # its own lesson only
        assert {row.exercise_id for row in rows} == {"a" if write.lesson_slug == "intro" else "x"}
    mine = {u: progress.by_exercise(await progress.get_for_user(db_engine, u)) for u in learners}
    for i, u in enumerate(learners):
        intro = mine[u][("intro", "a")]
        assert intro.attempts == (2 if i < 3 else 1)
        assert intro.status.value == ("passed" if i % 2 == 0 else "failed")   # a pass stays a pass
        assert (("other", "x") in mine[u]) == (i < 5)
    assert pending.waiting == 0


async def test_a_write_the_database_refuses_fails_alone(db_engine, tmp_path):
    kept = (await users.create_anonymous(db_engine)).id
    gone = next(f"{n:032x}" for n in itertools.count() if lane(f"{n:032x}") == lane(kept))
    pending = PendingProgress(db_engine, tmp_path / "spool")
    begun = transactions(db_engine)
    stored, refused = await asyncio.gather(    # the same lane, so the same round
        pending.record(ProgressWrite(kept, "intro", "a", True, "x")),
        pending.record(ProgressWrite(gone, "intro", "a", True, "x")),   # no such learner
        return_exceptions=True)
    assert isinstance(refused, sa.exc.IntegrityError)
    assert [(row.exercise_id, row.attempts) for row in stored] == [("a", 1)]
    assert begun[0] == 3                     # together (refused), then each on its own
    assert pending.waiting == 0              # refused for its content: not spooled for retries
