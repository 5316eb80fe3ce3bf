"""Users store on SQLite and Postgres through the server's own engine."""
from __future__ import annotations

import asyncio
import datetime as dt

import sqlalchemy as sa

from server.store import users


async def test_anonymous_user_round_trips(db_engine):
    created = await users.create_anonymous(db_engine)
    assert len(created.id) == 32 and int(created.id, 16) >= 0
    assert created.email is None and created.name == "" and created.is_admin is False
    loaded = await users.get(db_engine, created.id)
    assert loaded == created
    assert loaded.created_at.tzinfo is not None
    assert abs(loaded.created_at - dt.datetime.now(dt.timezone.utc)) < dt.timedelta(minutes=1)


async def test_every_anonymous_user_is_new(db_engine):
    ids = {(await users.create_anonymous(db_engine)).id for _ in range(5)}
    assert len(ids) == 5


async def test_unknown_user_is_none(db_engine):
    assert await users.get(db_engine, "0" * 32) is None
    assert await users.get(db_engine, "not-even-hex") is None


async def test_new_learners_pressing_run_at_once_get_their_rows_from_one_insert(db_engine):
    """A live event: a hundred first runs in one moment cost one statement, not a hundred
    transactions queued behind the connection pool."""
    inserts: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO USERS"):
            inserts.append(statement)

    sa.event.listen(db_engine.sync_engine, "before_cursor_execute", count)
    rows = users.AnonymousRows(db_engine)
    ids = [users.new_id() for _ in range(100)]
    made = await asyncio.gather(*(rows.create(i) for i in (*ids, ids[0])))   # twice: one row
    assert [u.id for u in made] == [*ids, ids[0]] and made[0] == made[-1]
    assert len(inserts) == 1
    assert await users.get(db_engine, ids[-1]) == made[-2]
    # An id made elsewhere meanwhile (a second tab): that one is read back, the rest made.
    existing = await users.create_anonymous(db_engine)
    more = [users.new_id() for _ in range(3)]
    again = await asyncio.gather(*(rows.create(i) for i in (existing.id, *more)))
    assert again[0] == existing and [u.id for u in again[1:]] == more
    assert all([await users.get(db_engine, i) for i in more])
