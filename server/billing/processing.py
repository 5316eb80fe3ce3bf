"""Apply what Stripe says to the stored subscription: the shell around the state machine.

The event only says *that* something changed; the subscription is read anew
from the provider and applied only if it is newer than what is stored, so a
late `customer.subscription.updated` never reopens what `.deleted` closed.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import time

from sqlalchemy.ext.asyncio import AsyncEngine

from server.billing.events import WebhookEvent
from server.billing.machine import (AccessEnded, Effect, EventKind, Snapshot, Status,
                                    SubscriptionEvent, apply)
from server.billing.provider import BillingProvider
from server.store import subscriptions as store, users
from server.store.subscriptions import Subscription


class UnknownLearner(LookupError):
    """A subscription that names no learner of ours (no metadata, unknown customer)."""


def _utc(ts: float | None) -> dt.datetime | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.timezone.utc)


def _ts(value: dt.datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def snapshot_of_row(row: Subscription | None) -> Snapshot | None:
    """The machine's state for a stored row (rows from before billing have no snapshot time)."""
    if row is None or row.stripe_subscription_id is None:
        return None
    return Snapshot(row.stripe_subscription_id, row.stripe_customer_id or "", row.user_id,
                    Status(row.status), _ts(row.observed_at) or 0.0, _ts(row.subscription_created) or 0.0,
                    _ts(row.current_period_start), _ts(row.current_period_end))


def row_of(user_id: str, snapshot: Snapshot, access_ended_at: dt.datetime | None) -> Subscription:
    return Subscription(user_id, snapshot.status.value, _utc(snapshot.period_end), snapshot.customer_id,
                        snapshot.subscription_id, _utc(snapshot.period_start), _utc(snapshot.created),
                        _utc(snapshot.observed_at), access_ended_at)


async def apply_snapshot(engine: AsyncEngine, kind: EventKind, snapshot: Snapshot, grace_days: float,
                         invoice_id: str | None = None, user_id: str | None = None) -> tuple[Effect, ...]:
    """Store `snapshot` if it supersedes the learner's state; the effects to carry out."""
    user_id = snapshot.user_id or user_id
    if user_id is None and snapshot.customer_id:
        known = await store.get_by_customer(engine, snapshot.customer_id)
        user_id = known.user_id if known else None
    if user_id is None or await users.get(engine, user_id) is None:
        raise UnknownLearner(f"subscription {snapshot.subscription_id} of customer "
                             f"{snapshot.customer_id or '?'} names no learner of ours ({user_id})")
    snapshot = dataclasses.replace(snapshot, user_id=user_id)
    event = SubscriptionEvent(kind, snapshot, invoice_id)
    now = time.time()
    effects: tuple[Effect, ...] = ()

    def step(before: Subscription | None) -> Subscription | None:
        nonlocal effects
        state = snapshot_of_row(before)
        after, effects = apply(state, event, now, grace_days)
        if after is state or after is None:
            return before
        ended = _utc(now) if any(isinstance(e, AccessEnded) for e in effects) else \
            (before.access_ended_at if before else None)
        return row_of(user_id, after, ended)

    await store.transition(engine, user_id, step)
    return effects


async def process_event(engine: AsyncEngine, provider: BillingProvider, event: WebhookEvent,
                        grace_days: float) -> tuple[Effect, ...]:
    """The effects of one verified webhook event (none for types we do not act on)."""
    if event.kind is None or event.subscription_id is None:
        return ()
    snapshot = await provider.subscription(event.subscription_id)
    return await apply_snapshot(engine, event.kind, snapshot, grace_days, event.invoice_id,
                                event.user_id)
