"""The whole subscribe flow in real headless Chromium against a real `lessonserver serve` in
production mode: real Postgres, Redis, a `lessonserver worker`, aiosmtpd and localstripe.

Sign up (the confirmation link read from the SMTP server's inbox), open a paid lesson, see the
paywall, subscribe, run the lesson; then Stripe says the subscription was deleted and the lesson
locks again. Only Stripe's hosted Checkout page is stubbed (it cannot run here, and localstripe
has no Checkout): `CheckoutFront` answers the server's `POST /v1/checkout/sessions` as Stripe
does, and its "hosted page" does what Stripe does when a card is accepted: the customer and
subscription are made on localstripe, a signed `checkout.session.completed` is delivered to the
webhook, and the browser is sent to the success URL.
"""
from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import logging
import os
import threading
import time
import urllib.parse
import uuid

import pytest
import requests
from selenium.webdriver.common.by import By

from server.billing.watch import CLOSED_MESSAGE
from tests.accounts_support import LINK
from tests.billing_support import SECRET_KEY, WEBHOOK_SECRET, event_body, sign, stripe_client, subscribe
from server.app import run_server
from tests.test_billing_webhook import localstripe, plan, subscription_object  # noqa: F401
from tests.test_browser import ARTIFACTS, PAID, LessonPage, driver  # noqa: F401
from tests.test_browser_accounts import fill, wait
from tests.test_emails import smtp  # noqa: F401
from tests.test_trace_pipeline import WorkerProcess, wait_until
from tests.test_trace_support import fetch_all, fresh_postgres, migrate

PASSWORD = "correct horse"


class CheckoutFront:
    """Stripe's Checkout, as far as the server and the browser can see it, on loopback."""

    def __init__(self, localstripe_url: str, plan_id: str) -> None:
        self.stripe = stripe_client(localstripe_url)
        self.plan = plan_id
        self.sessions: dict[str, dict[str, str]] = {}
        self.webhook = ""                          # the served app's /stripe/webhook
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:             # the server, through the stripe library
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in urllib.parse.parse_qs(self.rfile.read(length).decode()).items()}
                assert self.path == "/v1/checkout/sessions", self.path
                assert self.headers["Authorization"] == f"Bearer {SECRET_KEY}"
                session_id = f"cs_test_{uuid.uuid4().hex[:12]}"
                front.sessions[session_id] = {**form, "idempotency_key": self.headers["Idempotency-Key"]}
                url = f"http://127.0.0.1:{self.server.server_address[1]}/hosted/{session_id}"
                self._answer(200, {"id": session_id, "object": "checkout.session", "url": url},
                             "application/json")

            def do_GET(self) -> None:              # the browser, sent to the hosted page
                session = front.sessions[self.path.rsplit("/", 1)[1]]
                front.pay(self.path.rsplit("/", 1)[1], session)
                self.send_response(303)
                self.send_header("Location", session["success_url"])
                self.end_headers()

            def _answer(self, status: int, body: dict, kind: str) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def pay(self, session_id: str, session: dict[str, str]) -> None:
        """What Stripe does when the card on its page is accepted."""
        user_id = session["subscription_data[metadata][user_id]"]
        sub = subscribe(self.stripe, self.plan, user_id)
        body = event_body("checkout.session.completed", {
            "object": "checkout.session", "id": session_id, "mode": "subscription",
            "client_reference_id": session["client_reference_id"], "customer": sub["customer"],
            "subscription": sub["id"], "status": "complete"})
        response = requests.post(self.webhook, data=body, timeout=10, headers={
            "Content-Type": "application/json", "Stripe-Signature": sign(body)})
        assert response.status_code == 200, response.text
        self.subscription = sub

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def site(tmp_path, pg_url, redis_server, make_settings, instance_name, localstripe, plan, smtp):
    if redis_server.proc is None:
        redis_server.start()
    course = tmp_path / "lessons" / "members"
    course.mkdir(parents=True)
    (course / "course.yaml").write_text("title: Members\ndescription: paid drills\n")
    (course / "members.md").write_text(PAID)
    front = CheckoutFront(localstripe.url, plan)
    with fresh_postgres(pg_url, prefix="subscribe") as db_url:
        migrate(db_url, make_settings)
        env = {"LS_DATABASE_URL": db_url, "LS_REDIS_URL": redis_server.url, "LS_SMTP_URL": smtp.url,
               "LS_STRIPE_SECRET_KEY": SECRET_KEY, "LS_STRIPE_PRICE": plan,
               "LS_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET, "LS_LESSONS_DIR": str(tmp_path / "lessons"),
               "LS_COOKIE_SECRET": "subscribe-test", "LS_INSTANCE": instance_name,
               "LS_SANDBOX": "local", "LS_POOL_SIZE": "0"}
        # The worker re-reads subscriptions from localstripe; the server's one Stripe call here
        # (the Checkout session) goes to the front.
        worker = WorkerProcess({"PATH": os.environ.get("PATH", ""), "LS_DATA_DIR": str(tmp_path / "w"),
                                "LS_LOG_LEVEL": "INFO", **env, "LS_STRIPE_API_BASE": localstripe.url},
                               tmp_path / "worker.log")
        worker.start()
        settings = make_settings(**env, LS_STRIPE_API_BASE=front.url)
        try:
            with serving_in_a_thread(settings) as base, closed_kernels() as closed:
                front.webhook = f"{base}/stripe/webhook"
                yield base, closed, front, db_url, smtp
        finally:
            worker.stop()
            front.close()


