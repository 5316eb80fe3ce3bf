"""Billing over HTTP: Stripe's webhook, the pricing page, checkout, the billing page and portal."""
from __future__ import annotations

import re
import secrets
import time

import tornado.web

from server.learning import access
from server.billing.events import BadEvent
from server.billing.intake import Intake, NotQueued
from server.billing.provider import BadSignature, BillingProvider, BillingUnavailable, CheckoutRequest
from server.handlers.base import CSP, BaseHandler, Common, json_response
from server.store import subscriptions

_ATTEMPT = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
NOT_CONFIGURED = "Billing is not configured on this server."


class StripeWebhookHandler(BaseHandler):
    """POST /stripe/webhook: Stripe signs its requests, so this alone is exempt from XSRF."""
    route = "stripe_webhook"

    def initialize(self, common: Common, intake: Intake | None) -> None:
        super().initialize(common)
        self.intake = intake

    def check_xsrf_cookie(self) -> None:
        """The Stripe-Signature check in post() stands in for it."""

    def wants_json(self) -> bool:
        return True

    def on_finish(self) -> None:
        super().on_finish()
        self.common.metrics.observe_webhook(self.get_status(), self.request.request_time())

    async def post(self) -> None:
        if self.intake is None:
            raise tornado.web.HTTPError(404, NOT_CONFIGURED)
        try:
            receipt = await self.intake.receive(self.request.body,
                                                self.request.headers.get("Stripe-Signature"))
        except (BadSignature, BadEvent) as exc:
            raise tornado.web.HTTPError(400, str(exc)) from None
        except NotQueued:
            raise tornado.web.HTTPError(503, "The event is stored but could not be queued; "
                                             "deliver it again.") from None
        json_response(self, {"received": True, "receipt": receipt.value})


class BillingPage(BaseHandler):
    def initialize(self, common: Common, billing: BillingProvider | None) -> None:
        super().initialize(common)
        self.billing = billing
        if billing is not None:   # its forms end on the provider's pages (a redirect counts)
            self.set_header("Content-Security-Policy", CSP.replace(
                "form-action 'self'", "form-action 'self' " + " ".join(billing.hosted_origins)))

    def base_url(self) -> str:
        return f"{self.request.protocol}://{self.request.host}"

    def provider(self) -> BillingProvider:
        if self.billing is None:
            raise tornado.web.HTTPError(404, NOT_CONFIGURED)
        return self.billing

    async def subscription(self):
        user = self.user or await self.load_user()
        return None if user is None else await subscriptions.get(self.common.engine, user.id)

    def is_subscribed(self, sub) -> bool:
        return sub is not None and access.subscribed(sub.status, sub.current_period_start,
                                                     sub.updated_at, time.time(),
                                                     self.settings_.billing_grace_days)


class PricingHandler(BillingPage):
    route = "pricing"

    async def get(self) -> None:
        sub = await self.subscription()
        self.set_header("Cache-Control", "private, no-store")
        self.render("pricing.html", configured=self.billing is not None,
                    subscribed=self.is_subscribed(sub), attempt=secrets.token_urlsafe(16))


class CheckoutHandler(BillingPage):
    """POST /billing/checkout: a Checkout session made server-side, then off to Stripe's page."""
    route = "checkout"

    async def post(self) -> None:
        billing = self.provider()
        attempt = self.get_body_argument("attempt", "")
        if not _ATTEMPT.match(attempt):
            raise tornado.web.HTTPError(400, "The form is missing its attempt id; reload the pricing page.")
        user = await self.ensure_user()
        sub = await subscriptions.get(self.common.engine, user.id)
        if self.is_subscribed(sub):
            self.redirect("/billing")
            return
        request = CheckoutRequest(
            user_id=user.id, email=user.email, customer_id=sub.stripe_customer_id if sub else None,
            success_url=f"{self.base_url()}/billing?checkout=done",
            cancel_url=f"{self.base_url()}/pricing",
            idempotency_key=f"checkout-{user.id}-{attempt}")   # a double submit: one session
        try:
            url = await billing.checkout_url(request)
        except BillingUnavailable as exc:
            raise tornado.web.HTTPError(502, str(exc)) from None
        self.redirect(url)


class BillingHandler(BillingPage):
    route = "billing"

    async def get(self) -> None:
        sub = await self.subscription()
        self.set_header("Cache-Control", "private, no-store")
        self.render("billing.html", configured=self.billing is not None, subscription=sub,
                    subscribed=self.is_subscribed(sub),
                    just_paid=self.get_query_argument("checkout", "") == "done")


class PortalHandler(BillingPage):
    """POST /billing/portal: Stripe's customer portal for cards, invoices and cancelling."""
    route = "billing_portal"

    async def post(self) -> None:
        billing = self.provider()
        sub = await self.subscription()
        if sub is None or not sub.stripe_customer_id:
            raise tornado.web.HTTPError(404, "You have no subscription to manage yet.")
        try:
            url = await billing.portal_url(sub.stripe_customer_id, f"{self.base_url()}/billing")
        except BillingUnavailable as exc:
            raise tornado.web.HTTPError(502, str(exc)) from None
        self.redirect(url)


def routes(common: Common, billing: BillingProvider | None, intake: Intake | None) -> list[tuple]:
    pages = {"common": common, "billing": billing}
    return [
        (r"/stripe/webhook", StripeWebhookHandler, {"common": common, "intake": intake}),
        (r"/pricing", PricingHandler, pages),
        (r"/billing", BillingHandler, pages),
        (r"/billing/checkout", CheckoutHandler, pages),
        (r"/billing/portal", PortalHandler, pages),
    ]
