"""Deleting an account with a subscription: the served app in production mode, a real worker that
cancels at a real local Stripe (localstripe), real Postgres and Redis, and a real kernel whose
Jupyter channels are closed with a plain message."""
from __future__ import annotations

import asyncio
import json
import socket

import tornado.httpclient
import tornado.websocket
from rq import Queue
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from server import db
from server.accounts import passwords
from server.accounts.deletion import CLOSED_MESSAGE, subscription_to_cancel
from server.store import accounts, subscriptions
from server.store.subscriptions import Subscription
from tests.accounts_support import Client, text
from tests.billing_support import subscribe, subscription_row
from tests.test_billing_webhook import billing, localstripe, plan  # noqa: F401
from tests.test_trace_pipeline import wait_until
from workers import queue as jobs_queue

PASSWORD = "correct horse battery"


def test_only_a_subscription_that_still_bills_is_canceled():
    assert subscription_to_cancel(None) is None
    assert subscription_to_cancel(Subscription("u", "active")) is None          # no Stripe id
    for status in ("active", "trialing", "past_due", "unpaid", "paused", "incomplete"):
        assert subscription_to_cancel(Subscription("u", status, stripe_subscription_id="sub_1")) == "sub_1"
    for status in ("canceled", "incomplete_expired"):
        assert subscription_to_cancel(Subscription("u", status, stripe_subscription_id="sub_1")) is None


async def _subscribed_learner(billing, email: str) -> tuple[Client, str, dict]:
    """A signed-in learner with an active subscription on localstripe, stored as the worker would."""
    engine = db.create_engine(billing.settings)
    try:
        account = await accounts.create(engine, email, await passwords.hash_password(PASSWORD),
                                        verified=True)
        sub = await asyncio.to_thread(subscribe, billing.stripe, billing.plan, account.id)
        await subscriptions.put(engine, Subscription(account.id, "active", stripe_customer_id=sub["customer"],
                                                     stripe_subscription_id=sub["id"]))
    finally:
        await engine.dispose()
    client = Client(billing.base)
    assert (await client.post("/login", {"email": email, "password": PASSWORD})).code == 302
    return client, account.id, sub


async def _kernel_channels(client: Client) -> tuple[str, tornado.websocket.WebSocketClientConnection]:
    xsrf = client.cookies["_xsrf"]
    response = await client.fetch("/api/kernels", "POST", json.dumps({"name": "python"}),
                                  {"X-XSRFToken": xsrf, "Content-Type": "application/json"})
    assert response.code == 201, text(response)
    kernel_id = json.loads(response.body)["id"]
    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    url = client.base.replace("http", "ws", 1) + f"/api/kernels/{kernel_id}/channels"
    ws = await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(url, headers={"Cookie": cookie}))
    return kernel_id, ws


async def _closed_reason(ws: tornado.websocket.WebSocketClientConnection) -> str:
    while await asyncio.wait_for(ws.read_message(), 20) is not None:
        pass
    return ws.close_reason or ""


def _stripe_status(billing, sub_id: str) -> str:
    return billing.stripe.v1.subscriptions.retrieve(sub_id).status


async def test_deleting_the_account_cancels_the_subscription_and_closes_the_kernels(billing):
    billing.new_worker()
    client, user_id, sub = await _subscribed_learner(billing, "ada@example.org")
    _, ws = await _kernel_channels(client)
    response = await client.post("/account/delete", {"current": PASSWORD})
    assert response.code == 200 and "being canceled" in text(response), text(response)
    assert CLOSED_MESSAGE in await _closed_reason(ws)            # the client is told why, at once
    await asyncio.to_thread(wait_until, lambda: _stripe_status(billing, sub["id"]) == "canceled", 30,
                            "the worker to cancel the subscription at Stripe")
    assert subscription_row(billing.db_url, user_id) is None     # the row went with the account
    assert (await client.get("/account")).code == 302            # signed out


async def test_a_cancellation_that_fails_is_retried_by_the_worker(billing):
    """Stripe away at the first attempt: RQ's retry cancels it once a worker can reach Stripe."""
    client, user_id, sub = await _subscribed_learner(billing, "grace@example.org")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))                                 # bound, not listening: refused
    try:
        failing = billing.new_worker(LS_STRIPE_API_BASE=f"http://127.0.0.1:{closed.getsockname()[1]}")
        response = await client.post("/account/delete", {"current": PASSWORD})
        assert response.code == 200 and "being canceled" in text(response)
        job = Job.fetch(f"cancel-{sub['id']}", connection=billing.redis)
        await asyncio.to_thread(wait_until, lambda: job.get_status(refresh=True) == "scheduled", 60,
                                "the first attempts to fail and a retry to be scheduled")
        failing.kill()                                            # idle between attempts
    finally:
        closed.close()
    assert _stripe_status(billing, sub["id"]) == "active"
    assert "Network error: ConnectionError" in failing.log_path.read_text()      # why it failed
    # Run the retry now rather than at its backoff (the scheduler's own schedule is RQ's business).
    ScheduledJobRegistry(jobs_queue.BILLING, connection=billing.redis).remove(job.id)
    Queue(jobs_queue.BILLING, connection=billing.redis).enqueue_job(job)
    billing.new_worker()
    await asyncio.to_thread(wait_until, lambda: _stripe_status(billing, sub["id"]) == "canceled", 30,
                            "the retried cancellation")
