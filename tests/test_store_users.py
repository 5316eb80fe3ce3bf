"""Users store on SQLite and Postgres through the server's own engine."""
from __future__ import annotations

import datetime as dt

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
