"""What a starting (or maintaining) worker does about what dead workers left in Redis.

RQ finds an abandoned job only once its worker's heartbeat lapsed (the job
timeout plus a minute) and a stuck intermediate entry only on its second
maintenance pass a minute apart. Jobs are idempotent (a trace batch's event ids
are keys; an email's row and a Stripe event's status say whether it was done), so
here a worker acts at once on anything whose owner is provably gone:
a started job whose worker is on this host with a dead pid, or whose worker
record expired; a job such a worker had put in the started registry but died
before marking it started (still queued, yet in no queue); a job taken off its
queue (into the intermediate list, or popped) that no worker started within a
moment;
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
from rq.executions import Execution
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
    """Hand the started jobs of dead workers (and those `me` left when Redis went away under
    them) to RQ's abandoned-job handling now, and put back on the queue those such a worker
    had registered but not yet marked started; returns how many of both. For a worker
    between jobs only: it holds none then."""
    registry = StartedJobRegistry(queue.name, connection=connection)
    here, expired, unstarted = socket.gethostname(), [], []
    for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
        job = Job.fetch_many([job_id], connection=connection)[0]
        status = None if job is None else job.get_status(refresh=False)
        if status not in (JobStatus.STARTED, JobStatus.QUEUED):
            continue
        # The execution names the worker of this attempt; a queued job's own field may still
        # name the worker of an earlier one (a retried job), so only a started job falls back.
        name = execution_worker(connection, job_id, execution_id)
        if name is None and status == JobStatus.QUEUED:
            continue                  # RQ drops the entry in time, and rescue_dequeued the job
        name = name or job.worker_name or ""
        # Our worker runs jobs in its own process and recovers only between them, so a job
        # still registered under its own name was dropped when Redis went away mid-job.
        if name != me and not is_dead(holder(connection, f"rq:worker:{name}", name),
                                      here=here, pid_alive=pid_alive, me=me):
            continue
        if status == JobStatus.STARTED:
            expired.append(f"{job_id}:{execution_id}")
        else:
            unstarted.append((f"{job_id}:{execution_id}", job_id))
    # A worker registers a job's execution, then marks the job started, in two writes. Killed
    # between them it leaves a queued job that RQ's clean-up only drops from the registry.
    for entry, job_id in unstarted:
        if not connection.zrem(registry.key, entry):
            continue                                  # another worker's pass took it first
        # A worker on a single queue took it through the intermediate list: not twice.
        connection.lrem(queue.intermediate_queue_key, 1, job_id)
        if connection.lpos(queue.key, job_id) is None:
            queue.push_job_id(job_id)
    if expired:
        # Marked as expired, RQ's own clean-up retries them (or fails them when out of retries).
        connection.zadd(registry.key, {entry: 0 for entry in expired}, xx=True)
        registry.cleanup(timestamp=1)
    if expired or unstarted:
        log.info("batches of a dead worker requeued", extra={"fields": {
            "jobs": len(expired) + len(unstarted)}})
    return len(expired) + len(unstarted)


def execution_worker(connection: redis.Redis, job_id: str, execution_id: str) -> str | None:
    """The name of the worker that registered this execution of the job, if Redis has it."""
    raw = connection.hget(Execution(execution_id, job_id, connection).key, "worker_name")
    return raw.decode() if raw else None


def rescue_dequeued(connection: redis.Redis, queue: Queue,
                    settle: float = INTERMEDIATE_SETTLE) -> int:
    """Put back jobs a dead worker took off `queue` but never started; returns how many.

    A worker on one queue moves a job into the intermediate list (BLMOVE); ours,
    on several queues, pops it (BLPOP), and a worker killed right then leaves a
    job that is `queued` yet in no list at all. Either kind still there, not
    started, after a moment in which a live worker would have moved it on, is lost.
    """
    seen = _intermediate(connection, queue) | _popped(connection, queue)
    if not seen:
        return 0
    time.sleep(settle)
    started = set(StartedJobRegistry(queue.name, connection=connection).get_job_ids(cleanup=False))
    still = (_intermediate(connection, queue) | _popped(connection, queue)) - started
    stuck = sorted(seen & still)
    for job_id in stuck:
        connection.lrem(queue.intermediate_queue_key, 1, job_id)
        queue.push_job_id(job_id)
    if stuck:
        log.info("dequeued batches of a dead worker put back", extra={"fields": {"jobs": len(stuck)}})
    return len(stuck)


def _intermediate(connection: redis.Redis, queue: Queue) -> set[str]:
    return {raw.decode() for raw in connection.lrange(queue.intermediate_queue_key, 0, -1)}


def _popped(connection: redis.Redis, queue: Queue) -> set[str]:
    """Jobs of `queue` whose hash says queued but that sit in the queue's list no more."""
    prefix = Job.redis_job_namespace_prefix.encode()
    keys = [key for key in connection.scan_iter(match=prefix + b"*", count=1000)
            if b":" not in key[len(prefix):]]          # the jobs' hashes, not rq:job:ID:dependents…
    if not keys:
        return set()
    with connection.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hmget(key, "status", "origin")
        fields = pipe.execute()
    queued = [key[len(prefix):].decode() for key, (status, origin) in zip(keys, fields)
              if status == JobStatus.QUEUED.value.encode() and origin == queue.name.encode()]
    if not queued:
        return set()
    with connection.pipeline(transaction=False) as pipe:
        for job_id in queued:
            pipe.lpos(queue.key, job_id)
        positions = pipe.execute()
    return {job_id for job_id, position in zip(queued, positions) if position is None}


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
    rescue_dequeued(connection, queue)
    reclaim_abandoned(connection, queue, me)
    replay_failed(connection, queue, retries)
