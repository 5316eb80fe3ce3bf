"""Workers recover on their own: SIGKILL, failed batches and Redis blips, against real services."""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import time

import psycopg2
import pytest
import redis
from rq import Queue, Retry
from rq.executions import Execution
from rq.job import Job
from rq.registry import FailedJobRegistry, StartedJobRegistry

from server.tracing.tracer import RunTracer
from tests.test_trace_pipeline import (expected_rows, open_buffer, pipeline, recorder,  # noqa: F401
                                       stored, traced_run, wait_until)
from tests.services import free_port
from tests.test_trace_support import fetch_all
from workers import deps, recovery, traces
from workers import queue as jobs_queue
from workers.worker import LessonWorker

SCHEDULER_LOCK = f"rq:scheduler-lock:{jobs_queue.TRACES}"


def scheduler_pid(connection: redis.Redis) -> int | None:
    try:
        owner = connection.get(SCHEDULER_LOCK)
    except redis.exceptions.BusyLoadingError:     # a restarted Redis still reading its AOF
        return None
    if owner is None:
        return None
    pid = connection.hget(f"rq:scheduler:{owner.decode()}", "pid")
    return int(pid) if pid else None


def catch_up(new_worker, url: str, emitted: list, what: str, within: float) -> None:
    """Start a worker; every emitted event, once, in Postgres within `within` seconds."""
    started = time.monotonic()
    new_worker()
    wait_until(lambda: len(stored(url)) == len(emitted), within, what)
    print(f"\n{what}: {len(emitted)} events in {time.monotonic() - started:.2f} s")
    assert sorted(stored(url)) == expected_rows(emitted)


async def steady_load(emit, stop: asyncio.Event, every: float = 0.05) -> None:
    while not stop.is_set():
        await traced_run(RunTracer(emit), 3)
        await asyncio.sleep(every)


async def test_a_sigkilled_worker_leaves_nothing_behind_and_its_successor_catches_up_in_seconds(pipeline):
    settings, new_worker = pipeline
    url = settings.database_url
    connection = redis.Redis.from_url(settings.redis_url)
    first = new_worker()
    wait_until(lambda: scheduler_pid(connection) == first.proc.pid, 15, "the worker's scheduler")
    buffer, jobs = await open_buffer(settings)
    emitted, emit = recorder(buffer)
    stop = asyncio.Event()
    load = asyncio.create_task(steady_load(emit, stop))

    await asyncio.sleep(2)
    first.kill()                                     # the whole process group: nothing survives
    killed_at = time.monotonic()
    await asyncio.sleep(2)                           # batches pile up meanwhile
    second = new_worker()
    await asyncio.sleep(2)
    stop.set()
    await load
    await buffer.flush()
    while len(stored(url)) < len(emitted) and time.monotonic() - killed_at < 30:
        await asyncio.sleep(0.05)
    caught_up = time.monotonic() - killed_at - 2     # from the restart
    print(f"\nrecovered {len(emitted)} events {caught_up:.2f} s after the restart")
    assert sorted(stored(url)) == expected_rows(emitted)          # all, none twice
    assert caught_up < 15          # the backlog's drain time on a loaded CI box (70-159 s before)
    assert connection.llen(f"rq:queue:{jobs_queue.TRACES}:intermediate") == 0
    assert StartedJobRegistry(jobs_queue.TRACES, connection=connection).get_job_ids(cleanup=False) == []
    wait_until(lambda: scheduler_pid(connection) == second.proc.pid, 10, "the scheduler taken over")
    blocked = [c for c in connection.client_list() if c.get("cmd") in ("blpop", "blmove")]
    assert len(blocked) <= 1                         # the new worker's own wait, no orphan's
    await buffer.close()
    await jobs.close()


async def test_a_batch_popped_by_a_worker_killed_before_it_started_is_put_back_by_its_successor(pipeline):
    # A worker on several queues takes a job with BLPOP: killed between the pop and the start,
    # it leaves a job that is queued and in no list (a CI run lost 7 events this way).
    settings, new_worker = pipeline
    url = settings.database_url
    connection = redis.Redis.from_url(settings.redis_url)
    tracer_events: list = []
    await traced_run(RunTracer(tracer_events.append), 2)
    batch = [e.to_json() for e in tracer_events]
    q = Queue(jobs_queue.TRACES, connection=connection)
    job = q.enqueue(traces.write_batch, batch, result_ttl=0)
    assert connection.lpop(q.key).decode() == job.id          # what the dead worker's BLPOP did
    assert Job.fetch(job.id, connection=connection).get_status() == "queued"
    new_worker()
    wait_until(lambda: len(stored(url)) == len(batch), 15, "the popped batch written")
    assert sorted(stored(url)) == expected_rows(tracer_events)