@contextlib.contextmanager
def serving_in_a_thread(settings):
    """The served app on an event loop of its own (Selenium's calls block this thread); a
    `lessonserver serve` subprocess would spend half a minute importing on the loaded host."""
    loop = asyncio.new_event_loop()
    started: list[int] = []
    stop = asyncio.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(run_server(settings, ready=started.append, stop=stop))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_until(lambda: started or not thread.is_alive(), 60, "the server to listen")
    assert started, "the server did not start"
    try:
        yield f"http://127.0.0.1:{started[0]}"
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)


@contextlib.contextmanager
def closed_kernels():
    """The reasons the server gave when it closed a learner's kernels (its log records)."""
    reasons: list[str] = []

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() == "kernels closed":
                reasons.append(getattr(record, "fields", {}).get("reason", ""))

    handler = Seen()
    logger = logging.getLogger("lessonserver.billing")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield reasons
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _confirm_link(smtp) -> str:
    wait_until(lambda: any(m["Subject"] == "Confirm your address" for m in smtp.messages), 30,
               "the confirmation email")
    message = next(m for m in smtp.messages if m["Subject"] == "Confirm your address")
    return LINK.search(message.get_body(("plain",)).get_content()).group(1)


def _screenshot(driver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / name))


def test_sign_up_subscribe_run_and_lock_again_when_stripe_deletes_the_subscription(site, driver):
    base, closed, front, db_url, smtp = site
    started = time.monotonic()
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    driver.get(base + "/signup")
    fill(driver, email="ada@example.org", password=PASSWORD)
    wait(driver, lambda d: "Check your inbox" in d.find_element(By.TAG_NAME, "h1").text)
    driver.get(base + _confirm_link(smtp))
    driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    wait(driver, lambda d: "ada@example.org" in d.find_element(By.CSS_SELECTOR, "nav.account").text)

    page = LessonPage(driver, base).open("members")              # the paywall
    assert "part of the paid course" in driver.find_element(By.TAG_NAME, "main").text
    assert driver.find_elements(By.CSS_SELECTOR, "section.exercise") == []
    _screenshot(driver, "subscribe-1-paywall.png")
    driver.find_element(By.LINK_TEXT, "Subscribe to open it").click()
    wait(driver, lambda d: d.current_url.endswith("/pricing"))
    driver.find_element(By.CSS_SELECTOR, "section.pricing form button[type=submit]").click()
    wait(driver, lambda d: "/billing?checkout=done" in d.current_url, 30)   # back from "Stripe"
    [session] = front.sessions.values()
    user_id = session["client_reference_id"]
    assert session["idempotency_key"].startswith(f"checkout-{user_id}-")
    assert session["customer_email"] == "ada@example.org"
    wait_until(lambda: fetch_all(db_url, "SELECT status FROM subscriptions WHERE user_id = %s",
                                 (user_id,)) == [("active",)], 30, "the worker to apply the checkout")

    page.open("members").ready()                                  # the lesson opens ...
    page.button("x", "run").click()
    assert page.banner("x", 30).startswith("✓")                  # ... and a run works
    _screenshot(driver, "subscribe-2-open-and-run.png")

    # Stripe ends the subscription (a card that kept failing, a cancellation in the portal).
    sub = front.subscription
    front.stripe.v1.subscriptions.cancel(sub["id"])
    body = event_body("customer.subscription.deleted",
                      subscription_object(sub["id"], "canceled", user_id, sub["customer"]))
    assert requests.post(f"{base}/stripe/webhook", data=body, timeout=10, headers={
        "Content-Type": "application/json", "Stripe-Signature": sign(body)}).status_code == 200
    wait_until(lambda: closed == [CLOSED_MESSAGE], 30,
               "the server to close the learner's kernel")           # the access watch, every 2 s
    page.wait(lambda d: d.find_element(By.CSS_SELECTOR, ".kernel-message").text == CLOSED_MESSAGE,
              10, "the open page told that its kernel was closed")  # at once, not at its next run
    page.button("x", "run").click()                               # the open page tries again
    page.wait(lambda d: "locked" in page.cell("x").text, 20, "the run refused on the open page")
    _screenshot(driver, "subscribe-3-locked-on-the-page.png")
    page.open("members")
    assert "part of the paid course" in driver.find_element(By.TAG_NAME, "main").text
    assert driver.find_elements(By.CSS_SELECTOR, "section.exercise") == []
    _screenshot(driver, "subscribe-4-paywall-again.png")
    wait_until(lambda: any(m["Subject"] == "Your subscription has ended" for m in smtp.messages), 30,
               "the email that says so")
    print(f"subscribe flow: {time.monotonic() - started:.1f} s in the browser")
