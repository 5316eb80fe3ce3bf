"""URLs (pure), the server's async engine and ping on real SQLite and Postgres."""
from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from server import db
from tests import services
from tests.test_faults import own_postgres  # noqa: F401  (a fixture)


@pytest.mark.parametrize("given, sync, async_", [
    ("postgresql://u:p@h:5/d", "postgresql+psycopg2://u:p@h:5/d", "postgresql+asyncpg://u:p@h:5/d"),
    ("postgres://u@h/d", "postgresql+psycopg2://u@h/d", "postgresql+asyncpg://u@h/d"),
    ("postgresql+asyncpg://u@h/d", "postgresql+psycopg2://u@h/d", "postgresql+asyncpg://u@h/d"),
    ("postgresql://u@h/d?sslmode=require&application_name=x", "postgresql+psycopg2://u@h/d?sslmode=require&application_name=x",
     "postgresql+asyncpg://u@h/d?ssl=require&application_name=x"),
    ("sqlite:////abs/path/x.db", "sqlite:////abs/path/x.db", "sqlite+aiosqlite:////abs/path/x.db"),
    ("sqlite+aiosqlite:///rel.db", "sqlite:///rel.db", "sqlite+aiosqlite:///rel.db"),
])
def test_urls_for_each_driver(make_settings, given, sync, async_):
    settings = make_settings(LS_DATABASE_URL=given)
    assert db.sync_url(settings) == sync
    assert db.async_url(settings) == async_


def test_embedded_urls_name_the_file_in_the_data_dir(make_settings):
    settings = make_settings()
    path = (settings.data_dir / "lessonserver.db").resolve()
    assert db.sync_url(settings) == f"sqlite:///{path}"
    assert db.async_url(settings) == f"sqlite+aiosqlite:///{path}"


async def test_ping_answers_on_both_backends(db_engine):
    await db.ping(db_engine)


async def test_ping_raises_when_postgres_is_unreachable(make_settings):
    settings = make_settings(LS_DATABASE_URL=f"postgresql://nobody@127.0.0.1:{services.free_port()}/x")
    engine = db.create_engine(settings)
    try:
        with pytest.raises((OSError, sa.exc.DBAPIError)):
            await db.ping(engine)
    finally:
        await engine.dispose()


async def test_sqlite_engine_uses_wal_busy_timeout_and_foreign_keys(make_settings):
    settings = make_settings()
    db.upgrade(settings)
    engine = db.create_engine(settings)
    try:
        async with engine.connect() as conn:
            pragma = lambda name: conn.execute(sa.text(f"PRAGMA {name}"))  # noqa: E731
            assert (await pragma("journal_mode")).scalar() == "wal"
            assert (await pragma("busy_timeout")).scalar() == db.SQLITE_BUSY_MS
            assert (await pragma("foreign_keys")).scalar() == 1
    finally:
        await engine.dispose()


async def test_postgres_engine_pools_connections(make_settings, fresh_pg_url):
    engine = db.create_engine(make_settings(LS_DATABASE_URL=fresh_pg_url))
    try:
        assert engine.dialect.driver == "asyncpg"
        for _ in range(3):
            await db.ping(engine)
        assert engine.pool.checkedin() == 1   # one connection, reused
    finally:
        await engine.dispose()


def test_only_a_connection_that_rested_is_pinged_at_checkout():
    assert not db.needs_ping(None, 100.0)                                # new: it just connected
    assert not db.needs_ping(100.0 - db.REST_BEFORE_PING / 2, 100.0)     # in steady use
    assert db.needs_ping(100.0 - db.REST_BEFORE_PING, 100.0)


async def test_a_rested_connection_lost_in_a_postgres_restart_is_replaced_unseen(
        own_postgres, make_settings):
    pg, url = own_postgres
    engine = db.create_engine(make_settings(LS_DATABASE_URL=url))
    try:
        await db.ping(engine)
        assert engine.pool.checkedin() == 1
        pg.stop()
        pg.start()                      # the pooled connection's server is gone
        await asyncio.sleep(db.REST_BEFORE_PING)
        await db.ping(engine)           # pinged at checkout, dropped, a new one answers
    finally:
        await engine.dispose()
