"""`lessonserver worker`: an RQ worker with its scheduler, and the retention schedule.

A SimpleWorker (no fork per job) so one database connection serves every
batch; trace jobs are short database writes, so a crash in one is not a
reason to isolate it. The scheduler runs on a thread of this process
(workers/scheduler.py), so nothing outlives a SIGKILL. At start and at every
maintenance pass (a minute; an idle worker wakes every WORKER_TTL - 15 s) the
worker takes back what dead workers left (workers/recovery.py): their started
and dequeued batches at once, and failed batches with fresh retries. The loop
survives Redis going away: RQ retries its connection, and if the worker loop
itself gives up it is started again.
"""
from __future__ import annotations

import datetime as dt
import logging
import signal
import time
from collections.abc import Callable

import redis
from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus

from server import logs
from server.config import Settings
from workers import billing, deps, queue, recovery, reminders, traces
from workers.scheduler import SchedulerThread

log = logging.getLogger("lessonserver.workers")

MAINTENANCE_INTERVAL = 60        # seconds between registry clean-ups (abandoned jobs, retries)
WORKER_TTL = 30                  # seconds a silent worker's record lives; an idle one wakes every 15
RESTART_PAUSE = 2.0              # seconds before the worker loop is started again after a failure
RETENTION_JOB_ID = "lessonserver-trace-retention"
RECONCILE_JOB_ID = "lessonserver-billing-reconcile"
REMINDERS_JOB_ID = "lessonserver-reminders"


class LessonWorker(SimpleWorker):
    """Runs each job with the process's JobDeps and keeps the retention job scheduled."""
    max_connection_wait_time = 5.0   # back within seconds of Redis returning (RQ waits up to 60)

    def __init__(self, *args, job_deps: deps.JobDeps, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.job_deps = job_deps
        self.stop_requested = False
        self.lost_redis = False          # since the last maintenance pass
        self.queue_class = _noting_lost_redis(self.queue_class, self._note_lost_redis)

    def _note_lost_redis(self) -> None:
        self.lost_redis = True

    @property
    def should_run_maintenance_tasks(self) -> bool:
        """Also at once when Redis is back after the dequeue lost it: a job popped as Redis
        went away is queued yet in no list, and would wait a whole interval for the pass that
        puts it back (a 6-s Redis outage left three runs' ends there for a minute)."""
        return self.lost_redis or super().should_run_maintenance_tasks

    def perform_job(self, job, queue_, execution) -> bool:
        with deps.provided(self.job_deps):
            return super().perform_job(job, queue_, execution)

    def request_stop(self, signum, frame) -> None:
        self.stop_requested = True
        super().request_stop(signum, frame)

    def run_maintenance_tasks(self) -> None:
        self.lost_redis = False
        super().run_maintenance_tasks()
        for queue_ in self.queues:
            recovery.recover(self.connection, queue_, self.name, len(queue.RETRY_INTERVALS))
        schedule_retention(self.connection)
        schedule_reconciliation(self.connection, self.job_deps.settings)
        schedule_reminders(self.connection)


def _noting_lost_redis(base: type[Queue], note: Callable[[], None]) -> type[Queue]:
    """`base` whose dequeue tells `note` when Redis went away under it (RQ retries quietly)."""
    class NotingQueue(base):
        @classmethod
        def dequeue_any(cls, *args, **kwargs):
            try:
                return super().dequeue_any(*args, **kwargs)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                note()
                raise
    return NotingQueue


def schedule_retention(connection: redis.Redis) -> None:
    schedule_periodic(connection, RETENTION_JOB_ID, queue.TRACES, traces.purge_old_events,
                      queue.RETENTION_EVERY, 600, "drop trace events past retention")


def schedule_reminders(connection: redis.Redis) -> None:
    schedule_periodic(connection, REMINDERS_JOB_ID, queue.EMAILS, reminders.send_reminders,
                      queue.REMINDERS_EVERY, 300, "email reminders to idle learners")


def schedule_periodic(connection: redis.Redis, job_id: str, queue_name: str, func, every: float,
                      timeout: int, description: str) -> None:
    """One job of `job_id` scheduled or queued at a time, whatever the number of workers."""
    with connection.lock(f"{job_id}:lock", timeout=10, blocking_timeout=0) as held:
        if not held:
            return
        job = Job.fetch_many([job_id], connection=connection)[0]
        if job is not None and job.get_status() in (JobStatus.SCHEDULED, JobStatus.QUEUED,
                                                    JobStatus.STARTED):
            return
        Queue(queue_name, connection=connection).enqueue_in(
            dt.timedelta(seconds=every), func, job_id=job_id, job_timeout=timeout, result_ttl=0,
            failure_ttl=queue.FAILURE_TTL, description=description)


def schedule_reconciliation(connection: redis.Redis, settings: Settings) -> None:
    """Once a day, when billing is configured: repair what Stripe's webhooks missed."""
    if settings.billing_configured:
        schedule_periodic(connection, RECONCILE_JOB_ID, queue.BILLING, billing.reconcile,
                          billing.DAY, 1800, "reconcile subscriptions with Stripe")


def _stopped_during_pause(seconds: float) -> bool:
    """Wait before starting the worker loop again; True if SIGTERM or SIGINT came meanwhile."""
    signals: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda received, _frame: signals.append(received))
    deadline = time.monotonic() + seconds
    while not signals and time.monotonic() < deadline:
        time.sleep(0.05)
    return bool(signals)


def run_worker(settings: Settings, burst: bool = False) -> int:
    """Work the queues until SIGTERM/SIGINT (or, with burst, until they are empty)."""
    logs.setup(settings.log_level)
    if settings.redis_url is None:
        log.error("the worker needs LS_REDIS_URL (embedded mode runs jobs in the server)")
        return 2
    job_deps = deps.JobDeps(settings)
    connection = redis.Redis.from_url(settings.redis_url)
    scheduler = SchedulerThread(settings.redis_url, queue.QUEUES)
    scheduler.start()
    try:
        while True:
            worker = None
            try:   # building the worker talks to Redis too: it may be away still
                worker = LessonWorker(list(queue.QUEUES), connection=connection, job_deps=job_deps,
                                      maintenance_interval=MAINTENANCE_INTERVAL,
                                      worker_ttl=WORKER_TTL)
                worker.work(burst=burst, with_scheduler=False, logging_level=settings.log_level)
            except redis.RedisError as exc:   # e.g. Redis away while the worker registers
                log.warning("worker lost Redis", extra={"fields": {"error": str(exc)[:200]}})
            stopped = worker is not None and worker.stop_requested
            if burst or stopped or _stopped_during_pause(RESTART_PAUSE):
                return 0
    finally:
        scheduler.stop()
        job_deps.close()
        connection.close()
        log.info("worker stopped")
