"""Stripe behind the billing interface: the only module that imports `stripe`.

Blocking Stripe calls run on a thread with a timeout and a few network
retries, so neither the server's event loop nor a worker waits forever.
Webhook signatures are checked with the library's own verifier against the
raw body (tolerance 300 s) before anything is parsed.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

import stripe

from server.billing.events import BadEvent, event_of, snapshot_of
from server.billing.machine import FINAL, Snapshot
from server.billing.provider import BadSignature, BillingUnavailable, CheckoutRequest

TOLERANCE = 300            # seconds a signature stays valid (Stripe's default)
TIMEOUT = 10               # seconds per HTTP request to Stripe
NETWORK_RETRIES = 2
HOSTED_ORIGINS = ("https://checkout.stripe.com", "https://billing.stripe.com")   # Checkout, portal
SUBSCRIPTION_EVENTS = frozenset({"checkout.session.completed", "invoice.paid", "invoice.payment_failed"})


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class StripeBilling:
    def __init__(self, secret_key: str, price: str, webhook_secret: str,
                 api_base: str | None = None) -> None:
        self.price = price
        self.webhook_secret = webhook_secret
        # A local Stripe (LS_STRIPE_API_BASE) serves its hosted pages from its own origin.
        self.hosted_origins = HOSTED_ORIGINS + ((origin(api_base),) if api_base else ())
        self.client = stripe.StripeClient(
            secret_key, base_addresses={"api": api_base} if api_base else None,
            max_network_retries=NETWORK_RETRIES, http_client=stripe.RequestsClient(timeout=TIMEOUT))

    def verify_webhook(self, body: bytes, signature: str | None) -> None:
        try:
            stripe.WebhookSignature.verify_header(body, signature, self.webhook_secret, TOLERANCE)
        except stripe.SignatureVerificationError as exc:
            raise BadSignature(f"Stripe-Signature: {exc.user_message or exc}") from None
        except UnicodeDecodeError:
            raise BadSignature("Stripe-Signature: the body is not UTF-8") from None
        # The library refuses old signatures only; one dated far ahead would be replayable for as long.
        signed_at = int(dict(part.split("=", 1) for part in signature.split(",") if "=" in part)["t"])
        if signed_at > time.time() + TOLERANCE:
            raise BadSignature("Stripe-Signature: timestamp is in the future, beyond the tolerance")

    async def _call(self, what: str, func, *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(func, *args, **kwargs)
        except stripe.StripeError as exc:
            raise BillingUnavailable(f"Stripe could not {what}: {exc.user_message or type(exc).__name__}"
                                     ) from exc

    async def checkout_url(self, request: CheckoutRequest) -> str:
        params: dict[str, Any] = {
            "mode": "subscription",
            "line_items": [{"price": self.price, "quantity": 1}],
            "client_reference_id": request.user_id,
            "subscription_data": {"metadata": {"user_id": request.user_id}},
            "success_url": request.success_url,
            "cancel_url": request.cancel_url,
        }
        if request.customer_id:
            params["customer"] = request.customer_id
        elif request.email:
            params["customer_email"] = request.email
        session = await self._call("start a checkout", self.client.v1.checkout.sessions.create,
                                   params, {"idempotency_key": request.idempotency_key})
        return session.url

    async def portal_url(self, customer_id: str, return_url: str) -> str:
        session = await self._call("open the billing portal",
                                   self.client.v1.billing_portal.sessions.create,
                                   {"customer": customer_id, "return_url": return_url})
        return session.url

    async def subscription(self, subscription_id: str) -> Snapshot:
        observed_at = time.time()     # before the read: what we get is at least this new
        obj = await self._call("read the subscription", self.client.v1.subscriptions.retrieve,
                               subscription_id)
        return snapshot_of(obj.to_dict(), observed_at)

    async def recent_subscriptions(self, since: float) -> list[Snapshot]:
        events = await self._call("list events", self._events_since, int(since))
        ids = []
        for raw in events:
            try:
                event = event_of(raw)
            except BadEvent:
                continue
            if event.subscription_id and (event.type.startswith("customer.subscription.")
                                          or event.type in SUBSCRIPTION_EVENTS):
                ids.append(event.subscription_id)
        return [await self.subscription(sub_id) for sub_id in dict.fromkeys(ids)]

    async def cancel_subscription(self, subscription_id: str) -> None:
        try:
            current = await self.subscription(subscription_id)
        except BillingUnavailable as exc:
            if getattr(exc.__cause__, "code", None) == "resource_missing":
                return               # gone at Stripe: nothing bills any more
            raise
        if current.status in FINAL:
            return                   # a retried job, or the learner canceled first
        # Stripe's defaults: no final invoice, no proration.
        await self._call("cancel the subscription", self.client.v1.subscriptions.cancel,
                         subscription_id)

    def _events_since(self, since: int) -> list[dict[str, Any]]:
        listed = self.client.v1.events.list({"created": {"gte": since}, "limit": 100})
        return [event.to_dict() for event in listed.auto_paging_iter()]
