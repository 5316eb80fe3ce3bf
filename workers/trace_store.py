"""Writes trace batches and the summaries of their runs, in one transaction per batch.

The event id is the primary key and inserts skip ids already there, so a
retried batch never duplicates a row. After the insert, each touched run's
summary is recomputed from all of its stored events with the pure
`summarize` (arrival order does not matter) and upserted; runs are locked
first so two workers writing batches of the same run cannot each miss the
other's events. A summary is never replaced by one built from fewer events:
once retention dropped a run's raw events, its summary stays as it was.

Postgres goes through psycopg2 (`execute_values`); embedded SQLite through
sqlite3. Plain blocking code: it runs in a worker, or in embedded mode on
the job thread. The connection is opened lazily and reused across batches.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg2
from psycopg2.extras import Json, execute_values

from server.tracing.events import EventKind, RunSummary, TraceEvent, summarize

SUMMARY_FIELDS = tuple(f.name for f in dataclasses.fields(RunSummary))
RUN_COLUMNS = tuple("id" if name == "run_id" else name for name in SUMMARY_FIELDS)
TIME_FIELDS = frozenset({"requested_at", "started_at", "finished_at"})
EVENT_COLUMNS = ("id", "run_id", "seq", "ts", "kind", "data")
# Errors that say the batch itself is wrong: retrying cannot help.
BAD_DATA = (psycopg2.DataError, psycopg2.IntegrityError, sqlite3.DataError, sqlite3.IntegrityError)


def open_store(url: str) -> "TraceStore":
    """A store for the configured database URL (SQLAlchemy spelling accepted)."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme == "sqlite":
        return SqliteTraceStore(url.split("///", 1)[1] if "///" in url else ":memory:")
    if scheme in ("postgresql", "postgres"):
        return PostgresTraceStore(urlunsplit(("postgresql", *parts[1:])))
    raise ValueError(f"no trace store for {scheme} databases")


def summaries_for(events: Iterable[TraceEvent]) -> list[RunSummary]:
    by_run: dict[str, list[TraceEvent]] = defaultdict(list)
    for event in events:
        by_run[event.run_id].append(event)
    return [summarize(run_id, evs) for run_id, evs in sorted(by_run.items())]


def lock_key(run_id: str) -> int:
    """A signed 64-bit key for Postgres advisory locks."""
    return int.from_bytes(hashlib.blake2b(run_id.encode(), digest_size=8).digest(), "big", signed=True)


def utc(ts: float | None) -> dt.datetime | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.timezone.utc)


class TraceStore:
    """The dialect-neutral steps; subclasses supply the connection and the SQL."""
    _conn: Any = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def write(self, events: Sequence[TraceEvent]) -> int:
        """Store a batch; returns how many events were new."""
        if not events:
            return 0
        run_ids = sorted({e.run_id for e in events})
        with self._transaction() as cur:
            self._lock_runs(cur, run_ids)
            inserted = self._insert_events(cur, events)
            stored = self._load_events(cur, run_ids)
            self._upsert_runs(cur, summaries_for(stored))
        return inserted

    def purge_before(self, cutoff: float) -> int:
        """Drop raw events older than `cutoff` (epoch seconds); summaries stay."""
        with self._transaction() as cur:
            return self._delete_events_before(cur, cutoff)

    @staticmethod
    def _summary_row(summary: RunSummary) -> tuple[Any, ...]:
        return tuple(utc(getattr(summary, name)) if name in TIME_FIELDS else getattr(summary, name)
                     for name in SUMMARY_FIELDS)

    @staticmethod
    def _event(row: Sequence[Any]) -> TraceEvent:
        event_id, run_id, seq, ts, kind, data = row
        if isinstance(data, str):
            data = json.loads(data)
        if isinstance(ts, str):
            ts = dt.datetime.fromisoformat(ts)
        if isinstance(ts, dt.datetime):
            ts = (ts if ts.tzinfo else ts.replace(tzinfo=dt.timezone.utc)).timestamp()
        return TraceEvent(id=event_id, run_id=run_id, seq=seq, ts=float(ts), kind=EventKind(kind),
                          data=data)

    # --- supplied by each dialect ---
    def _transaction(self): raise NotImplementedError
    def _lock_runs(self, cur, run_ids: list[str]) -> None: raise NotImplementedError
    def _insert_events(self, cur, events: Sequence[TraceEvent]) -> int: raise NotImplementedError
    def _load_events(self, cur, run_ids: list[str]) -> list[TraceEvent]: raise NotImplementedError
    def _upsert_runs(self, cur, summaries: list[RunSummary]) -> None: raise NotImplementedError
    def _delete_events_before(self, cur, cutoff: float) -> int: raise NotImplementedError


