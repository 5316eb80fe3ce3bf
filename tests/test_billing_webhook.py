"""Stripe webhooks end to end: a real local Stripe (localstripe), the served app, real Postgres,
Redis and `lessonserver worker` processes."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import time

import psycopg2
import pytest
import redis
import tornado.httpclient
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry, StartedJobRegistry

from tests import services
from tests.billing_support import (BUNDLED, SECRET_KEY, WEBHOOK_SECRET, deliver, event_body, events,
                                   make_plan, new_user, sign, stripe_client, subscribe,
                                   subscription_row, user_cookie)
from tests.test_pages import start
from tests.test_trace_pipeline import WorkerProcess, wait_until
from tests.test_trace_support import fetch_all, fresh_postgres, migrate
from workers import queue as jobs_queue

COOKIE_SECRET = "billing-test-cookie-secret"


@pytest.fixture(scope="module")
def localstripe(tmp_path_factory):
    server = services.LocalStripe(tmp_path_factory.mktemp("localstripe") / "localstripe.log")
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def plan(localstripe) -> str:
    return make_plan(stripe_client(localstripe.url))


class Billing:
    def __init__(self, base, db_url, env, redis_url, new_worker, client, plan, localstripe_url):
        self.base, self.db_url, self.env, self.new_worker = base, db_url, env, new_worker
        self.redis = redis.Redis.from_url(redis_url)
        self.queue = Queue(jobs_queue.BILLING, connection=self.redis)
        self.stripe, self.plan, self.localstripe_url = client, plan, localstripe_url

    async def paid_lesson(self) -> str:
        response = await tornado.httpclient.AsyncHTTPClient().fetch(f"{self.base}/api/lessons")
        return next(lesson["url"] for course in json.loads(response.body)["courses"]
                    for lesson in course["lessons"] if lesson["access"] == "paid")

    async def lock(self, path: str, user_id: str) -> str:
        """The lesson's lock for the learner: paid (402), prerequisites (403) or open (200)."""
        response = await tornado.httpclient.AsyncHTTPClient().fetch(
            self.base + path, headers={"Cookie": user_cookie(COOKIE_SECRET, user_id)}, raise_error=False)
        return {402: "paid", 403: "prerequisites", 200: "open"}[response.code]


@pytest.fixture
async def billing(tmp_path, pg_url, redis_server, make_settings, localstripe, plan):
    """The served app in production mode with Stripe configured, and a way to start workers."""
    if redis_server.proc is None:
        redis_server.start()
    redis.Redis.from_url(redis_server.url).flushdb()
    with fresh_postgres(pg_url, prefix="billing") as db_url:
        migrate(db_url, make_settings)
        env = {"LS_REDIS_URL": redis_server.url, "LS_DATABASE_URL": db_url,
               "LS_STRIPE_SECRET_KEY": SECRET_KEY, "LS_STRIPE_PRICE": plan,
               "LS_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET, "LS_STRIPE_API_BASE": localstripe.url,
               "LS_COOKIE_SECRET": COOKIE_SECRET, "LS_LESSONS_DIR": str(BUNDLED)}
        settings = make_settings(**env)
        server, stop, task = await start(settings)
        workers: list[WorkerProcess] = []

        def new_worker(**overrides: str) -> WorkerProcess:
            worker_env = {"PATH": os.environ.get("PATH", ""), "LS_DATA_DIR": str(tmp_path / "worker"),
                          "LS_LOG_LEVEL": "INFO", **env, **overrides}
            worker = WorkerProcess(worker_env, tmp_path / f"worker{len(workers)}.log")
            workers.append(worker)
            worker.start()
            return worker

        try:
            billing = Billing(server.base, db_url, env, redis_server.url, new_worker,
                              stripe_client(localstripe.url), plan, localstripe.url)
            billing.settings = settings
            yield billing
        finally:
            for worker in workers:
                worker.stop()
            stop.set()
            await asyncio.wait_for(task, 15)


def subscription_object(sub_id: str, status: str, user_id: str, customer: str = "cus_x") -> dict:
    return {"object": "subscription", "id": sub_id, "customer": customer, "status": status,
            "metadata": {"user_id": user_id}}


