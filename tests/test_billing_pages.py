"""Pricing, checkout, billing page and portal over real HTTP; the paywall without billing settings.

localstripe has no Checkout sessions and no customer portal, so those two
Stripe calls go to a local recorder that answers as Stripe does; the real
stripe library makes the requests.
"""
from __future__ import annotations

import asyncio
import json
import re
import urllib.parse

import pytest
import tornado.httpclient
import tornado.httpserver
import tornado.netutil
import tornado.web

from server import db
from server.store import subscriptions, users
from tests.billing_support import BUNDLED, SECRET_KEY, WEBHOOK_SECRET, user_cookie
from tests.test_pages import start

COOKIE_SECRET = "pages-test-cookie-secret"


class StripeRecorder(tornado.web.RequestHandler):
    """POST /v1/checkout/sessions and /v1/billing_portal/sessions, answered like Stripe."""

    def initialize(self, seen: list) -> None:
        self.seen = seen

    def post(self, kind: str) -> None:
        form = {k: v[0] for k, v in urllib.parse.parse_qs(self.request.body.decode()).items()}
        self.seen.append((kind, dict(self.request.headers), form))
        port = self.request.host.rsplit(":", 1)[1]
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"id": f"{kind}_1", "object": kind.replace("/", "."),
                                "url": f"http://127.0.0.1:{port}/hosted/{kind}/{len(self.seen)}"}))


@pytest.fixture
async def recorder():
    seen: list = []
    app = tornado.web.Application([(r"/v1/(checkout/sessions|billing_portal/sessions)", StripeRecorder,
                                    {"seen": seen})])
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    yield f"http://127.0.0.1:{sockets[0].getsockname()[1]}", seen
    server.stop()


class Browser:
    """Cookies kept across requests, no redirects followed."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies: dict[str, str] = {}
        self.client = tornado.httpclient.AsyncHTTPClient()

    async def fetch(self, path: str, **kwargs) -> tornado.httpclient.HTTPResponse:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        response = await self.client.fetch(self.base + path, headers=headers, raise_error=False,
                                           follow_redirects=False, **kwargs)
        for cookie in response.headers.get_list("Set-Cookie"):
            name, value = cookie.split(";", 1)[0].split("=", 1)
            self.cookies[name] = value.strip('"')
        return response

    async def post_form(self, path: str, fields: dict[str, str]) -> tornado.httpclient.HTTPResponse:
        return await self.fetch(path, method="POST", body=urllib.parse.urlencode(fields))


async def paid_lesson(browser: Browser) -> str:
    lessons = json.loads((await browser.fetch("/api/lessons")).body)
    return next(lesson["url"] for course in lessons["courses"] for lesson in course["lessons"]
                if lesson["access"] == "paid")


def hidden(html: bytes, name: str) -> str:
    return re.search(rb'name="' + name.encode() + rb'" value="([^"]+)"', html).group(1).decode()


@pytest.fixture
async def site(make_settings, recorder):
    api_base, seen = recorder
    settings = make_settings(LS_LESSONS_DIR=str(BUNDLED), LS_STRIPE_SECRET_KEY=SECRET_KEY,
                             LS_STRIPE_PRICE="price_test", LS_STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
                             LS_STRIPE_API_BASE=api_base, LS_COOKIE_SECRET=COOKIE_SECRET)
    server, stop, task = await start(settings)
    engine = db.create_engine(settings)
    yield server.base, seen, engine
    await engine.dispose()
    stop.set()
    await asyncio.wait_for(task, 15)


async def test_checkout_is_made_server_side_with_an_idempotency_key(site):
    base, seen, engine = site
    browser = Browser(base)
    pricing = await browser.fetch("/pricing")
    assert pricing.code == 200 and b"Subscribe" in pricing.body
    form = {"_xsrf": hidden(pricing.body, "_xsrf"), "attempt": hidden(pricing.body, "attempt")}
    first = await browser.post_form("/billing/checkout", form)
    assert first.code == 302
    assert "/hosted/checkout/sessions/" in first.headers["Location"]
    kind, headers, params = seen[0]
    user_id = tornado.web.decode_signed_value(COOKIE_SECRET, "ls_user", browser.cookies["ls_user"]).decode()
    assert kind == "checkout/sessions"
    assert headers["Idempotency-Key"] == f"checkout-{user_id}-{form['attempt']}"
    assert headers["Authorization"] == f"Bearer {SECRET_KEY}"
    assert params["mode"] == "subscription"
    assert params["line_items[0][price]"] == "price_test"
    assert params["client_reference_id"] == user_id
    assert params["subscription_data[metadata][user_id]"] == user_id
    assert params["success_url"] == f"{base}/billing?checkout=done"
    assert params["cancel_url"] == f"{base}/pricing"
    again = await browser.post_form("/billing/checkout", form)       # a double submit
    assert again.code == 302 and seen[1][1]["Idempotency-Key"] == headers["Idempotency-Key"]

    no_attempt = await browser.post_form("/billing/checkout", {"_xsrf": form["_xsrf"]})
    assert no_attempt.code == 400 and b"attempt" in no_attempt.body
    no_xsrf = await browser.post_form("/billing/checkout", {"attempt": form["attempt"]})
    assert no_xsrf.code == 403
    assert len(seen) == 2


async def test_billing_page_links_to_the_customer_portal(site):
    base, seen, engine = site
    browser = Browser(base)
    await browser.fetch("/pricing")
    empty = await browser.fetch("/billing")
    assert b"You have no subscription" in empty.body
    user = await users.create_anonymous(engine)
    browser.cookies["ls_user"] = user_cookie(COOKIE_SECRET, user.id).split("=", 1)[1]
    await subscriptions.put(engine, subscriptions.Subscription(user.id, "active", None, "cus_42", "sub_42"))
    page = await browser.fetch("/billing")
    assert b"active" in page.body and b"/billing/portal" in page.body
    portal = await browser.post_form("/billing/portal", {"_xsrf": hidden(page.body, "_xsrf")})
    assert portal.code == 302 and "/hosted/billing_portal/sessions/" in portal.headers["Location"]
    kind, _, params = seen[-1]
    assert (kind, params["customer"], params["return_url"]) == ("billing_portal/sessions", "cus_42",
                                                                  f"{base}/billing")


async def test_the_paid_lock_links_to_pricing(site):
    base, _, _ = site
    browser = Browser(base)
    page = await browser.fetch(await paid_lesson(browser))
    assert page.code == 402 and b'href="/pricing"' in page.body


async def test_without_stripe_settings_paid_lessons_say_billing_is_not_configured(make_settings):
    server, stop, task = await start(make_settings(LS_LESSONS_DIR=str(BUNDLED)))
    try:
        browser = Browser(server.base)
        page = await browser.fetch(await paid_lesson(browser))
        assert page.code == 402 and b"billing is not configured" in page.body
        assert b'href="/pricing"' not in page.body
        assert b"Billing is not configured" in (await browser.fetch("/pricing")).body
        webhook = await browser.fetch("/stripe/webhook", method="POST", body="{}")
        assert webhook.code == 404 and b"not configured" in webhook.body
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
