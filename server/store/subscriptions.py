"""A learner's Stripe subscription as last reported by Stripe, and the webhook events received.

Whether a status grants access is decided elsewhere (server/billing/machine.py,
pure rules on these values); this module only stores what Stripe said.

Webhook events are stored from their receipt: `received` until a job has
applied them, then `processed`; a job that fails marks them `failed`, and a
redelivery of a failed event processes it again (recorded is not done).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.models import ProcessedWebhookEvent as EventRow, Subscription as SubscriptionRow, utcnow
from server.store import from_row, upsert


@dataclasses.dataclass(frozen=True)
class Subscription:
    user_id: str
    status: str                              # Stripe's: active, trialing, past_due, canceled, ...
    current_period_end: dt.datetime | None = None
    stripe_customer_id: str | None = None
    stripe_subscription_id: str | None = None
    current_period_start: dt.datetime | None = None
    subscription_created: dt.datetime | None = None
    observed_at: dt.datetime | None = None   # when Stripe reported this state
    access_ended_at: dt.datetime | None = None
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


async def _write(conn: AsyncConnection, subscription: Subscription) -> Subscription:
    stored = dataclasses.replace(subscription, updated_at=utcnow())
    values = dataclasses.asdict(stored)
    stmt = upsert(conn.engine, SubscriptionRow.__table__).values(values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["user_id"],
        set_={name: stmt.excluded[name] for name in values if name != "user_id"})
    await conn.execute(stmt)
    return stored


async def put(engine: AsyncEngine, subscription: Subscription) -> Subscription:
    """Insert or replace the user's subscription; returns it as stored (with updated_at)."""
    async with engine.begin() as conn:
        return await _write(conn, subscription)


Step = Callable[[Subscription | None], Subscription | None]


async def transition(engine: AsyncEngine, user_id: str,
                     step: Step) -> tuple[Subscription | None, Subscription | None]:
    """(before, after) of `step` applied to the stored row, one writer per user at a time;
    `step` returning its argument (or None) writes nothing."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":   # also serializes the first insert for a user
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                               {"key": f"subscription:{user_id}"})
        row = (await conn.execute(sa.select(*COLUMNS).where(SubscriptionRow.user_id == user_id)
                                  )).mappings().first()
        before = None if row is None else from_row(Subscription, row)
        after = step(before)
        if after is None or after == before:
            return before, before
        return before, await _write(conn, after)


async def access_changes(engine: AsyncEngine, since: dt.datetime) -> list[Subscription]:
    """Rows whose access may have ended since `since`: ended then, or past due (a grace runs out)."""
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(*COLUMNS).where(
            (SubscriptionRow.access_ended_at >= since) | (SubscriptionRow.status == "past_due")
        ))).mappings().all()
    return [from_row(Subscription, row) for row in rows]


# --- webhook events ---------------------------------------------------------

class EventStatus(str, enum.Enum):
    RECEIVED = "received"
    PROCESSED = "processed"
    FAILED = "failed"


class Receipt(str, enum.Enum):
    """What storing a delivery found."""
    NEW = "new"              # first delivery: process it
    RETRY = "retry"          # its processing had failed: process it again
    PENDING = "pending"      # received before, a job has it: nothing to do
    DONE = "done"            # processed before: nothing to do


@dataclasses.dataclass(frozen=True)
class StoredEvent:
    event_id: str
    type: str
    status: EventStatus
    payload: str | None
    attempts: int
    error: str | None
    received_at: dt.datetime
    processed_at: dt.datetime | None


EVENT_COLUMNS = tuple(getattr(EventRow, f.name) for f in dataclasses.fields(StoredEvent))


@dataclasses.dataclass(frozen=True)
class Delivery:
    event_id: str
    type: str
    payload: str


async def receive_events(engine: AsyncEngine, deliveries: list[Delivery]) -> list[Receipt]:
    """Store verified events by id, each row's receipt and status in one transaction (one for
    the whole batch: deliveries that arrive together are committed together)."""
    first: dict[str, Delivery] = {}
    for delivery in deliveries:
        first.setdefault(delivery.event_id, delivery)
    ids = list(first)
    now = utcnow()
    insert = upsert(engine, EventRow.__table__).values([
        {"event_id": d.event_id, "type": d.type, "status": EventStatus.RECEIVED.value,
         "payload": d.payload, "attempts": 0, "received_at": now} for d in first.values()
    ]).on_conflict_do_nothing(index_elements=["event_id"]).returning(EventRow.event_id)
    async with engine.begin() as conn:
        new = set((await conn.execute(insert)).scalars())
        seen = [event_id for event_id in ids if event_id not in new]
        retried: set[str] = set()
        statuses: dict[str, str] = {}
        if seen:   # a failed event delivered again is processed again: recorded is not done
            retried = set((await conn.execute(
                sa.update(EventRow).where(EventRow.event_id.in_(seen),
                                          EventRow.status == EventStatus.FAILED.value)
                .values(status=EventStatus.RECEIVED.value).returning(EventRow.event_id))).scalars())
            statuses = dict((await conn.execute(sa.select(EventRow.event_id, EventRow.status).where(
                EventRow.event_id.in_(seen)))).all())
    receipts, answered = [], set()
    for delivery in deliveries:
        event_id = delivery.event_id
        if event_id in answered:                 # the same event twice in one batch
            receipts.append(Receipt.PENDING)
        elif event_id in new:
            receipts.append(Receipt.NEW)
        elif event_id in retried:
            receipts.append(Receipt.RETRY)
        else:
            receipts.append(Receipt.DONE if statuses.get(event_id) == EventStatus.PROCESSED.value
                            else Receipt.PENDING)
        answered.add(event_id)
    return receipts


async def receive_event(engine: AsyncEngine, event_id: str, event_type: str, payload: str) -> Receipt:
    """One delivery: see receive_events."""
    return (await receive_events(engine, [Delivery(event_id, event_type, payload)]))[0]


async def load_event(engine: AsyncEngine, event_id: str) -> StoredEvent | None:
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(*EVENT_COLUMNS).where(EventRow.event_id == event_id)
                                  )).mappings().first()
    return None if row is None else from_row(StoredEvent, row, status=EventStatus(row["status"]))


async def _finish(engine: AsyncEngine, event_id: str, status: EventStatus, error: str | None) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.update(EventRow).where(EventRow.event_id == event_id).values(
            status=status.value, error=error, attempts=EventRow.attempts + 1,
            processed_at=utcnow() if status is EventStatus.PROCESSED else None))


async def mark_processed(engine: AsyncEngine, event_id: str) -> None:
    await _finish(engine, event_id, EventStatus.PROCESSED, None)


async def mark_failed(engine: AsyncEngine, event_id: str, error: str) -> None:
    await _finish(engine, event_id, EventStatus.FAILED, error[-2000:])


async def mark_unqueued(engine: AsyncEngine, event_ids: list[str], error: str) -> None:
    """Events stored but not handed to a job: failed, so a redelivery or the reconciliation
    processes them (no attempt was made)."""
    async with engine.begin() as conn:
        await conn.execute(sa.update(EventRow).where(EventRow.event_id.in_(event_ids)).values(
            status=EventStatus.FAILED.value, error=error[-2000:]))


async def unfinished_events(engine: AsyncEngine, received_before: dt.datetime) -> list[str]:
    """Ids of events received before then and not processed: for the reconciliation."""
    async with engine.connect() as conn:
        return list((await conn.execute(sa.select(EventRow.event_id).where(
            EventRow.status != EventStatus.PROCESSED.value,
            EventRow.received_at < received_before).order_by(EventRow.received_at))).scalars())
