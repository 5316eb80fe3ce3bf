"""Helpers the trace tests share: fresh migrated databases and plain SQL reads (no tests here)."""
from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2


def fetch_all(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    if url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(url.split("///", 1)[1])) as conn:
            return [tuple(row) for row in conn.execute(sql.replace("%s", "?"), params)]
    with contextlib.closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return [tuple(row) for row in cur.fetchall()]


@contextlib.contextmanager
def fresh_postgres(server_url: str) -> Iterator[str]:
    """A new, empty database on the test cluster; dropped afterwards."""
    name = f"traces_{uuid.uuid4().hex[:12]}"
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


INTERIM_DDL = """
CREATE TABLE runs (
    id varchar(32) PRIMARY KEY,
    user_id varchar(64),
    lesson_slug varchar(200),
    exercise_id varchar(200),
    kernel varchar(64),
    code_hash varchar(64),
    code text,
    status varchar(16) NOT NULL DEFAULT 'running',
    limit_hit varchar(16),
    verdict varchar(16),
    pool_hit boolean,
    container_id varchar(128),
    requested_at timestamptz,
    started_at timestamptz,
    finished_at timestamptz,
    queue_ms double precision,
    start_ms double precision,
    first_output_ms double precision,
    total_ms double precision,
    bytes_out bigint NOT NULL DEFAULT 0,
    event_count integer NOT NULL DEFAULT 0);
CREATE TABLE trace_events (
    id varchar(32) PRIMARY KEY,
    run_id varchar(32) NOT NULL,
    seq integer NOT NULL,
    ts timestamptz NOT NULL,
    kind varchar(32) NOT NULL,
    data jsonb NOT NULL);
CREATE INDEX ix_trace_events_run_seq ON trace_events (run_id,
    seq);
"""


def migrate(url: str, settings_factory) -> None:
    try:
        from server.db import upgrade
    except ImportError:  # until the schema's migration lands: the tables it will create
        ddl = INTERIM_DDL
        if url.startswith("sqlite"):
            ddl = ddl.replace("timestamptz", "datetime").replace("jsonb", "json").replace("double precision", "float")
            with contextlib.closing(sqlite3.connect(url.split("///", 1)[1])) as conn:
                conn.executescript(ddl)
        else:
            with contextlib.closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
                cur.execute(ddl)
                conn.commit()
        return
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
