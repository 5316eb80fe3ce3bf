"""A learner's Stripe subscription as last reported by Stripe, and the webhook events already handled.

Whether a status grants access is decided elsewhere (pure rules on these
values); this module only stores what Stripe said.
"""
from __future__ import annotations

import dataclasses
import datetime as dt

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.models import ProcessedWebhookEvent, Subscription as SubscriptionRow, utcnow
from server.store import from_row, upsert


@dataclasses.dataclass(frozen=True)
class Subscription:
    user_id: str
    status: str                              # Stripe's: active, trialing, past_due, canceled, ...
    current_period_end: dt.datetime | None = None
    stripe_customer_id: str | None = None
    stripe_subscription_id: str | None = None
    updated_at: dt.datetime | None = None    # set by put()


COLUMNS = tuple(getattr(SubscriptionRow, f.name) for f in dataclasses.fields(Subscription))


async def _one(engine: AsyncEngine, where: sa.ColumnElement[bool]) -> Subscription | None:
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(*COLUMNS).where(where))).mappings().first()
    return None if row is None else from_row(Subscription, row)


async def get(engine: AsyncEngine, user_id: str) -> Subscription | None:
    return await _one(engine, SubscriptionRow.user_id == user_id)


async def get_by_customer(engine: AsyncEngine, stripe_customer_id: str) -> Subscription | None:
    """Webhooks name the Stripe customer, not our user."""
    return await _one(engine, SubscriptionRow.stripe_customer_id == stripe_customer_id)


async def put(engine: AsyncEngine, subscription: Subscription) -> Subscription:
    """Insert or replace the user's subscription; returns it as stored (with updated_at)."""
    stored = dataclasses.replace(subscription, updated_at=utcnow())
    values = dataclasses.asdict(stored)
    stmt = upsert(engine, SubscriptionRow.__table__).values(values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["user_id"],
        set_={name: stmt.excluded[name] for name in values if name != "user_id"})
    async with engine.begin() as conn:
        await conn.execute(stmt)
    return stored


async def mark_event_processed(engine: AsyncEngine, event_id: str, event_type: str) -> bool:
    """Record a webhook event id; False when it was already recorded (a redelivery to ignore).

    Call it after the event's effect is stored: if the effect fails, Stripe's
    redelivery is then processed again (effects such as `put` are idempotent).
    """
    stmt = upsert(engine, ProcessedWebhookEvent.__table__).values(
        event_id=event_id, type=event_type, processed_at=utcnow()
    ).on_conflict_do_nothing(index_elements=["event_id"])
    async with engine.begin() as conn:
        result = await conn.execute(stmt)
    return result.rowcount == 1