async def test_bad_signatures_get_400_and_store_nothing(billing):
    body = event_body("customer.subscription.updated", subscription_object("sub_1", "active", "u1"))
    now = int(time.time())
    tampered = body.replace('"active"', '"canceled"')
    cases = {
        "missing": (body, None),
        "malformed": (body, "this is not a signature"),
        "no v1": (body, f"t={now}"),
        "wrong secret": (body, sign(body, secret="whsec_someone_else")),
        "stale": (body, sign(body, timestamp=now - 301)),
        "tampered": (tampered, sign(body)),
        "from the future, beyond the tolerance": (body, sign(body, timestamp=now + 400)),
    }
    for name, (sent, signature) in cases.items():
        response = await deliver(billing.base, sent, signature)
        assert response.code == 400, name
        assert b"Stripe-Signature" in response.body, name
    assert events(billing.db_url) == []
    assert billing.queue.count == 0

    fresh = await deliver(billing.base, body, sign(body, timestamp=now - 250))   # within 300 s
    assert (fresh.code, json.loads(fresh.body)["receipt"]) == (200, "new")
    duplicate = await deliver(billing.base, body, sign(body))
    assert (duplicate.code, json.loads(duplicate.body)["receipt"]) == (200, "pending")
    assert [status for _, status in events(billing.db_url)] == ["received"]
    assert billing.queue.count == 1                   # the duplicate queued nothing


async def test_a_verified_body_that_is_not_an_event_is_refused(billing):
    response = await deliver(billing.base, '{"hello": 1}', sign('{"hello": 1}'))
    assert response.code == 400 and b"not a Stripe event" in response.body
    assert events(billing.db_url) == []


async def test_localstripe_subscription_opens_then_deletion_locks_the_paid_lesson(billing):
    billing.new_worker()
    user_id = new_user(billing.db_url)
    lesson = await billing.paid_lesson()
    assert await billing.lock(lesson, user_id) == "paid"
    await asyncio.to_thread(_register_webhook, billing)
    sub = await asyncio.to_thread(subscribe, billing.stripe, billing.plan, user_id)
    await asyncio.to_thread(wait_until, lambda: (subscription_row(billing.db_url, user_id) or ("",))[0]
                            == "active", 30, "the subscription to be stored as active")
    assert await billing.lock(lesson, user_id) == "prerequisites"   # paid is open: earlier lessons next
    await asyncio.to_thread(billing.stripe.v1.subscriptions.cancel, sub["id"])
    await asyncio.to_thread(wait_until, lambda: subscription_row(billing.db_url, user_id)[0]
                            == "canceled", 30, "the deletion to be applied")
    status, sub_id, access_ended_at = subscription_row(billing.db_url, user_id)
    assert sub_id == sub["id"] and access_ended_at is not None
    assert await billing.lock(lesson, user_id) == "paid"
    stored = dict(events(billing.db_url))
    assert "received" not in stored.values() and "failed" not in stored.values()


def _register_webhook(billing: Billing) -> None:
    import requests
    response = requests.post(f"{billing.localstripe_url}/_config/webhooks/lessonserver",
                             data={"url": f"{billing.base}/stripe/webhook", "secret": WEBHOOK_SECRET},
                             headers={"Authorization": f"Bearer {SECRET_KEY}"}, timeout=10)
    response.raise_for_status()


async def test_updated_delivered_after_deleted_never_reopens_access(billing):
    user_id = new_user(billing.db_url)
    sub = await asyncio.to_thread(subscribe, billing.stripe, billing.plan, user_id)
    await asyncio.to_thread(billing.stripe.v1.subscriptions.cancel, sub["id"])
    now = int(time.time())
    deleted = event_body("customer.subscription.deleted",
                         subscription_object(sub["id"], "canceled", user_id, sub["customer"]), now)
    updated = event_body("customer.subscription.updated",
                         subscription_object(sub["id"], "active", user_id, sub["customer"]), now - 60)
    for body in (deleted, updated):                   # out of order: the older one arrives last
        assert (await deliver(billing.base, body, sign(body))).code == 200
    billing.new_worker()
    await asyncio.to_thread(wait_until, lambda: [s for _, s in events(billing.db_url)] ==
                            ["processed", "processed"], 30, "both events processed")
    assert subscription_row(billing.db_url, user_id)[0] == "canceled"
    assert await billing.lock(await billing.paid_lesson(), user_id) == "paid"


