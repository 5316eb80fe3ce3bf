"""Jobs outside the happy path: embedded mode, retention on the worker's scheduler, the CLI."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import redis
from rq import Queue
from rq.registry import ScheduledJobRegistry

from kernels.result import Output, RunResult, RunStatus
from server.tracing.buffer import TraceBuffer
from server.tracing.events import TraceEvent
from server.tracing.tracer import RunTracer
from tests.test_trace_support import fetch_all, fresh_postgres, migrate
from workers import deps, queue, traces
from workers.queue import open_jobs
from workers.worker import RETENTION_JOB_ID, schedule_retention

DAY = 86400
LESSONSERVER = Path(sys.executable).with_name("lessonserver")


def trace_run(emit, *, clock=time.time) -> str:
    tracer = RunTracer(emit, clock=clock)
    tracer.requested(user_id="u", lesson_slug="l", exercise_id="e", kernel="python", code="1")
    tracer.output(Output("stream", name="stdout", text="1\n"))
    tracer.finished(RunResult(RunStatus.OK, bytes_out=2))
    return tracer.run_id


async def test_embedded_mode_writes_batches_in_process_to_sqlite(make_settings, tmp_path):
    settings = make_settings(LS_TRACE_FLUSH="0.02")
    assert settings.embedded and settings.sqlalchemy_url.startswith("sqlite")
    settings.data_dir.mkdir(parents=True)          # the server makes it at start-up
    migrate(settings.sqlalchemy_url, make_settings)
    jobs = open_jobs(settings)
    assert isinstance(jobs, queue.InlineJobs)
    await jobs.start()
    buffer = TraceBuffer.for_settings(settings, jobs.send_trace_batch)
    await buffer.start()
    run_ids = [trace_run(buffer.emit) for _ in range(30)]
    await buffer.close()
    await jobs.close()
    url = settings.sqlalchemy_url
    assert fetch_all(url, "SELECT count(*) FROM trace_events") == [(90,)]
    assert sorted(fetch_all(url, "SELECT id, status, event_count FROM runs")) == \
        sorted((run_id, "ok", 3) for run_id in run_ids)


def test_retention_job_drops_old_events_with_the_configured_age(make_settings, pg_url):
    with fresh_postgres(pg_url) as url:
        migrate(url, make_settings)
        settings = make_settings(LS_DATABASE_URL=url, LS_TRACE_RETENTION_DAYS="7")
        events: list[TraceEvent] = []
        old = trace_run(events.append, clock=lambda: time.time() - 8 * DAY)
        recent = trace_run(events.append, clock=lambda: time.time() - 6 * DAY)
        job_deps = deps.JobDeps(settings)
        with deps.provided(job_deps):
            assert traces.write_batch([e.to_json() for e in events]) == 6
            assert traces.purge_old_events() == 3
        job_deps.close()
        assert fetch_all(url, "SELECT DISTINCT run_id FROM trace_events") == [(recent,)]
        assert sorted(fetch_all(url, "SELECT id FROM runs")) == sorted([(old,), (recent,)])


def test_one_retention_job_is_scheduled_however_many_workers_ask(redis_server):
    if redis_server.proc is None:
        redis_server.start()
    connection = redis.Redis.from_url(redis_server.url)
    connection.flushdb()
    for _ in range(3):
        schedule_retention(connection)
    scheduled = ScheduledJobRegistry(queue.TRACES, connection=connection)
    assert scheduled.get_job_ids() == [RETENTION_JOB_ID]
    due = scheduled.get_scheduled_time(RETENTION_JOB_ID).timestamp()
    assert abs(due - (time.time() + queue.RETENTION_EVERY)) < 60
    assert Queue(queue.TRACES, connection=connection).count == 0


def test_the_worker_refuses_to_start_without_redis(tmp_path):
    env = {"PATH": os.environ.get("PATH", ""), "LS_DATA_DIR": str(tmp_path)}
    done = subprocess.run([str(LESSONSERVER), "worker", "--burst"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "LS_REDIS_URL" in done.stderr


async def test_a_burst_worker_drains_the_queue_and_exits(make_settings, pg_url, redis_server, tmp_path):
    if redis_server.proc is None:
        redis_server.start()
    redis.Redis.from_url(redis_server.url).flushdb()
    with fresh_postgres(pg_url) as url:
        migrate(url, make_settings)
        events: list[TraceEvent] = []
        trace_run(events.append)
        rq_jobs = queue.RQJobs(redis_server.url)
        await rq_jobs.send_trace_batch([e.to_json() for e in events])
        await rq_jobs.close()
        env = {"PATH": os.environ.get("PATH", ""), "LS_DATA_DIR": str(tmp_path),
               "LS_REDIS_URL": redis_server.url, "LS_DATABASE_URL": url}
        done = subprocess.run([str(LESSONSERVER), "worker", "--burst"], env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert fetch_all(url, "SELECT count(*) FROM trace_events") == [(3,)]