def _upsert_sql(placeholders: str) -> str:
    updates = ", ".join(f"{c} = excluded.{c}" for c in RUN_COLUMNS if c != "id")
    return (f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES {placeholders} "
            f"ON CONFLICT (id) DO UPDATE SET {updates} "
            f"WHERE runs.event_count <= excluded.event_count")


class PostgresTraceStore(TraceStore):
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn = None

    def _connection(self):
        if self._conn is None or self._conn.closed:
            self._conn = psycopg2.connect(self.dsn, connect_timeout=10,
                                          application_name="lessonserver-traces")
        return self._conn

    def _transaction(self):
        return _PgTransaction(self)

    def _lock_runs(self, cur, run_ids):
        # In a fixed order, so two batches sharing runs cannot deadlock.
        cur.execute("SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) WITH ORDINALITY "
                    "AS u(k, n) ORDER BY n", (sorted(lock_key(r) for r in run_ids),))

    def _insert_events(self, cur, events):
        rows = [(e.id, e.run_id, e.seq, utc(e.ts), e.kind.value, Json(dict(e.data))) for e in events]
        returned = execute_values(
            cur, f"INSERT INTO trace_events ({', '.join(EVENT_COLUMNS)}) VALUES %s "
                 "ON CONFLICT (id) DO NOTHING RETURNING 1", rows, page_size=len(rows), fetch=True)
        return len(returned)

    def _load_events(self, cur, run_ids):
        cur.execute(f"SELECT {', '.join(EVENT_COLUMNS)} FROM trace_events WHERE run_id = ANY(%s)",
                    (run_ids,))
        return [self._event(row) for row in cur.fetchall()]

    def _upsert_runs(self, cur, summaries):
        execute_values(cur, _upsert_sql("%s"), [self._summary_row(s) for s in summaries],
                       page_size=max(1, len(summaries)))

    def _delete_events_before(self, cur, cutoff):
        cur.execute("DELETE FROM trace_events WHERE ts < %s", (utc(cutoff),))
        return cur.rowcount


class _PgTransaction:
    """Commit on success; on any error roll back, and drop a connection that broke."""

    def __init__(self, store: PostgresTraceStore) -> None:
        self.store = store

    def __enter__(self):
        self.conn = self.store._connection()
        self.cur = self.conn.cursor()
        return self.cur

    def __exit__(self, exc_type, exc, tb) -> None:
        self.cur.close()
        if exc_type is None:
            self.conn.commit()
            return
        try:
            self.conn.rollback()
        except psycopg2.Error:
            pass
        if isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)) or self.conn.closed:
            self.store.close()


class SqliteTraceStore(TraceStore):
    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            # Autocommit mode: transactions are begun explicitly (BEGIN IMMEDIATE takes the lock).
            self._conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        return self._conn

    def _transaction(self):
        return _SqliteTransaction(self._connection())

    def _lock_runs(self, cur, run_ids):
        pass  # BEGIN IMMEDIATE already holds the database's single write lock

    def _insert_events(self, cur, events):
        before = cur.connection.total_changes
        cur.executemany(
            f"INSERT OR IGNORE INTO trace_events ({', '.join(EVENT_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)",
            [(e.id, e.run_id, e.seq, _sqlite_time(e.ts), e.kind.value, json.dumps(dict(e.data)))
             for e in events])
        return cur.connection.total_changes - before

    def _load_events(self, cur, run_ids):
        marks = ", ".join("?" * len(run_ids))
        cur.execute(f"SELECT {', '.join(EVENT_COLUMNS)} FROM trace_events WHERE run_id IN ({marks})",
                    run_ids)
        return [self._event(row) for row in cur.fetchall()]

    def _upsert_runs(self, cur, summaries):
        marks = "(" + ", ".join("?" * len(RUN_COLUMNS)) + ")"
        cur.executemany(_upsert_sql(marks),
                        [tuple(_sqlite_value(v) for v in self._summary_row(s)) for s in summaries])

    def _delete_events_before(self, cur, cutoff):
        cur.execute("DELETE FROM trace_events WHERE ts < ?", (_sqlite_time(cutoff),))
        return cur.rowcount


def _sqlite_time(ts: float) -> str:
    # SQLAlchemy's DateTime on SQLite: naive UTC text that sorts as it compares.
    return utc(ts).replace(tzinfo=None).isoformat(" ", "microseconds")


def _sqlite_value(value: Any) -> Any:
    return value.replace(tzinfo=None).isoformat(" ", "microseconds") if isinstance(value, dt.datetime) \
        else value


class _SqliteTransaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Cursor:
        self.conn.execute("BEGIN IMMEDIATE")
        self.cur = self.conn.cursor()
        return self.cur

    def __exit__(self, exc_type, exc, tb) -> None:
        self.cur.close()
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