def _unanswering_port() -> socket.socket:
    """A listener that never accepts: a Stripe API that hangs mid-request."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    return listener


async def test_a_worker_killed_mid_job_is_retried_by_the_next(billing):
    user_id = new_user(billing.db_url)
    sub = await asyncio.to_thread(subscribe, billing.stripe, billing.plan, user_id)
    body = event_body("customer.subscription.created",
                      subscription_object(sub["id"], "active", user_id, sub["customer"]))
    hanging = _unanswering_port()
    try:
        first = billing.new_worker(LS_STRIPE_API_BASE=f"http://127.0.0.1:{hanging.getsockname()[1]}")
        assert (await deliver(billing.base, body, sign(body))).code == 200
        started = StartedJobRegistry(jobs_queue.BILLING, connection=billing.redis)

        def inside_the_job() -> bool:
            # In the registry is not enough: RQ marks the job started in a second write, and a
            # kill between the two leaves a queued job (see workers/recovery.reclaim_abandoned).
            ids = started.get_job_ids(cleanup=False)
            return len(ids) == 1 and \
                Job.fetch(ids[0], connection=billing.redis).get_status() == JobStatus.STARTED
        await asyncio.to_thread(wait_until, inside_the_job, 30,
                                "the worker inside the job (waiting on Stripe)")
        first.kill()                                  # SIGKILL mid-job
    finally:
        hanging.close()
    assert [s for _, s in events(billing.db_url)] == ["received"]     # not done, not lost
    assert subscription_row(billing.db_url, user_id) is None
    # RQ's maintenance re-queues a started job once its heartbeat lapsed; run it past the lapse.
    started.cleanup(timestamp=time.time() + jobs_queue.BILLING_TIMEOUT + 120)
    assert billing.queue.count == 1
    billing.new_worker()
    await asyncio.to_thread(wait_until, lambda: [s for _, s in events(billing.db_url)] == ["processed"],
                            30, "the retried job")
    assert subscription_row(billing.db_url, user_id)[0] == "active"


async def test_a_redelivered_failed_event_is_processed_again(billing):
    """dj-stripe #832: an event whose processing failed must not count as done when it comes again."""
    user_id = new_user(billing.db_url)
    sub = await asyncio.to_thread(subscribe, billing.stripe, billing.plan, user_id)
    body = event_body("customer.subscription.created",
                      subscription_object(sub["id"], "active", user_id, sub["customer"]))
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))                     # bound, not listening: connection refused
    try:
        failing = billing.new_worker(LS_STRIPE_API_BASE=f"http://127.0.0.1:{closed.getsockname()[1]}")
        assert (await deliver(billing.base, body, sign(body))).code == 200
        await asyncio.to_thread(wait_until, lambda: [s for _, s in events(billing.db_url)] == ["failed"],
                                60, "the job to fail")
        # RQ retries a failed job (the first retry at once): a second attempt is recorded.
        await asyncio.to_thread(wait_until, lambda: fetch_all(
            billing.db_url, "SELECT attempts FROM processed_webhook_events")[0][0] >= 2, 60,
            "RQ's retry of the failed job")
        failing.stop()
    finally:
        closed.close()
    # Its retries are spent (or Stripe's redelivery comes first): drop what RQ still holds.
    billing.queue.empty()
    scheduled = ScheduledJobRegistry(jobs_queue.BILLING, connection=billing.redis)
    for job_id in scheduled.get_job_ids():
        scheduled.remove(job_id, delete_job=True)
    assert subscription_row(billing.db_url, user_id) is None

    again = await deliver(billing.base, body, sign(body))
    assert (again.code, json.loads(again.body)["receipt"]) == (200, "retry")
    assert billing.queue.count == 1
    billing.new_worker()
    await asyncio.to_thread(wait_until, lambda: [s for _, s in events(billing.db_url)] == ["processed"],
                            30, "the redelivered event processed")
    assert subscription_row(billing.db_url, user_id)[0] == "active"
    done = await deliver(billing.base, body, sign(body))
    assert (done.code, json.loads(done.body)["receipt"]) == (200, "done")
    assert billing.queue.count == 0


