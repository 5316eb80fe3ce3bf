"""Subscriptions and processed webhook events on SQLite and Postgres."""
from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from server.store import subscriptions, users
from server.store.subscriptions import Subscription

PERIOD_END = dt.datetime(2031, 5, 4, 3, 2, 1, 123456, tzinfo=dt.timezone.utc)


@pytest.fixture
async def user_id(db_engine):
    return (await users.create_anonymous(db_engine)).id


async def test_put_then_get(db_engine, user_id):
    assert await subscriptions.get(db_engine, user_id) is None
    stored = await subscriptions.put(db_engine, Subscription(
        user_id, "active", PERIOD_END, stripe_customer_id="cus_1", stripe_subscription_id="sub_1"))
    loaded = await subscriptions.get(db_engine, user_id)
    assert loaded == stored
    assert loaded.status == "active" and loaded.current_period_end == PERIOD_END
    assert loaded.updated_at is not None and loaded.updated_at.tzinfo is not None
    assert await subscriptions.get_by_customer(db_engine, "cus_1") == loaded
    assert await subscriptions.get_by_customer(db_engine, "cus_2") is None


async def test_put_replaces_the_previous_state(db_engine, user_id):
    await subscriptions.put(db_engine, Subscription(user_id, "active", PERIOD_END, "cus_1", "sub_1"))
    later = PERIOD_END.astimezone(dt.timezone(dt.timedelta(hours=-5)))  # any zone in, UTC out
    await subscriptions.put(db_engine, Subscription(user_id, "past_due", later, "cus_1", "sub_1"))
    loaded = await subscriptions.get(db_engine, user_id)
    assert loaded.status == "past_due"
    assert loaded.current_period_end == PERIOD_END
    await subscriptions.put(db_engine, Subscription(user_id, "canceled"))
    loaded = await subscriptions.get(db_engine, user_id)
    assert (loaded.status, loaded.current_period_end, loaded.stripe_customer_id) == ("canceled", None, None)


async def test_a_webhook_event_is_received_once_and_a_failed_one_again(db_engine):
    receive = subscriptions.receive_event
    R = subscriptions.Receipt
    assert await receive(db_engine, "evt_1", "invoice.paid", "{}") is R.NEW
    assert await receive(db_engine, "evt_1", "invoice.paid", "{}") is R.PENDING
    stored = await subscriptions.load_event(db_engine, "evt_1")
    assert (stored.status, stored.payload, stored.attempts) == (subscriptions.EventStatus.RECEIVED, "{}", 0)
    await subscriptions.mark_failed(db_engine, "evt_1", "Stripe was away")
    assert await receive(db_engine, "evt_1", "invoice.paid", "{}") is R.RETRY   # failed is not done
    assert await receive(db_engine, "evt_1", "invoice.paid", "{}") is R.PENDING
    await subscriptions.mark_processed(db_engine, "evt_1")
    assert await receive(db_engine, "evt_1", "invoice.paid", "{}") is R.DONE
    stored = await subscriptions.load_event(db_engine, "evt_1")
    assert (stored.status, stored.attempts, stored.error) == (subscriptions.EventStatus.PROCESSED, 2, None)
    assert stored.processed_at is not None
    results = await asyncio.gather(*(receive(db_engine, "evt_2", "x", "{}") for _ in range(8)))
    assert sorted(results) == [R.NEW] + [R.PENDING] * 7


async def test_unfinished_events_are_listed_for_the_reconciliation(db_engine):
    for event_id in ("evt_a", "evt_b", "evt_c"):
        await subscriptions.receive_event(db_engine, event_id, "x", "{}")
    await subscriptions.mark_processed(db_engine, "evt_b")
    await subscriptions.mark_failed(db_engine, "evt_c", "boom")
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5)
    assert await subscriptions.unfinished_events(db_engine, later) == ["evt_a", "evt_c"]
    assert await subscriptions.unfinished_events(db_engine, later - dt.timedelta(hours=1)) == []


async def test_transition_writes_only_changes(db_engine, user_id):
    first = Subscription(user_id, "active", PERIOD_END, "cus_1", "sub_1")
    before, after = await subscriptions.transition(db_engine, user_id, lambda row: first)
    assert before is None and after.status == "active" and after.updated_at is not None
    before, again = await subscriptions.transition(db_engine, user_id, lambda row: row)
    assert before == again == after
    ended = dt.datetime.now(dt.timezone.utc)
    await subscriptions.transition(db_engine, user_id, lambda row: Subscription(
        user_id, "canceled", access_ended_at=ended))
    changes = await subscriptions.access_changes(db_engine, ended - dt.timedelta(seconds=1))
    assert [(c.user_id, c.status) for c in changes] == [(user_id, "canceled")]
    assert await subscriptions.access_changes(db_engine, ended + dt.timedelta(seconds=1)) == []
