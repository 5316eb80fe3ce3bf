"""What the billing tests share: a real local Stripe (localstripe), signed events, a served app."""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import psycopg2
import stripe
import tornado.httpclient
import tornado.web

from tests.test_trace_support import fetch_all

WEBHOOK_SECRET = "whsec_lessonserver_tests"
SECRET_KEY = "sk_test_lessonserver"
BUNDLED = Path(__file__).resolve().parent.parent / "lessons"


def stripe_client(api_base: str) -> stripe.StripeClient:
    return stripe.StripeClient(SECRET_KEY, base_addresses={"api": api_base},
                               http_client=stripe.RequestsClient(timeout=10))


def make_plan(client: stripe.StripeClient) -> str:
    product = client.v1.products.create({"name": "lessons"})
    plan_id = f"plan_{uuid.uuid4().hex[:10]}"
    client.v1.plans.create({"id": plan_id, "amount": 900, "currency": "usd", "interval": "month",
                            "product": product.id})
    return plan_id


def subscribe(client: stripe.StripeClient, plan: str, user_id: str) -> dict:
    """A paying customer and an active subscription that names our learner, on localstripe."""
    token = client.v1.tokens.create({"card": {"number": "4242424242424242", "exp_month": 12,
                                              "exp_year": 2035, "cvc": "123"}})
    customer = client.v1.customers.create({"email": f"{user_id}@example.org", "source": token.id})
    return client.v1.subscriptions.create({"customer": customer.id, "items": [{"plan": plan}],
                                           "metadata": {"user_id": user_id}}).to_dict()


def event_body(type_: str, obj: dict, created: int | None = None, event_id: str | None = None) -> str:
    return json.dumps({"id": event_id or f"evt_{uuid.uuid4().hex[:16]}", "object": "event",
                       "type": type_, "created": created or int(time.time()), "api_version": "2017-08-15",
                       "data": {"object": obj}})


def sign(body: str, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(body, secret, timestamp)


async def deliver(base: str, body: str | bytes, signature: str | None) -> tornado.httpclient.HTTPResponse:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return await tornado.httpclient.AsyncHTTPClient().fetch(
        f"{base}/stripe/webhook", method="POST", body=body, headers=headers, raise_error=False)


def events(db_url: str) -> list[tuple]:
    return fetch_all(db_url, "SELECT event_id, status FROM processed_webhook_events ORDER BY received_at")


def subscription_row(db_url: str, user_id: str) -> tuple | None:
    rows = fetch_all(db_url, "SELECT status, stripe_subscription_id, access_ended_at FROM subscriptions "
                             "WHERE user_id = %s", (user_id,))
    return rows[0] if rows else None


def new_user(db_url: str) -> str:
    user_id = uuid.uuid4().hex
    with psycopg2.connect(db_url) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO users (id) VALUES (%s)", (user_id,))
    conn.close()
    return user_id


def user_cookie(cookie_secret: str, user_id: str) -> str:
    value = tornado.web.create_signed_value(cookie_secret, "ls_user", user_id).decode()
    return f"ls_user={value}"
