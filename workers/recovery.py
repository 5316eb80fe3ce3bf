"""What a starting (or maintaining) worker does about what dead workers left in Redis.

RQ finds an abandoned job only once its worker's heartbeat lapsed (the job
timeout plus a minute) and a stuck intermediate entry only on its second
maintenance pass a minute apart. Trace batches are idempotent (event ids are
keys), so here a worker acts at once on anything whose owner is provably gone:
a started job whose worker is on this host with a dead pid, or whose worker
record expired; an intermediate entry that no worker moved on within a moment;
and a failed batch (the database was away too long) goes back to the queue
with fresh retries. A batch refused as bad stays failed, with its reason.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time

import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry

log = logging.getLogger("lessonserver.workers")

BAD_BATCH = "bad_batch"          # job.meta flag set by a job that no retry can write
INTERMEDIATE_SETTLE = 0.5        # seconds a live worker needs to move a dequeued job on


@dataclasses.dataclass(frozen=True)
class Holder:
    """What Redis says about the worker or scheduler holding something (None fields: no record)."""
    name: str
    hostname: str | None
    pid: int | None


def is_dead(worker: Holder, *, here: str, pid_alive, me: str) -> bool:
    """A worker is dead when its record expired, or it ran on this host under a pid now gone."""
    if worker.name == me:
        return False
    if worker.hostname is None:
        return True
    if worker.hostname == here and worker.pid is not None:
        return not pid_alive(worker.pid)
    return False     # elsewhere and still heartbeating: RQ's own timeout decides


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder(connection: redis.Redis, key: str, name: str) -> Holder:
    """The hostname and pid RQ keeps in a worker's (rq:worker:NAME) or scheduler's hash."""
    raw = connection.hmget(key, "hostname", "pid")
    hostname = raw[0].decode() if raw[0] else None
    pid = int(raw[1]) if raw[1] else None
    return Holder(name, hostname, pid)


def reclaim_abandoned(connection: redis.Redis, queue: Queue, me: str) -> int:
    """Hand the started jobs of dead workers to RQ's abandoned-job handling now; returns how many."""
    registry = StartedJobRegistry(queue.name, connection=connection)
    here, expired = socket.gethostname(), []
    for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
        job = Job.fetch_many([job_id], connection=connection)[0]
        if job is None or job.get_status(refresh=False) != JobStatus.STARTED:
            continue
        name = job.worker_name or ""
        owner = holder(connection, f"rq:worker:{name}", name)
        if is_dead(owner, here=here, pid_alive=pid_alive, me=me):
            expired.append(f"{job_id}:{execution_id}")
    if not expired:
        return 0
    # Marked as expired, RQ's own clean-up retries them (or fails them when out of retries).
    connection.zadd(registry.key, {entry: 0 for entry in expired}, xx=True)
    registry.cleanup(timestamp=1)
    log.info("batches of a dead worker requeued", extra={"fields": {"jobs": len(expired)}})
    return len(expired)


def rescue_intermediate(connection: redis.Redis, queue: Queue,
                        settle: float = INTERMEDIATE_SETTLE) -> int:
    """Put back jobs a dead worker dequeued but never started; returns how many."""
    key = queue.intermediate_queue_key
    seen = {raw.decode() for raw in connection.lrange(key, 0, -1)}
    if not seen:
        return 0
    time.sleep(settle)
    registry = StartedJobRegistry(queue.name, connection=connection)
    started = set(registry.get_job_ids(cleanup=False))
    stuck = [job_id for job_id in seen
             if job_id not in started and job_id.encode() in connection.lrange(key, 0, -1)]
    for job_id in stuck:
        if connection.lrem(key, 1, job_id):
            queue.push_job_id(job_id)
    if stuck:
        log.info("stuck dequeued batches put back", extra={"fields": {"jobs": len(stuck)}})
    return len(stuck)


def replay_failed(connection: redis.Redis, queue: Queue, retries: int) -> int:
    """Requeue failed batches with `retries` fresh retries, except those refused as bad."""
    registry = FailedJobRegistry(queue.name, connection=connection)
    replayed = 0
    for job in Job.fetch_many(registry.get_job_ids(cleanup=False), connection=connection):
        if job is None or job.meta.get(BAD_BATCH):
            continue
        job.retries_left = retries
        job.save()
        registry.requeue(job)
        replayed += 1
    if replayed:
        log.info("failed batches replayed", extra={"fields": {"jobs": replayed}})
    return replayed


def recover(connection: redis.Redis, queue: Queue, me: str, retries: int) -> None:
    """All of the above, in the order a dead worker's leftovers are best found."""
    rescue_intermediate(connection, queue)
    reclaim_abandoned(connection, queue, me)
    replay_failed(connection, queue, retries)
