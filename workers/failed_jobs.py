"""Failed RQ jobs for the operations page: list them per queue, retry one, discard one.

The server calls this module (nothing outside `workers/` imports rq). Retrying puts the job
back on its queue as RQ's FailedJobRegistry.requeue does (retries count afresh); discarding
deletes the job and its data. Trace batches and emails are idempotent, so a retry of one that
meanwhile went through does no harm.
"""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

REDIS_TIMEOUT = 2.0


class NoSuchJob(LookupError):
    """The job is not (or no longer) in the queue's failed registry."""


@dataclasses.dataclass(frozen=True)
class FailedJob:
    id: str
    queue: str
    description: str
    failed_at: dt.datetime | None
    reason: str               # the last lines of the traceback


def last_lines(traceback: str | None, lines: int = 3) -> str:
    return "\n".join((traceback or "").strip().splitlines()[-lines:])


class FailedJobs:
    def __init__(self, redis_url: str, queues: tuple[str, ...]) -> None:
        import redis
        self.queues = queues
        self._redis = redis.Redis.from_url(redis_url, socket_connect_timeout=REDIS_TIMEOUT,
                                           socket_timeout=REDIS_TIMEOUT)

    async def listing(self, limit: int = 50) -> dict[str, list[FailedJob]]:
        """Up to `limit` failed jobs per queue, newest first."""
        return await asyncio.to_thread(self._listing, limit)

    def _listing(self, limit: int) -> dict[str, list[FailedJob]]:
        from rq.job import Job
        found = {}
        for name in self.queues:
            ids = self._registry(name).get_job_ids(0, limit - 1, desc=True)
            found[name] = [self._value(name, job) for job in Job.fetch_many(ids, connection=self._redis)
                           if job is not None]
        return found

    @staticmethod
    def _value(queue: str, job) -> FailedJob:
        result = job.latest_result()
        return FailedJob(job.id, queue, job.description or job.func_name, job.ended_at,
                         last_lines(result.exc_string if result else job.exc_info))

    async def retry(self, queue: str, job_id: str) -> None:
        await asyncio.to_thread(self._retry, queue, job_id)

    def _retry(self, queue: str, job_id: str) -> None:
        from rq.exceptions import InvalidJobOperation, NoSuchJobError
        try:
            self._registry(queue).requeue(job_id)
        except (InvalidJobOperation, NoSuchJobError):
            raise NoSuchJob(f"queue {queue!r} has no failed job {job_id!r}") from None

    async def discard(self, queue: str, job_id: str) -> None:
        await asyncio.to_thread(self._discard, queue, job_id)

    def _discard(self, queue: str, job_id: str) -> None:
        from rq.job import Job
        registry = self._registry(queue)
        if job_id not in registry:
            raise NoSuchJob(f"queue {queue!r} has no failed job {job_id!r}")
        job = Job.fetch_many([job_id], connection=self._redis)[0]
        registry.remove(job if job is not None else job_id, delete_job=job is not None)

    def _registry(self, queue: str):
        from rq.registry import FailedJobRegistry
        if queue not in self.queues:
            raise NoSuchJob(f"there is no job queue called {queue!r}")
        return FailedJobRegistry(queue, connection=self._redis)

    async def close(self) -> None:
        await asyncio.to_thread(self._redis.close)
