"""Deleting an account: the rows go, the learner's kernels close, its subscription is canceled.

The rows go first, in one transaction (server/store/accounts.delete). Then the
kernels this process holds for the learner are closed with a plain message
(the same closer that ends kernels when access ends), and the cancellation at
the billing provider is handed to a worker job, which retries while the
provider is away: the page never waits on a third party.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from server.billing.machine import FINAL, Status
from server.billing.watch import CloseKernels
from server.store import accounts, subscriptions
from server.store.subscriptions import Subscription

log = logging.getLogger("lessonserver.accounts")

CLOSED_MESSAGE = "This account was deleted, so its kernels were closed."

CancelSubscription = Callable[[str], Awaitable[None]]   # workers.queue Jobs.send_subscription_cancel


def subscription_to_cancel(row: Subscription | None) -> str | None:
    """The provider's subscription a deleted account leaves billing, if any (ended ones bill no more)."""
    if row is None or row.stripe_subscription_id is None:
        return None
    try:
        if Status(row.status) in FINAL:
            return None
    except ValueError:       # a status from before billing: cancel to be sure (a no-op if ended)
        pass
    return row.stripe_subscription_id


@dataclasses.dataclass(frozen=True)
class Deleted:
    kernels_closed: int
    subscription_canceling: bool      # a cancellation is queued
    cancel_failed: bool               # one was needed but could not be queued (logged for a person)


class AccountDeletion:
    def __init__(self, engine: AsyncEngine, close_kernels: CloseKernels,
                 cancel_subscription: CancelSubscription | None) -> None:
        self.engine = engine
        self.close_kernels = close_kernels
        self.cancel_subscription = cancel_subscription    # None: billing is not configured

    async def delete(self, user_id: str) -> Deleted:
        to_cancel = subscription_to_cancel(await subscriptions.get(self.engine, user_id))
        await accounts.delete(self.engine, user_id)
        closed = await self.close_kernels(user_id, CLOSED_MESSAGE)
        if to_cancel is None or self.cancel_subscription is None:
            return Deleted(closed, False, to_cancel is not None)
        try:
            await self.cancel_subscription(to_cancel)
        except Exception:     # the queue is away: the account is gone, the subscription is not
            log.exception("subscription of a deleted account NOT canceled; cancel it by hand",
                          extra={"fields": {"subscription": to_cancel}})
            return Deleted(closed, False, True)
        return Deleted(closed, True, False)
