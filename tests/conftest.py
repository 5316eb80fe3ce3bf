"""Shared fixtures: the real servers (started here when not given) and settings."""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from server import config
from tests import services


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A real Postgres: LS_DATABASE_URL when set, else a throwaway cluster."""
    given = os.environ.get("LS_DATABASE_URL", "")
    if given.startswith("postgres"):
        yield given
        return
    with services.throwaway_postgres() as url:
        yield url


@pytest.fixture
def fresh_pg_url(pg_url: str) -> Iterator[str]:
    """A new, empty database in the session's Postgres cluster for one test; dropped afterwards."""
    from tests.test_trace_support import fresh_postgres
    with fresh_postgres(pg_url, prefix="t") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
async def db_engine(request, make_settings):
    """A migrated database of each kind behind the server's own AsyncEngine."""
    from server import db
    env = {} if request.param == "sqlite" else {"LS_DATABASE_URL": request.getfixturevalue("fresh_pg_url")}
    settings = make_settings(**env)
    db.upgrade(settings)
    engine = db.create_engine(settings)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[services.RedisServer]:
    """A throwaway redis-server that tests may stop and restart."""
    server = services.RedisServer()
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_url(redis_server: services.RedisServer) -> str:
    return os.environ.get("LS_REDIS_URL") or redis_server.url


@pytest.fixture(scope="session")
def instance_name() -> str:
    """Container label for this test session, so parallel runs never reap each other."""
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_settings(tmp_path: Path, instance_name: str):
    """Settings as `lessonserver` would load them, from a clean environment plus overrides."""
    def make(**env: str) -> config.Settings:
        base = {"LS_DATA_DIR": str(tmp_path / "data"), "LS_PORT": "0",
                "LS_INSTANCE": instance_name, "LS_POOL_SIZE": "0"}
        return config.load({**base, **env})
    return make
