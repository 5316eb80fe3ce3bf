"""Database URLs, the async engine the server uses, and schema migration.

The server talks to the database through one AsyncEngine (asyncpg on
Postgres, aiosqlite in embedded mode). Migrations are plain blocking
Alembic runs (psycopg2 / sqlite3): `lessonserver db upgrade`, or the
server itself at start-up in embedded mode.
"""
from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from server.config import Settings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_MS = 10_000   # writers wait this long for SQLite's single write lock


def _with_driver(url: str, postgres_driver: str, sqlite_driver: str | None) -> str:
    # String surgery, not urlunsplit: that would turn sqlite:////abs/path into sqlite://abs/path.
    scheme, sep, rest = url.partition("://")
    dialect = scheme.split("+", 1)[0]
    if sep and dialect in ("postgresql", "postgres"):
        return f"postgresql+{postgres_driver}://{rest}"
    if sep and dialect == "sqlite":
        return f"sqlite+{sqlite_driver}://{rest}" if sqlite_driver else f"sqlite://{rest}"
    raise ValueError(f"unsupported database URL {scheme!r}")


def sync_url(settings: Settings) -> str:
    """The URL for blocking drivers (migrations): postgresql+psycopg2 or sqlite."""
    return _with_driver(settings.sqlalchemy_url, "psycopg2", None)


def async_url(settings: Settings) -> str:
    """The URL for the server's engine: postgresql+asyncpg or sqlite+aiosqlite."""
    url = _with_driver(settings.sqlalchemy_url, "asyncpg", "aiosqlite")
    parts = urlsplit(url)
    if parts.scheme.startswith("postgresql") and "sslmode=" in parts.query:
        # libpq spells it sslmode; asyncpg takes the same values as `ssl`.
        query = [("ssl" if key == "sslmode" else key, value) for key, value in parse_qsl(parts.query)]
        url = urlunsplit((*parts[:3], urlencode(query), parts.fragment))
    return url


def _sqlite_path(url: str) -> Path | None:
    """The file of a sqlite URL, or None for an in-memory database."""
    path = url.split("///", 1)[1] if "///" in url else ""
    path = path.split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def _pragmas(dbapi_connection, _record) -> None:
    # WAL lets page reads go on while a run's progress is written; foreign keys
    # are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_engine(settings: Settings) -> AsyncEngine:
    """The one engine of a server process; dispose() it on shutdown."""
    url = async_url(settings)
    if url.startswith("sqlite"):
        engine = create_async_engine(url)
        sa.event.listen(engine.sync_engine, "connect", _pragmas)
        return engine
    # The overflow absorbs a spike without holding many idle connections per serve process.
    engine = create_async_engine(url, pool_size=10, max_overflow=20, pool_timeout=10,
                                 pool_recycle=1800)
    _ping_rested_connections(engine)
    return engine


REST_BEFORE_PING = 1.0   # seconds a pooled connection rests before its next checkout pings it


def needs_ping(rested_since: float | None, now: float) -> bool:
    """A connection back in the pool for a while may have lost its server (a restart takes
    longer than REST_BEFORE_PING); a new one, or one used a moment ago, answers."""
    return rested_since is not None and now - rested_since >= REST_BEFORE_PING


def _ping_rested_connections(engine: AsyncEngine) -> None:
    """pool_pre_ping, for rested connections only: asyncpg's ping is BEGIN, a round trip and
    ROLLBACK, half of the round trips of a busy process (a run made 12, a page with a
    learner's row 6), and a connection in steady use needs none."""
    def checked_in(_dbapi_connection, record) -> None:
        record.info["rested_since"] = time.monotonic()

    def checked_out(dbapi_connection, record, _proxy) -> None:
        if needs_ping(record.info.pop("rested_since", None), time.monotonic()):
            try:
                dbapi_connection.ping()
            except Exception as exc:   # the pool drops it and checks out another
                raise sa.exc.DisconnectionError(str(exc)) from exc

    sa.event.listen(engine.sync_engine, "checkin", checked_in)
    sa.event.listen(engine.sync_engine, "checkout", checked_out)


async def ping(engine: AsyncEngine) -> None:
    """Raises when the database does not answer SELECT 1."""
    async with engine.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))


def alembic_config(settings: Settings) -> Config:
    """An Alembic Config built in code: no alembic.ini lookup, no environment."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sync_url(settings).replace("%", "%%"))
    return cfg


def _prepare(settings: Settings) -> Config:
    url = sync_url(settings)
    path = _sqlite_path(url) if url.startswith("sqlite") else None
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    return alembic_config(settings)


def upgrade(settings: Settings) -> str:
    """Migrate to the newest revision (a no-op when already there); returns it."""
    cfg = _prepare(settings)
    command.upgrade(cfg, "head")
    return ScriptDirectory.from_config(cfg).get_current_head() or "base"


def downgrade(settings: Settings, revision: str = "base") -> None:
    command.downgrade(_prepare(settings), revision)


def current_revision(settings: Settings) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    url = sync_url(settings)
    path = _sqlite_path(url) if url.startswith("sqlite") else None
    if path is not None and not path.exists():
        return None  # asking must not create the file
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
