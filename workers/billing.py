"""Billing jobs: process stored Stripe events (and email the learners what they changed);
reconcile with Stripe once a day; cancel the subscription of a deleted account.

RQ calls these plain functions with ids only; each opens the server's own
async stack (the same tables and store modules) for the length of the job.
A job that raises is retried by RQ; the event is marked failed meanwhile, so
a redelivery of it (or the reconciliation) processes it again.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import traceback
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncEngine

from server import db
from server.billing import processing
from server.billing.events import parse_event
from server.billing.machine import Effect, EventKind
from server.billing.notices import notices_of
from server.billing.provider import BillingProvider, open_billing
from server.config import Settings
from server.store import accounts, subscriptions as store
from server.store.subscriptions import EventStatus
from workers import deps, emails

log = logging.getLogger("lessonserver.billing")
DAY = 86400
RECONCILE_WINDOW = 3 * DAY       # Stripe redelivers for up to 3 days; look back at least as far


def _provider(settings: Settings) -> BillingProvider:
    provider = open_billing(settings)
    if provider is None:
        raise RuntimeError("billing is not configured (LS_STRIPE_SECRET_KEY, LS_STRIPE_PRICE, "
                           "LS_STRIPE_WEBHOOK_SECRET)")
    return provider


@contextlib.asynccontextmanager
async def _opened(settings: Settings) -> AsyncIterator[tuple[AsyncEngine, BillingProvider]]:
    provider = _provider(settings)
    engine = db.create_engine(settings)
    try:
        yield engine, provider
    finally:
        await engine.dispose()


def process_events(event_ids: list[str]) -> dict[str, str]:
    """Apply stored webhook events, in order; returns each one's status. The webhook queues one
    job per batch it stored (one enqueue, not one per event). If any event fails, the job raises
    once the others are done, and RQ's retry skips those already processed."""
    return asyncio.run(_process_events(deps.current().settings, event_ids))


def process_event(event_id: str) -> str:
    """One event: for jobs queued before events were batched."""
    return process_events([event_id])[event_id]


async def _process_events(settings: Settings, event_ids: list[str]) -> dict[str, str]:
    statuses: dict[str, str] = {}
    failed: Exception | None = None
    async with _opened(settings) as (engine, provider):
        for event_id in event_ids:
            try:
                statuses[event_id] = await _process_event(settings, engine, provider, event_id)
            except Exception as exc:        # marked failed with its reason; the rest go on
                statuses[event_id], failed = EventStatus.FAILED.value, exc
    if failed is not None:
        raise failed
    return statuses


async def _process_event(settings: Settings, engine: AsyncEngine, provider: BillingProvider,
                         event_id: str) -> str:
    stored = await store.load_event(engine, event_id)
    if stored is None or stored.payload is None:
        return "unknown"            # its receipt was rolled back: Stripe delivers it again
    if stored.status is EventStatus.PROCESSED:
        return stored.status.value
    try:
        event = parse_event(stored.payload)
        effects = await processing.process_event(engine, provider, event,
                                                 settings.billing_grace_days)
        # Before it counts as processed: a queue that is away fails the job, and its retry
        # sends what it can again (at most once per trigger).
        await _send_emails(settings, engine, effects, event_id)
    except processing.UnknownLearner as exc:   # retrying now cannot help; a redelivery may
        await store.mark_failed(engine, event_id, str(exc))
        return EventStatus.FAILED.value
    except Exception:
        await store.mark_failed(engine, event_id, traceback.format_exc(limit=5))
        raise
    await store.mark_processed(engine, event_id)
    for effect in effects:   # access ends through the stored row; servers close kernels from it
        log.info("billing effect", extra={"fields": {"event": event_id, "effect": type(effect).__name__,
                                                     "user": effect.user_id}})
    return EventStatus.PROCESSED.value


async def _send_emails(settings: Settings, engine: AsyncEngine, effects: tuple[Effect, ...],
                       reported_by: str) -> int:
    """Email each learner what the effects tell them; returns how many were queued now."""
    notices = notices_of(effects, reported_by)
    if not notices:
        return 0
    sent = 0
    async with emails.job_mailer(settings, engine) as mailer:
        for notice in notices:
            account = await accounts.by_id(engine, notice.user_id)
            if account is None:             # no address (or deleted meanwhile): nobody to tell
                continue
            sent += await mailer.send(notice.kind, account.email, trigger=notice.trigger,
                                      user_id=notice.user_id)
    return sent


def reconcile() -> dict[str, int]:
    """Repair what webhooks missed: re-read recent subscriptions, re-run unfinished events."""
    return asyncio.run(_reconcile(deps.current().settings))


async def _reconcile(settings: Settings) -> dict[str, int]:
    counts = {"subscriptions": 0, "unknown": 0, "events": 0, "failed": 0}
    async with _opened(settings) as (engine, provider):
        for snapshot in await provider.recent_subscriptions(time.time() - RECONCILE_WINDOW):
            try:
                effects = await processing.apply_snapshot(engine, EventKind.RECONCILED, snapshot,
                                                          settings.billing_grace_days)
                counts["subscriptions"] += 1
                await _send_emails(settings, engine, effects,
                                   f"reconciled:{snapshot.subscription_id}:{snapshot.observed_at}")
            except processing.UnknownLearner:   # another site's, or a deleted account's
                counts["unknown"] += 1
        stale = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=10)
        for event_id in await store.unfinished_events(engine, stale):
            try:
                await _process_event(settings, engine, provider, event_id)
                counts["events"] += 1
            except Exception:                     # stays failed, with its reason, for a person
                log.exception("billing event failed again", extra={"fields": {"event": event_id}})
                counts["failed"] += 1
    log.info("billing reconciled", extra={"fields": counts})
    return counts


def cancel_subscription(subscription_id: str) -> str:
    """Cancel the subscription of a deleted account at the provider; raises (RQ retries) while the
    provider is away. Safe to run twice: an ended subscription is left as it is."""
    return asyncio.run(_cancel_subscription(deps.current().settings, subscription_id))


async def _cancel_subscription(settings: Settings, subscription_id: str) -> str:
    await _provider(settings).cancel_subscription(subscription_id)
    log.info("subscription canceled: account deleted", extra={"fields": {"subscription": subscription_id}})
    return "canceled"
