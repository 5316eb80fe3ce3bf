"""The billing interface the server and workers use, so that the provider can be swapped.

Values in, values out; the one implementation today is `stripe_shell.StripeBilling`.
"""
from __future__ import annotations

import dataclasses
from typing import Protocol

from server.billing.machine import Snapshot
from server.config import Settings


class BadSignature(ValueError):
    """A webhook whose signature is missing, malformed, wrong, stale or does not match the body."""


class BillingUnavailable(RuntimeError):
    """The provider could not be reached or refused; the message is safe to show."""


@dataclasses.dataclass(frozen=True)
class CheckoutRequest:
    user_id: str
    email: str | None
    customer_id: str | None          # the learner's customer, once Stripe made one
    success_url: str
    cancel_url: str
    idempotency_key: str             # one per pricing page view: a double submit makes one session


class BillingProvider(Protocol):
    hosted_origins: tuple[str, ...]   # where checkout_url and portal_url send the browser

    def verify_webhook(self, body: bytes, signature: str | None) -> None:
        """Raise BadSignature unless `signature` signs exactly `body`, recently."""

    async def checkout_url(self, request: CheckoutRequest) -> str:
        """The provider's hosted page where the learner subscribes."""

    async def portal_url(self, customer_id: str, return_url: str) -> str:
        """The provider's page where a customer manages cards, invoices and cancellation."""

    async def subscription(self, subscription_id: str) -> Snapshot:
        """The subscription as the provider says now."""

    async def recent_subscriptions(self, since: float) -> list[Snapshot]:
        """Subscriptions created or changed since `since` (epoch seconds), for the reconciliation."""

    async def cancel_subscription(self, subscription_id: str) -> None:
        """End the subscription now (its account is deleted); one already ended or gone is done."""


def open_billing(settings: Settings) -> BillingProvider | None:
    """The configured provider, or None when billing is not configured."""
    if not settings.billing_configured:
        return None
    from server.billing.stripe_shell import StripeBilling
    return StripeBilling(settings.stripe_secret_key, settings.stripe_price,
                         settings.stripe_webhook_secret, settings.stripe_api_base)
