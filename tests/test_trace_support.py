"""Helpers the trace tests share: fresh migrated databases and plain SQL reads (no tests here)."""
from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2

from server.db import upgrade


def fetch_all(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    if url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(url.split("///", 1)[1])) as conn:
            return [tuple(row) for row in conn.execute(sql.replace("%s", "?"), params)]
    with contextlib.closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return [tuple(row) for row in cur.fetchall()]


@contextlib.contextmanager
def fresh_postgres(server_url: str, prefix: str = "traces") -> Iterator[str]:
    """A new, empty database on the test cluster; dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    parts = urlsplit(server_url)
    admin_url = urlunsplit((*parts[:2], "/postgres", *parts[3:]))
    _admin(admin_url, f"CREATE DATABASE {name}")
    try:
        yield urlunsplit((*parts[:2], f"/{name}", *parts[3:]))
    finally:
        _admin(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _admin(url: str, sql: str) -> None:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        conn.cursor().execute(sql)
    finally:
        conn.close()


def migrate(url: str, settings_factory) -> None:
    """The real schema: `server.db.upgrade` on the database at `url`."""
    upgrade(settings_factory(LS_DATABASE_URL=url))


@contextlib.contextmanager
def schema_url(kind: str, request, tmp_path: Path) -> Iterator[str]:
    """A migrated database of `kind` (postgres or sqlite) for one test."""
    make_settings = request.getfixturevalue("make_settings")
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'traces.db'}"
        migrate(url, make_settings)
        yield url
        return
    with fresh_postgres(request.getfixturevalue("pg_url")) as url:
        migrate(url, make_settings)
        yield url
