"""The admin users and billing pages, and access granted by hand: the pure rules on values, and
a real server where a learner with a grant really runs a paid lesson (local sandbox), loses it
when the grant is revoked, and the audit log says who did what and when."""
from __future__ import annotations

import datetime as dt
import re

import pytest
import tornado.httpclient
import tornado.websocket

from server import db

from server.learning import access
from server.admin import users
from server.admin.users import UserLine
from server.handlers.admin_runs import BadFilter
from server.store import accounts, subscriptions
from tests.accounts_support import Client, text
from tests.billing_support import event_body
from tests.test_accounts_http import signed_up
from tests.test_exercise_ws import TOKEN, Page, serve_course

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.timezone.utc)


def line(**fields) -> UserLine:
    base = dict(id="u" * 32, email="ada@example.org", is_admin=False, created_at=NOW, status=None,
                period_start=None, updated_at=None, period_end=None, granted_until=None)
    return UserLine(**{**base, **fields})


def test_a_grant_opens_paid_lessons_until_its_end_and_not_after():
    end = NOW + dt.timedelta(days=1)
    assert access.paid_access(False, end, NOW.timestamp())
    assert not access.paid_access(False, end, end.timestamp())          # ends at its time
    assert not access.paid_access(False, None, NOW.timestamp())
    assert access.paid_access(True, None, NOW.timestamp())
    assert access.paid_access(True, NOW - dt.timedelta(days=1), NOW.timestamp())


def test_the_access_column_says_why():
    now = NOW.timestamp()
    assert users.access_state(line(), now, 3) == "free"
    assert users.access_state(line(granted_until=NOW + dt.timedelta(hours=1)), now, 3) == \
        "paid: granted until 2026-11-29 13:00 UTC"
    assert users.access_state(line(granted_until=NOW), now, 3) == "free: grant ended"
    assert users.access_state(line(status="active", updated_at=NOW), now, 3) == \
        "paid: subscription active"
    assert users.access_state(line(status="canceled", updated_at=NOW), now, 3) == \
        "free: subscription canceled"
    assert line(is_admin=True).role.value == "admin" and line(email=None).role.value == "anonymous"


def test_grant_ends_are_read_from_the_form_and_checked():
    assert users.grant_until("2026-12-31", NOW) == dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc)
    assert users.grant_until("2026-12-01T10:00+01:00", NOW) == \
        dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.timezone.utc)
    for raw, words in (("", "give a date"), ("soon", "give a date"),
                       ("2026-11-28", "not in the future"), ("2040-01-01", "at most ten years")):
        with pytest.raises(BadFilter, match=words):
            users.grant_until(raw, NOW)


def test_the_users_list_reads_its_url():
    assert users.parse({}) == users.UsersQuery(None, "accounts", 1)
    assert users.parse({"q": " Ada@Example ", "role": "admins", "page": "3"}) == \
        users.UsersQuery("ada@example", "admins", 3)
    assert users.parse({"page": "3"}).offset == 2 * users.PAGE_SIZE
    for args, words in (({"role": "owners"}, "role 'owners'"), ({"sort": "x"}, "unknown parameter"),
                        ({"page": "0"}, "page must be")):
        with pytest.raises(BadFilter, match=words):
            users.parse(args)
    assert users.url({"q": "ada", "page": "2"}, page=3) == "/admin/users?q=ada&page=3"


def test_billing_events_are_the_users_own():
    mine = ("e1", "customer.subscription.updated", "processed",
            event_body("customer.subscription.updated", {"object": "subscription", "id": "sub_1",
                       "customer": "cus_A", "metadata": {"user_id": "u1"}}), NOW, NOW, None)
    by_customer = ("e2", "invoice.paid", "failed", event_body("invoice.paid", {
        "object": "invoice", "id": "in_1", "customer": "cus_A", "subscription": "sub_1"}),
        NOW, None, "boom")
    theirs = ("e3", "invoice.paid", "processed", event_body("invoice.paid", {
        "object": "invoice", "id": "in_2", "customer": "cus_B", "description": "u1 cus_A"}),
        NOW, NOW, None)
    broken = ("e4", "invoice.paid", "failed", "not json", NOW, None, None)
    found = users.events_of([mine, by_customer, theirs, broken], "u1", "cus_A")
    assert [(e.event_id, e.status, e.error) for e in found] == [("e1", "processed", None),
                                                                ("e2", "failed", "boom")]
    assert [e.event_id for e in users.events_of([mine, by_customer], "u1", None)] == ["e1"]


def cookie_header(client: Client) -> str:
    return "; ".join(f"{k}={v}" for k, v in client.cookies.items())


async def locked(site, learner: Client) -> bool:
    """Whether the paid lesson is locked for this learner: its page (402) and its socket (403)."""
    page = await learner.get("/lessons/paid")
    request = tornado.httpclient.HTTPRequest(site.base.replace("http", "ws") + "/lessons/paid/ws",
                                             headers={"Cookie": cookie_header(learner)})
    try:
        socket = await tornado.websocket.websocket_connect(request)
    except tornado.httpclient.HTTPClientError as exc:
        assert exc.code == 403 and page.code == 402, (exc.code, page.code)
        return True
    socket.close()
    assert page.code == 200
    return False


