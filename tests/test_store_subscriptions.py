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


async def test_webhook_event_is_processed_once(db_engine):
    assert await subscriptions.mark_event_processed(db_engine, "evt_1", "invoice.paid") is True
    assert await subscriptions.mark_event_processed(db_engine, "evt_1", "invoice.paid") is False
    results = await asyncio.gather(*(subscriptions.mark_event_processed(db_engine, "evt_2", "x")
                                     for _ in range(8)))
    assert sorted(results) == [False] * 7 + [True]
