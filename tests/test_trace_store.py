"""The write side on real databases: idempotent batches, summaries, retention, concurrency."""
from __future__ import annotations

import threading
import time

import psycopg2
import pytest

from kernels.result import LimitHit, Output, RunResult, RunStatus
from server.tracing.events import TraceEvent
from server.tracing.tracer import RunTracer
from tests.test_trace_support import fetch_all, schema_url
from workers.trace_store import open_store

DAY = 86400


def run_events(outputs: int = 3, *, clock=time.time, result: RunResult | None = None
               ) -> tuple[str, list[TraceEvent]]:
    emitted: list[TraceEvent] = []
    tracer = RunTracer(emitted.append, clock=clock)
    tracer.requested(user_id="u1", lesson_slug="intro", exercise_id="ex1", kernel="python",
                     code="print('hi')")
    tracer.kernel_assigned(pool_hit=True, container_id="c1")
    for _ in range(outputs):
        tracer.output(Output("stream", name="stdout", text="hi\n"))
    tracer.verdict(True)
    tracer.finished(result or RunResult(RunStatus.OK, bytes_out=3 * outputs))
    return tracer.run_id, emitted


@pytest.fixture(params=["postgres", "sqlite"])
def db_url(request, tmp_path):
    """A migrated, empty database of each kind the store writes to."""
    with schema_url(request.param, request, tmp_path) as url:
        yield url


def test_a_batch_lands_with_its_summary_and_a_retry_duplicates_nothing(db_url):
    store = open_store(db_url)
    run_id, events = run_events(3)
    assert store.write(events) == 7
    assert store.write(events) == 0                       # RQ retried the same job
    assert store.write(events[2:5]) == 0
    rows = fetch_all(db_url, "SELECT run_id, seq, kind FROM trace_events ORDER BY seq")
    assert rows == [(run_id, e.seq, e.kind.value) for e in events]
    run = fetch_all(db_url, "SELECT status, verdict, limit_hit, pool_hit, bytes_out, event_count, "
                            "user_id, exercise_id, code FROM runs")
    assert run == [("ok", "passed", None, True, 9, 7, "u1", "ex1", "print('hi')")]
    store.close()


def test_a_run_split_over_batches_in_any_order_gets_the_full_summary(db_url):
    store = open_store(db_url)
    run_id, events = run_events(4, result=RunResult(RunStatus.LIMIT, limit=LimitHit.OUTPUT,
                                                    bytes_out=99))
    store.write(events[5:])                               # the end arrives first (a replay)
    assert fetch_all(db_url, "SELECT status, user_id FROM runs") == [("limit", None)]
    store.write(events[:5])
    assert fetch_all(db_url, "SELECT status, limit_hit, user_id, bytes_out, event_count FROM runs") \
        == [("limit", "output", "u1", 99, len(events))]
    store.close()


def test_retention_drops_old_events_and_keeps_summaries(db_url):
    store = open_store(db_url)
    old_id, old = run_events(2, clock=lambda: time.time() - 40 * DAY)
    new_id, new = run_events(2)
    store.write(old + new)
    assert store.purge_before(time.time() - 30 * DAY) == len(old)
    assert fetch_all(db_url, "SELECT DISTINCT run_id FROM trace_events") == [(new_id,)]
    runs = dict(fetch_all(db_url, "SELECT id, event_count FROM runs"))
    assert runs == {old_id: len(old), new_id: len(new)}
    # A late straggler of the purged run must not shrink its summary to one event.
    straggler = TraceEvent(id="e" * 32, run_id=old_id, seq=99, ts=time.time(), kind=old[-1].kind,
                           data={"status": "error", "elapsed_ms": 1.0})
    store.write([straggler])
    assert fetch_all(db_url, "SELECT status, event_count FROM runs WHERE id = %s" % f"'{old_id}'") \
        == [("ok", len(old))]
    store.close()


def test_two_writers_on_the_same_runs_lose_no_event_in_the_summaries(request, tmp_path):
    with schema_url("postgres", request, tmp_path) as url:
        runs = [run_events(20) for _ in range(10)]
        halves = ([e for _, evs in runs for e in evs[::2]], [e for _, evs in runs for e in evs[1::2]])
        stores = [open_store(url), open_store(url)]
        barrier = threading.Barrier(2)

        def write(store, events):
            barrier.wait()
            for i in range(0, len(events), 25):
                store.write(events[i:i + 25])

        threads = [threading.Thread(target=write, args=pair) for pair in zip(stores, halves)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        counts = dict(fetch_all(url, "SELECT id, event_count FROM runs"))
        assert counts == {run_id: len(evs) for run_id, evs in runs}
        for store in stores:
            store.close()


def test_a_broken_connection_is_dropped_and_the_next_batch_reconnects(request, tmp_path):
    with schema_url("postgres", request, tmp_path) as url:
        store = open_store(url)
        _, first = run_events(1)
        store.write(first)
        with psycopg2.connect(url) as admin, admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = 'lessonserver-traces'")
        admin.close()
        _, second = run_events(1)
        with pytest.raises(psycopg2.Error):
            store.write(second)                           # the job fails; RQ will retry it
        assert store.write(second) == len(second)         # ... and the retry works
        store.close()