async def test_a_granted_learner_runs_a_paid_lesson_until_the_grant_is_revoked(tmp_path, make_settings):
    async with serve_course(tmp_path, make_settings) as site:
        engine = db.create_engine(make_settings(LS_LESSONS_DIR=str(tmp_path / "lessons")))
        try:
            learner = await signed_up(site.base, engine)
            admin = Client(site.base)
            assert (await admin.post("/admin/login", {"token": TOKEN})).code == 302
            listing = text(await admin.get("/admin/users?q=ADA"))
            user_id = re.search(r'href="/admin/users/([0-9a-f]{32})"', listing)[1]
            assert "<td>learner</td><td>free</td>" in listing
            assert await locked(site, learner)

            assert (await admin.post(f"/admin/users/{user_id}/grant", {"until": "2026-11-01"})).code == 400
            forged = await admin.post(f"/admin/users/{user_id}/grant", {"until": "2099-01-01"},
                                      xsrf=False)
            assert forged.code == 403 and await locked(site, learner)
            until = (dt.date.today() + dt.timedelta(days=30)).isoformat()
            granted = await admin.post(f"/admin/users/{user_id}/grant",
                                       {"until": until, "reason": "conference speaker"})
            assert granted.code == 302 and granted.headers["Location"] == f"/admin/users/{user_id}"

            page = await Page.open(site, "paid", cookie=cookie_header(learner))
            result, _ = await page.run("x", "print(1)")
            assert result["verdict"]["passed"] is True
            assert "paid: granted until" in text(await admin.get("/admin/users?q=ada"))

            assert (await admin.post(f"/admin/users/{user_id}/revoke", xsrf=False)).code == 403
            assert (await admin.post(f"/admin/users/{user_id}/revoke")).code == 302
            await page.send(type="run", run="r2", exercise="x", code="print(1)")
            refused, _ = await page.until("error")
            assert "locked for you now" in refused["message"]
            assert await locked(site, learner)
            assert (await admin.post(f"/admin/users/{user_id}/revoke")).code == 404

            body = text(await admin.get(f"/admin/users/{user_id}"))
            audit = body.split('id="audit"', 1)[1]
            actions = re.findall(r"<td>(API token)</td><td>([\w-]+)</td><td>([^<]*)</td>", audit)
            # A date grants through that whole day (UTC): the grant ends at the next midnight.
            assert actions == [("API token", "revoke-access", "-"),
                               ("API token", "grant-access",
                                f"until {next_day(until)}T00:00:00+00:00: conference speaker")]
            assert len(re.findall(r'<td class="when"><time datetime="', audit)) == 2
            assert "No access granted by hand." in body and 'href="/admin/runs?user=' + user_id in body
        finally:
            await engine.dispose()


def next_day(date: str) -> str:
    return (dt.date.fromisoformat(date) + dt.timedelta(days=1)).isoformat()


async def test_a_users_page_lists_their_billing_events(db_engine):
    ada = await accounts.create(db_engine, "ada@example.org", None)
    await subscriptions.put(db_engine, subscriptions.Subscription(
        ada.id, "active", stripe_customer_id="cus_ada", updated_at=NOW))
    for n, (kind, obj) in enumerate((
            ("checkout.session.completed", {"object": "checkout.session", "id": "cs_1",
                                            "client_reference_id": ada.id, "customer": "cus_ada"}),
            ("invoice.paid", {"object": "invoice", "id": "in_1", "customer": "cus_ada"}),
            ("invoice.paid", {"object": "invoice", "id": "in_2", "customer": "cus_bob"}))):
        await subscriptions.receive_event(db_engine, f"evt_{n}", kind,
                                          event_body(kind, obj, event_id=f"evt_{n}"))
    found = await users.billing_events(db_engine, ada.id)
    assert sorted(e.event_id for e in found) == ["evt_0", "evt_1"]
    listed, more = await users.search(db_engine, users.UsersQuery("ADA".lower()))
    assert [u.email for u in listed] == ["ada@example.org"] and not more
    assert (await users.search(db_engine, users.UsersQuery("a_a")))[0] == []   # _ is not a wildcard
    assert (await users.one(db_engine, ada.id)).status == "active"
    for n in range(users.PAGE_SIZE):
        await accounts.create(db_engine, f"p{n}@example.org", None)
    first, more = await users.search(db_engine, users.UsersQuery())
    second, last = await users.search(db_engine, users.UsersQuery(page=2))
    assert (len(first), more, len(second), last) == (users.PAGE_SIZE, True, 1, False)
    assert len({u.id for u in first + second}) == users.PAGE_SIZE + 1          # no row twice
    assert [u.created_at for u in first + second] == sorted(
        (u.created_at for u in first + second), reverse=True)                   # newest first