def _reconcile_in_a_worker_thread(settings) -> dict:
    from workers import billing as billing_jobs, deps
    with deps.provided(deps.JobDeps(settings)):
        return billing_jobs.reconcile()


async def test_the_daily_reconciliation_repairs_missed_webhooks_and_unfinished_events(billing):
    # A subscription whose webhooks never arrived (no endpoint registered at the local Stripe) ...
    missed_user = new_user(billing.db_url)
    await asyncio.to_thread(subscribe, billing.stripe, billing.plan, missed_user)
    # ... and an event received long ago whose job never ran.
    stuck_user = new_user(billing.db_url)
    sub = await asyncio.to_thread(subscribe, billing.stripe, billing.plan, stuck_user)
    body = event_body("customer.subscription.created",
                      subscription_object(sub["id"], "active", stuck_user, sub["customer"]))
    assert (await deliver(billing.base, body, sign(body))).code == 200
    with psycopg2.connect(billing.db_url) as conn, conn.cursor() as cur:
        cur.execute("UPDATE processed_webhook_events SET received_at = now() - interval '1 hour'")
    conn.close()
    billing.queue.empty()                             # the job was lost with its Redis

    counts = await asyncio.to_thread(_reconcile_in_a_worker_thread, billing.settings)
    assert counts["events"] == 1 and counts["subscriptions"] >= 2
    assert subscription_row(billing.db_url, missed_user)[0] == "active"
    assert subscription_row(billing.db_url, stuck_user)[0] == "active"
    assert [s for _, s in events(billing.db_url)] == ["processed"]


def test_the_reconciliation_is_scheduled_daily_only_with_billing(billing, make_settings):
    from workers.worker import RECONCILE_JOB_ID, schedule_reconciliation
    scheduled = ScheduledJobRegistry(jobs_queue.BILLING, connection=billing.redis)
    schedule_reconciliation(billing.redis, make_settings())
    assert scheduled.get_job_ids() == []
    for _ in range(3):                                # many workers, one schedule
        schedule_reconciliation(billing.redis, billing.settings)
    assert scheduled.get_job_ids() == [RECONCILE_JOB_ID]
    due = scheduled.get_scheduled_time(RECONCILE_JOB_ID).timestamp()
    assert 86400 - 60 < due - time.time() <= 86400


async def test_embedded_mode_processes_webhooks_in_process(make_settings, localstripe, plan):
    """No Redis, SQLite: the same job function runs on the server's job thread after the answer."""
    from server import db
    from server.store import subscriptions as store, users
    settings = make_settings(LS_STRIPE_SECRET_KEY=SECRET_KEY, LS_STRIPE_PRICE=plan,
                             LS_STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET, LS_STRIPE_API_BASE=localstripe.url,
                             LS_LESSONS_DIR=str(BUNDLED))
    server, stop, task = await start(settings)
    engine = db.create_engine(settings)
    try:
        user = await users.create_anonymous(engine)
        sub = await asyncio.to_thread(subscribe, stripe_client(localstripe.url), plan, user.id)
        body = event_body("customer.subscription.created",
                          subscription_object(sub["id"], "incomplete", user.id, sub["customer"]))
        response = await deliver(server.base, body, sign(body))
        assert (response.code, json.loads(response.body)["receipt"]) == (200, "new")
        for _ in range(200):
            row = await store.get(engine, user.id)
            if row is not None:
                break
            await asyncio.sleep(0.05)
        assert row.status == "active"                 # read anew from Stripe, not the event's copy
        assert (await store.load_event(engine, json.loads(body)["id"])).status.value == "processed"
    finally:
        await engine.dispose()
        stop.set()
        await asyncio.wait_for(task, 15)
