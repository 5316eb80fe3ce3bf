"""Migrations on real Postgres and SQLite: idempotent, complete, reversible, and safe to run at once."""
from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from server import db, models
from server.config import PROJECT_ROOT
from tests import services
from tests.test_trace_support import fresh_postgres

HEAD = "0009"   # the newest revision

TABLES = {"users", "courses", "lessons", "exercises", "progress", "runs", "trace_events",
          "subscriptions", "processed_webhook_events", "email_log", "sessions", "account_tokens",
          "admin_audit", "live_events", "feature_flags"}

# The trace tables as workers/trace_store.py and server/tracing/queries.py were
# written against: the migration must create exactly these columns and indexes.
TRACE_REFERENCE_DDL = """
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
    event_count integer NOT NULL DEFAULT 0,
    client varchar(16));
CREATE TABLE trace_events (
    id varchar(32) PRIMARY KEY,
    run_id varchar(32) NOT NULL,
    seq integer NOT NULL,
    ts timestamptz NOT NULL,
    kind varchar(32) NOT NULL,
    data jsonb NOT NULL);
CREATE INDEX ix_trace_events_run_seq ON trace_events (run_id, seq);
CREATE INDEX ix_runs_requested_at ON runs (requested_at);
CREATE INDEX ix_runs_user_requested ON runs (user_id, requested_at);
CREATE INDEX ix_runs_exercise_requested ON runs (exercise_id, requested_at);
CREATE INDEX ix_runs_status_requested ON runs (status, requested_at);
CREATE INDEX ix_runs_total_ms ON runs (total_ms);
CREATE INDEX ix_runs_first_output_ms ON runs (first_output_ms);
"""


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request, make_settings):
    if request.param == "sqlite":
        return make_settings()
    return make_settings(LS_DATABASE_URL=request.getfixturevalue("fresh_pg_url"))


def table_names(settings) -> set[str]:
    engine = sa.create_engine(db.sync_url(settings), poolclass=sa.pool.NullPool)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_creates_every_table_and_repeats_as_a_no_op(settings):
    assert db.current_revision(settings) is None
    assert db.upgrade(settings) == HEAD
    assert table_names(settings) == TABLES | {"alembic_version"}
    assert db.upgrade(settings) == HEAD
    assert db.current_revision(settings) == HEAD


def test_upgrade_keeps_data(settings):
    db.upgrade(settings)
    engine = sa.create_engine(db.sync_url(settings), poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO users (id, name) VALUES ('u1', 'Ada')"))
    db.upgrade(settings)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT name, is_admin FROM users")).all() == [("Ada", False)]
    engine.dispose()


def test_downgrade_to_base_and_back(settings):
    db.upgrade(settings)
    db.downgrade(settings, "base")
    assert table_names(settings) == {"alembic_version"}
    assert db.current_revision(settings) is None
    assert db.upgrade(settings) == HEAD
    assert table_names(settings) >= TABLES


def test_models_match_the_migrated_schema(settings):
    """Autogenerate finds nothing to do: the models and revision 0001 describe the same schema."""
    db.upgrade(settings)
    engine = sa.create_engine(db.sync_url(settings), poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                models.Base.metadata)
    engine.dispose()
    assert diff == []


def test_sqlite_file_goes_into_a_new_data_dir(make_settings, tmp_path):
    settings = make_settings(LS_DATA_DIR=str(tmp_path / "a" / "b" / "data"))
    assert not settings.data_dir.exists()
    db.upgrade(settings)
    path = settings.data_dir / "lessonserver.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]


def pg_columns(url: str, table: str) -> list[tuple]:
    with contextlib.closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT column_name, data_type, character_maximum_length, is_nullable, column_default "
                    "FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
                    (table,))
        columns = cur.fetchall()
        cur.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s AND indexname NOT LIKE '%%pkey' "
                    "ORDER BY indexname", (table,))
        indexes = cur.fetchall()
        cur.execute("SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                    "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
                    (table,))
        primary = cur.fetchall()
    return [columns, indexes, primary]


def test_trace_tables_match_what_the_trace_code_was_written_for(pg_url, make_settings):
    with fresh_postgres(pg_url, "ref") as reference, fresh_postgres(pg_url, "mig") as migrated:
        with contextlib.closing(psycopg2.connect(reference)) as conn, conn.cursor() as cur:
            cur.execute(TRACE_REFERENCE_DDL)
            conn.commit()
        db.upgrade(make_settings(LS_DATABASE_URL=migrated))
        for table in ("runs", "trace_events"):
            assert pg_columns(migrated, table) == pg_columns(reference, table)


def lessonserver(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LS_")}
    return subprocess.run([sys.executable, "-m", "server.cli", *args], env={**clean, **env},
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)


def test_cli_db_upgrade_on_postgres(fresh_pg_url):
    for _ in range(2):
        done = lessonserver({"LS_DATABASE_URL": fresh_pg_url}, "db", "upgrade")
        assert done.returncode == 0, done.stderr
        assert f"database at revision {HEAD}" in done.stdout
    with contextlib.closing(psycopg2.connect(fresh_pg_url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
        assert cur.fetchone()[0] == len(TABLES) + 1


def test_concurrent_upgrades_of_one_postgres_database(fresh_pg_url):
    """Several servers rolling out at once: one migrates, the others wait and find it done."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LS_")},
           "LS_DATABASE_URL": fresh_pg_url}
    procs = [subprocess.Popen([sys.executable, "-m", "server.cli", "db", "upgrade"], env=env,
                              cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 4, [err for _, err in outputs]
    with contextlib.closing(psycopg2.connect(fresh_pg_url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT version_num FROM alembic_version")
        assert cur.fetchall() == [(HEAD,)]


def test_cli_db_upgrade_embedded(tmp_path: Path):
    done = lessonserver({"LS_DATA_DIR": str(tmp_path / "data")}, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "data" / "lessonserver.db").is_file()


def test_cli_db_upgrade_fails_loudly_without_a_database(tmp_path: Path):
    url = f"postgresql://nobody@127.0.0.1:{services.free_port()}/nothing"
    done = lessonserver({"LS_DATABASE_URL": url, "LS_DATA_DIR": str(tmp_path)}, "db", "upgrade")
    assert done.returncode != 0
    assert "connection" in done.stderr.lower() or "connect" in done.stderr.lower()
