"""The one module the server calls to hand work to the workers.

Nothing outside `workers/` imports rq. `open_jobs(settings)` gives the server
an object with async methods: with Redis, jobs go to RQ queues for
`lessonserver worker`; in embedded mode (no Redis) the same job functions run
in this process, one at a time, on a thread of their own.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from server.config import Settings
from workers import deps, traces

log = logging.getLogger("lessonserver.workers")

TRACES = "traces"
QUEUES = (TRACES,)             # what `lessonserver worker` listens on, in priority order
JOB_TIMEOUT = 60               # seconds; a batch takes milliseconds unless the database stalls
# Immediately once (a worker died under it), then backing off while the database is away,
# about ten minutes in all; then the batch waits in the failed registry for the next
# maintenance pass, which replays it (workers/recovery.py): a batch is never given up.
RETRY_INTERVALS = (0, 1, 2, 4, 8, 15, 30, 60, 120, 300)
FAILURE_TTL = 30 * 86400       # batches that exhausted their retries stay this long for a person
RETENTION_EVERY = 3600         # seconds between retention passes
REDIS_TIMEOUT = 2.0            # fail fast when Redis is away: the buffer spools instead


@dataclasses.dataclass(frozen=True)
class FailedBatch:
    job_id: str
    events: int
    reason: str                # the last lines of the job's traceback


class RQJobs:
    def __init__(self, redis_url: str) -> None:
        import redis
        from rq import Queue
        self._redis = redis.Redis.from_url(redis_url, socket_connect_timeout=REDIS_TIMEOUT,
                                           socket_timeout=REDIS_TIMEOUT)
        self._traces = Queue(TRACES, connection=self._redis)

    async def start(self) -> None:
        """Nothing to start: the workers run retention on their scheduler."""

    async def send_trace_batch(self, events: list[dict[str, Any]]) -> None:
        """Enqueue one batch; raises (redis.ConnectionError, ...) when Redis cannot take it."""
        await asyncio.to_thread(self._enqueue_trace_batch, events)

    def _enqueue_trace_batch(self, events: list[dict[str, Any]]) -> None:
        from rq import Retry
        self._traces.enqueue(
            traces.write_batch, events, job_timeout=JOB_TIMEOUT, result_ttl=0,
            failure_ttl=FAILURE_TTL, retry=Retry(max=len(RETRY_INTERVALS), interval=list(RETRY_INTERVALS)),
            description=f"trace batch of {len(events)} events")

    async def failed_trace_batches(self, limit: int = 100) -> list[FailedBatch]:
        """Batches that could not be written after every retry, newest last, with the reason."""
        return await asyncio.to_thread(self._failed_trace_batches, limit)

    def _failed_trace_batches(self, limit: int) -> list[FailedBatch]:
        from rq.job import Job
        ids = self._traces.failed_job_registry.get_job_ids(0, limit - 1)
        failed = []
        for job in Job.fetch_many(ids, connection=self._redis):
            if job is None:
                continue
            result = job.latest_result()
            reason = (result.exc_string if result and result.exc_string else "")
            failed.append(FailedBatch(job.id, len(job.args[0]) if job.args else 0,
                                      "\n".join(reason.strip().splitlines()[-3:])))
        return failed

    async def close(self) -> None:
        await asyncio.to_thread(self._redis.close)


class InlineJobs:
    """Embedded mode: the job functions run here, serially, against the configured database."""

    def __init__(self, settings: Settings) -> None:
        self._deps = deps.JobDeps(settings)
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="jobs")
        self._retention: asyncio.Task | None = None

    async def start(self) -> None:
        self._retention = asyncio.create_task(self._retention_forever(), name="trace-retention")

    async def send_trace_batch(self, events: list[dict[str, Any]]) -> None:
        await self._run(traces.write_batch, events)

    async def _retention_forever(self) -> None:
        while True:
            try:
                await self._run(traces.purge_old_events)
            except Exception:  # try again next time; the events only get older
                log.exception("trace retention failed")
            await asyncio.sleep(RETENTION_EVERY)

    async def _run(self, func: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._call, func, args)

    def _call(self, func: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        with deps.provided(self._deps):
            return func(*args)

    async def close(self) -> None:
        if self._retention is not None:
            self._retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention
        # The connection belongs to the job thread (SQLite insists): close it there.
        await asyncio.get_running_loop().run_in_executor(self._thread, self._deps.close)
        self._thread.shutdown(wait=True)


Jobs = RQJobs | InlineJobs


def open_jobs(settings: Settings) -> Jobs:
    return InlineJobs(settings) if settings.embedded else RQJobs(settings.redis_url)
