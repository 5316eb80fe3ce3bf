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
from workers import billing, deps, emails, reminders, traces

log = logging.getLogger("lessonserver.workers")

TRACES = "traces"
BILLING = "billing"
EMAILS = "emails"
QUEUES = (EMAILS, BILLING, TRACES)   # what `lessonserver worker` listens on, in priority order
JOB_TIMEOUT = 60               # seconds; a batch takes milliseconds unless the database stalls
# Immediately once (a worker died under it), then backing off while the database is away,
# about ten minutes in all; then the batch waits in the failed registry for the next
# maintenance pass, which replays it (workers/recovery.py): a batch is never given up.
RETRY_INTERVALS = (0, 1, 2, 4, 8, 15, 30, 60, 120, 300)
FAILURE_TTL = 30 * 86400       # batches that exhausted their retries stay this long for a person
RETENTION_EVERY = 3600         # seconds between retention passes
REMINDERS_EVERY = 3600         # seconds between looks for learners to remind
# An email: soon again (a blip), then backing off for a mail server that is away for a while.
EMAIL_RETRY_INTERVALS = (5, 30, 120, 600, 1800)
EMAIL_TIMEOUT = 60             # seconds; SMTP_TIMEOUT bounds each step of a delivery
REDIS_TIMEOUT = 2.0            # fail fast when Redis is away: the buffer spools instead
BILLING_TIMEOUT = 120          # seconds; Stripe calls time out after 10 s and retry twice
# A Stripe event: again soon, then while Stripe or the database is away for up to a day.
BILLING_RETRY_INTERVALS = (0, 10, 60, 300, 1800, 3600, 6 * 3600, 12 * 3600)


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
        self._billing = Queue(BILLING, connection=self._redis)
        self._emails = Queue(EMAILS, connection=self._redis)

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

    async def send_billing_events(self, event_ids: list[str]) -> None:
        """Enqueue the processing of stored Stripe events, in one round trip; raises when Redis
        cannot take them."""
        await asyncio.to_thread(self._enqueue_billing_events, event_ids)

    def _enqueue_billing_events(self, event_ids: list[str]) -> None:
        # One job for the batch the webhook stored together: enqueueing a job per event cost
        # ~0.35 ms of CPU each, under the GIL the answers wait on (~70 ms for 200).
        from rq import Retry
        self._billing.enqueue(
            billing.process_events, list(event_ids), job_timeout=BILLING_TIMEOUT * len(event_ids),
            result_ttl=3600, failure_ttl=FAILURE_TTL,
            retry=Retry(max=len(BILLING_RETRY_INTERVALS), interval=list(BILLING_RETRY_INTERVALS)),
            description=f"stripe events {', '.join(event_ids[:3])}"
                        + (f" and {len(event_ids) - 3} more" if len(event_ids) > 3 else ""))

    async def send_subscription_cancel(self, subscription_id: str) -> None:
        """Queue the cancellation of a deleted account's subscription, retried like an event."""
        await asyncio.to_thread(self._enqueue_subscription_cancel, subscription_id)

    def _enqueue_subscription_cancel(self, subscription_id: str) -> None:
        from rq import Retry
        self._billing.enqueue(
            billing.cancel_subscription, subscription_id, job_id=f"cancel-{subscription_id}",
            job_timeout=BILLING_TIMEOUT, result_ttl=3600, failure_ttl=FAILURE_TTL,
            description=f"cancel subscription {subscription_id}",
            retry=Retry(max=len(BILLING_RETRY_INTERVALS), interval=list(BILLING_RETRY_INTERVALS)))

    async def send_email(self, email_id: str, message: dict[str, str]) -> None:
        """Queue one logged email (server/mail/mailer.py records it first)."""
        await asyncio.to_thread(self._enqueue_email, email_id, message)

    def _enqueue_email(self, email_id: str, message: dict[str, str]) -> None:
        from rq import Retry
        self._emails.enqueue(
            emails.deliver, email_id, message, job_id=f"email-{email_id}", job_timeout=EMAIL_TIMEOUT,
            result_ttl=0, failure_ttl=FAILURE_TTL, description=f"{message['kind']} email",
            retry=Retry(max=len(EMAIL_RETRY_INTERVALS), interval=list(EMAIL_RETRY_INTERVALS)))

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
        self._pending: set[asyncio.Task] = set()

    async def start(self) -> None:
        self._retention = asyncio.create_task(self._retention_forever(), name="trace-retention")

    async def send_trace_batch(self, events: list[dict[str, Any]]) -> None:
        await self._run(traces.write_batch, events)

    async def send_billing_events(self, event_ids: list[str]) -> None:
        """Processed after the answer to Stripe; a failure stays `failed` for a redelivery."""
        self._in_background(billing.process_events, list(event_ids))

    async def send_subscription_cancel(self, subscription_id: str) -> None:
        """Run after the answer; a failure is logged for a person (no queue to retry it here)."""
        self._in_background(billing.cancel_subscription, subscription_id)

    def _in_background(self, func: Callable[..., Any], *args: Any) -> None:
        task = asyncio.create_task(self._run_logged(func, *args))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _run_logged(self, func: Callable[..., Any], *args: Any) -> None:
        try:
            await self._run(func, *args)
        except Exception:
            log.exception("job failed", extra={"fields": {"job": func.__name__}})

    async def send_email(self, email_id: str, message: dict[str, str]) -> None:
        """Delivered now on the job thread; a failure is in the email's row, not the caller's."""
        try:
            await self._run(emails.deliver, email_id, message)
        except Exception:
            log.exception("email not delivered")

    async def _retention_forever(self) -> None:
        # Reminders wait a while: the job thread's first seconds belong to the first runs' traces.
        await asyncio.gather(self._every(RETENTION_EVERY, traces.purge_old_events),
                             self._every(REMINDERS_EVERY, reminders.send_reminders, first_after=60))

    async def _every(self, seconds: float, job: Callable[[], Any], first_after: float = 0) -> None:
        await asyncio.sleep(first_after)
        while True:
            try:
                await self._run(job)
            except Exception:  # try again next time: old events and idle learners wait
                log.exception("periodic job failed", extra={"fields": {"job": job.__name__}})
            await asyncio.sleep(seconds)

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
        await asyncio.gather(*self._pending, return_exceptions=True)
        # The connection belongs to the job thread (SQLite insists): close it there.
        await asyncio.get_running_loop().run_in_executor(self._thread, self._deps.close)
        self._thread.shutdown(wait=True)


Jobs = RQJobs | InlineJobs


def open_jobs(settings: Settings) -> Jobs:
    return InlineJobs(settings) if settings.embedded else RQJobs(settings.redis_url)