def test_a_job_registered_by_a_worker_killed_before_it_marked_it_started_is_put_back(pipeline):
    # RQ's worker registers a job's execution (StartedJobRegistry), then marks the job
    # started, in two writes. Killed between them, it leaves a job that is queued, in no
    # queue, and in the registry: RQ's clean-up only drops the entry (a billing test lost its
    # Stripe event this way). A live worker in that same moment keeps its job.
    settings, _ = pipeline
    connection = redis.Redis.from_url(settings.redis_url)
    q = Queue(jobs_queue.TRACES, connection=connection)
    registry = StartedJobRegistry(jobs_queue.TRACES, connection=connection)
    alive = "alive-worker"
    connection.hset(f"rq:worker:{alive}", mapping={"hostname": socket.gethostname(),
                                                   "pid": os.getpid()})
    taken = {}
    for worker_name in ("killed-worker", alive):
        job = q.enqueue(traces.write_batch, [], result_ttl=0)
        assert connection.lpop(q.key).decode() == job.id          # the worker's BLPOP
        with connection.pipeline() as pipe:                        # its first write, as RQ does it
            Execution.create(job, 60, pipeline=pipe, worker_name=worker_name)
            pipe.execute()
        taken[worker_name] = job.id
    try:
        assert sorted(registry.get_job_ids(cleanup=False)) == sorted(taken.values())
        assert Job.fetch(taken["killed-worker"], connection=connection).get_status() == "queued"

        assert recovery.reclaim_abandoned(connection, q, me="successor") == 1
        assert q.job_ids == [taken["killed-worker"]]
        assert registry.get_job_ids(cleanup=False) == [taken[alive]]
        assert recovery.reclaim_abandoned(connection, q, me="successor") == 0   # once
        assert q.job_ids == [taken["killed-worker"]]
    finally:
        connection.close()


def test_the_job_a_worker_held_when_redis_went_away_is_retried_by_its_own_next_pass(pipeline):
    # Redis stopped mid-job: RQ's worker gives the job up and carries on once Redis is back,
    # but the job stays registered as started under that live worker's name until its
    # heartbeat lapses (the job timeout and a minute: the fault table lost a batch that long).
    settings, _ = pipeline
    connection = redis.Redis.from_url(settings.redis_url)
    q = Queue(jobs_queue.TRACES, connection=connection)
    me = "this-worker"
    connection.hset(f"rq:worker:{me}", mapping={"hostname": socket.gethostname(),
                                                "pid": os.getpid()})
    job = q.enqueue(traces.write_batch, [], result_ttl=0, retry=Retry(max=3))
    assert connection.lpop(q.key).decode() == job.id
    with connection.pipeline() as pipe:
        Execution.create(job, 600, pipeline=pipe, worker_name=me)
        job.prepare_for_execution(me, pipeline=pipe)             # marked started
        pipe.execute()
    try:
        assert Job.fetch(job.id, connection=connection).get_status() == "started"
        assert recovery.reclaim_abandoned(connection, q, me="another-worker") == 0   # alive
        assert recovery.reclaim_abandoned(connection, q, me=me) == 1    # between its jobs
        assert q.job_ids == [job.id]
        assert StartedJobRegistry(jobs_queue.TRACES, connection=connection).get_job_ids(
            cleanup=False) == []
    finally:
        connection.close()


def test_a_job_popped_as_redis_went_away_is_put_back_once_redis_is_back_not_a_pass_later(pipeline):
    # Redis stopped between a BLPOP and the fetch of its job: RQ retries the connection and
    # goes on, and the job, queued yet in no list, waited for the next maintenance pass (a
    # minute; the fault table's Redis outage lost three runs' ends for that long).
    settings, _ = pipeline
    connection = redis.Redis.from_url(settings.redis_url)
    job_deps = deps.JobDeps(settings)
    q = Queue(jobs_queue.TRACES, connection=connection)
    worker = LessonWorker([q], connection=connection, job_deps=job_deps, maintenance_interval=600)
    try:
        worker.run_maintenance_tasks()                       # a pass just ran: the next in 10 min
        assert not worker.should_run_maintenance_tasks
        job = q.enqueue(traces.write_batch, [], result_ttl=0)
        assert connection.lpop(q.key).decode() == job.id     # popped, and then Redis was away:
        away = redis.Redis(port=free_port(), socket_connect_timeout=1)
        with pytest.raises(redis.exceptions.ConnectionError):
            worker.queue_class.dequeue_any([Queue(jobs_queue.TRACES, connection=away)], 1,
                                           connection=away)
        assert worker.should_run_maintenance_tasks           # the next loop runs a pass at once
        worker.run_maintenance_tasks()
        assert q.job_ids == [job.id]
        assert not worker.should_run_maintenance_tasks
    finally:
        job_deps.close()
        connection.close()


