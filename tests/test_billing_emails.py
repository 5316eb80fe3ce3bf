"""Billing emails end to end: signed webhooks -> the served app -> a real `lessonserver worker`
that re-reads the subscription from a real local Stripe (localstripe) -> the mailer -> a real
SMTP server (aiosmtpd); one email per invoice or end of access, however often Stripe tells us."""
from __future__ import annotations

import asyncio
import uuid

import psycopg2

from server.billing.machine import AccessEnded, AccessStarted, PaymentFailed, PaymentReceived
from server.billing.notices import Notice, notices_of
from tests.billing_support import deliver, event_body, events, sign, subscribe
from tests.test_billing_webhook import billing, localstripe, plan, subscription_object  # noqa: F401
from tests.test_emails import smtp  # noqa: F401
from tests.test_trace_pipeline import wait_until
from tests.test_trace_support import fetch_all


def test_payment_emails_are_keyed_by_invoice_and_the_end_by_what_reported_it():
    effects = (AccessStarted("u1"), PaymentReceived("u1", "in_1"), PaymentFailed("u2", "in_2"),
               AccessEnded("u3"))
    assert notices_of(effects, "evt_9") == (
        Notice("payment_received", "u1", "invoice:in_1"), Notice("payment_failed", "u2", "invoice:in_2"),
        Notice("subscription_ended", "u3", "ended:evt_9"))
    # The same invoice reported by another event is the same email.
    assert notices_of((PaymentReceived("u1", "in_1"),), "evt_10")[0].trigger == "invoice:in_1"
    assert notices_of((AccessStarted("u1"),), "evt_11") == ()


def _account(db_url: str) -> tuple[str, str]:
    user_id, address = uuid.uuid4().hex, f"{uuid.uuid4().hex[:8]}@example.org"
    with psycopg2.connect(db_url) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO users (id, email, email_verified_at) VALUES (%s, %s, now())",
                    (user_id, address))
    conn.close()
    return user_id, address


def _invoice(invoice_id: str, sub: dict) -> dict:
    return {"object": "invoice", "id": invoice_id, "subscription": sub["id"], "customer": sub["customer"]}


async def _send(base: str, body: str) -> None:
    response = await deliver(base, body, sign(body))
    assert response.code == 200, response.body


async def test_billing_emails_go_through_the_worker_to_smtp_once_per_trigger(billing, smtp):
    billing.new_worker(LS_SMTP_URL=smtp.url)
    user_id, address = _account(billing.db_url)
    sub = await asyncio.to_thread(subscribe, billing.stripe, billing.plan, user_id)
    paid = event_body("invoice.paid", _invoice("in_paid", sub))
    paid_again = event_body("invoice.paid", _invoice("in_paid", sub))        # another event, same invoice
    failed = event_body("invoice.payment_failed", _invoice("in_failed", sub))
    for body in (paid, paid, paid_again, failed):                          # `paid` delivered twice
        await _send(billing.base, body)
    await asyncio.to_thread(wait_until, lambda: [s for _, s in events(billing.db_url)] == ["processed"] * 3,
                            30, "the three events processed")

    await asyncio.to_thread(billing.stripe.v1.subscriptions.cancel, sub["id"])
    canceled = subscription_object(sub["id"], "canceled", user_id, sub["customer"])
    deleted = event_body("customer.subscription.deleted", canceled)
    deleted_again = event_body("customer.subscription.deleted", canceled)  # ends nothing more
    for body in (deleted, deleted_again):
        await _send(billing.base, body)
    await asyncio.to_thread(wait_until, lambda: [s for _, s in events(billing.db_url)] == ["processed"] * 5,
                            30, "the deletions processed")

    def subjects() -> list[str]:
        return sorted(m["Subject"] for m in smtp.messages)
    expected = ["Payment received", "Your payment did not go through", "Your subscription has ended"]
    await asyncio.to_thread(wait_until, lambda: subjects() == expected, 30, "the three emails")
    await asyncio.sleep(1.5)                                               # and nothing more comes
    assert subjects() == expected
    assert {m["To"] for m in smtp.messages} == {address}
    ended = next(m for m in smtp.messages if m["Subject"] == "Your subscription has ended")
    assert "/pricing" in ended.get_body(("plain",)).get_content()
    logged = fetch_all(billing.db_url, "SELECT kind, status, attempts FROM email_log WHERE user_id = %s "
                                       "ORDER BY kind", (user_id,))
    assert logged == [("payment_failed", "sent", 1), ("payment_received", "sent", 1),
                      ("subscription_ended", "sent", 1)]


async def test_a_learner_without_an_address_gets_no_email_and_the_event_is_processed(billing, smtp):
    billing.new_worker(LS_SMTP_URL=smtp.url)
    from tests.billing_support import new_user
    user_id = new_user(billing.db_url)                                     # anonymous: no address
    sub = await asyncio.to_thread(subscribe, billing.stripe, billing.plan, user_id)
    await _send(billing.base, event_body("invoice.paid", _invoice("in_anon", sub)))
    await asyncio.to_thread(wait_until, lambda: [s for _, s in events(billing.db_url)] == ["processed"],
                            30, "the event processed")
    await asyncio.sleep(1)
    assert smtp.messages == [] and fetch_all(billing.db_url, "SELECT count(*) FROM email_log") == [(0,)]