async def test_a_worker_killed_inside_a_batch_is_replaced_at_once_not_after_its_heartbeat(pipeline):
    settings, new_worker = pipeline
    url = settings.database_url
    first = new_worker()
    buffer, jobs = await open_buffer(settings)
    emitted, emit = recorder(buffer)
    blocker = psycopg2.connect(url)                  # hold the batch inside its transaction
    blocker.cursor().execute("LOCK TABLE trace_events IN SHARE MODE")
    await traced_run(RunTracer(emit), 40)
    await buffer.flush()
    wait_until(lambda: fetch_all(url, "SELECT count(*) FROM pg_stat_activity WHERE "
                                      "application_name = 'lessonserver-traces' AND "
                                      "wait_event_type = 'Lock'") == [(1,)], 30, "worker in the batch")
    first.kill()
    blocker.rollback()
    blocker.close()
    catch_up(new_worker, url, emitted, "the abandoned batch, retried", 10)
    assert fetch_all(url, "SELECT status, event_count FROM runs") == [("ok", len(emitted))]
    await buffer.close()
    await jobs.close()


async def test_failed_batches_are_replayed_and_bad_ones_kept_with_their_reason(pipeline):
    settings, new_worker = pipeline
    url = settings.database_url
    connection = redis.Redis.from_url(settings.redis_url)
    tracer_events: list = []
    tracer = RunTracer(tracer_events.append)
    await traced_run(tracer, 2)
    good = [e.to_json() for e in tracer_events]
    # As a batch that exhausted its retries while the database was away leaves it:
    q = Queue(jobs_queue.TRACES, connection=connection)
    job = q.enqueue(traces.write_batch, good, result_ttl=0)
    q.remove(job)
    FailedJobRegistry(jobs_queue.TRACES, connection=connection).add(
        job, exc_string="psycopg2.OperationalError: connection refused")
    bad = q.enqueue(traces.write_batch, [{"id": "b" * 32, "run_id": "r", "seq": 0, "ts": 0.0,
                                          "kind": "no-such-kind", "data": {}}], result_ttl=0)
    new_worker()
    wait_until(lambda: len(stored(url)) == len(good), 15, "the failed batch replayed")
    failed = FailedJobRegistry(jobs_queue.TRACES, connection=connection)
    wait_until(lambda: failed.get_job_ids(cleanup=False) == [bad.id], 15, "only the bad batch failed")
    time.sleep(1.5)                                  # and it stays there
    assert failed.get_job_ids(cleanup=False) == [bad.id]
    assert "no-such-kind" in Job.fetch(bad.id, connection=connection).latest_result().exc_string


async def test_the_scheduler_survives_a_redis_restart(pipeline, redis_server):
    settings, new_worker = pipeline
    url = settings.database_url
    connection = redis.Redis.from_url(settings.redis_url)
    worker = new_worker()
    wait_until(lambda: scheduler_pid(connection) == worker.proc.pid, 15, "the worker's scheduler")
    redis_server.stop()
    time.sleep(3)
    redis_server.start()
    wait_until(lambda: scheduler_pid(connection) == worker.proc.pid, 15, "the scheduler back")
    events: list = []
    await traced_run(RunTracer(events.append), 1)
    Queue(jobs_queue.TRACES, connection=connection).enqueue_in(
        dt.timedelta(seconds=1), traces.write_batch, [e.to_json() for e in events], result_ttl=0)
    wait_until(lambda: len(stored(url)) == len(events), 15, "a job scheduled after the restart")
    assert worker.proc.poll() is None and os.getpgid(worker.proc.pid)


async def test_batches_queued_while_the_worker_is_down_survive_a_redis_restart(pipeline, redis_server):
    settings, new_worker = pipeline
    url = settings.database_url
    worker = new_worker()
    worker.stop()                                    # no worker: batches wait in Redis
    buffer, jobs = await open_buffer(settings)
    emitted, emit = recorder(buffer)
    await asyncio.gather(*(traced_run(RunTracer(emit), 5) for _ in range(20)))
    await buffer.flush()
    assert buffer.stats["sent"] == len(emitted) and stored(url) == []
    redis_server.stop()                              # SIGTERM: Redis writes its AOF out
    redis_server.start()
    catch_up(new_worker, url, emitted, "the batches queued before Redis restarted", 20)
    await buffer.close()
    await jobs.close()


async def test_a_worker_started_while_redis_is_away_waits_for_it(pipeline, redis_server):
    settings, new_worker = pipeline
    connection = redis.Redis.from_url(settings.redis_url)
    redis_server.stop()
    worker = new_worker()
    time.sleep(3)                                    # its first tries meet a closed port
    assert worker.proc.poll() is None, "the worker gave up while Redis was away"
    redis_server.start()
    events: list = []
    await traced_run(RunTracer(events.append), 1)
    wait_until(lambda: _enqueued(connection, events), 15, "Redis back")
    wait_until(lambda: len(stored(settings.database_url)) == len(events), 20,
               "the batch written by the worker that waited")


def _enqueued(connection: redis.Redis, events: list) -> bool:
    try:
        Queue(jobs_queue.TRACES, connection=connection).enqueue(
            traces.write_batch, [e.to_json() for e in events], result_ttl=0)
    except redis.exceptions.ConnectionError:         # still starting (or loading its AOF)
        return False
    return True
