"""Sign-up, confirmation, log-in and out, links, the account page and admin access over real HTTP
against the real server (embedded mode; the main flow on Postgres too)."""
from __future__ import annotations

import asyncio
import time
import urllib.parse

import pytest
import sqlalchemy as sa
import tornado.web

from server import db
from server.accounts import passwords
from server.handlers.accounts import BAD_LOGIN
from server.mail.reminders import unsubscribe_token
from server.models import User
from server.store import accounts, progress, sessions, users
from tests.accounts_support import Client, arrived, emailed, link, same_page, text
from tests.test_pages import start

SECRET = "test-cookie-secret"
PASSWORD = "correct horse"


async def open_site(make_settings, **env):
    settings = make_settings(LS_COOKIE_SECRET=SECRET, **env)
    if settings.database_url:
        await asyncio.to_thread(db.upgrade, settings)
    server, stop, task = await start(settings)
    engine = db.create_engine(settings)
    return server.base, engine, (stop, task, engine)


async def close_site(handles) -> None:
    stop, task, engine = handles
    await engine.dispose()
    stop.set()
    await asyncio.wait_for(task, 15)


@pytest.fixture(params=["sqlite", "postgres"])
async def site(request, make_settings):
    env = {"LS_DATABASE_URL": request.getfixturevalue("fresh_pg_url")} \
        if request.param == "postgres" else {}
    base, engine, handles = await open_site(make_settings, **env)
    yield base, engine
    await close_site(handles)


@pytest.fixture
async def sqlite_site(make_settings, request):
    env = getattr(request, "param", {})
    base, engine, handles = await open_site(make_settings, **env)
    yield base, engine
    await close_site(handles)


async def signed_up(base, engine, email="ada@example.org", client=None) -> Client:
    """A browser that signed up and confirmed its address (so it is signed in)."""
    client = client or Client(base)
    response = await client.post("/signup", {"email": email, "password": PASSWORD})
    assert response.code == 200 and "Check your inbox" in text(response)
    path = await link(engine, email, "verify")
    assert (await client.get(path)).code == 200
    token = path.split("token=", 1)[1]
    response = await client.post("/verify", {"token": token})
    assert response.code == 302, text(response)
    return client


async def logged_in(base, email, password=PASSWORD, user_agent="test-client") -> Client:
    client = Client(base, user_agent)
    response = await client.post("/login", {"email": email, "password": password})
    assert response.code == 302, text(response)
    return client


async def test_sign_up_confirm_log_out_and_in_again(site):
    base, engine = site
    anonymous = await users.create_anonymous(engine)
    await progress.record(engine, anonymous.id, "intro", "hello", True, "print('hi')")
    client = Client(base)
    client.cookies["ls_user"] = tornado.web.create_signed_value(SECRET, "ls_user", anonymous.id).decode()
    assert (await client.get("/account")).headers["Location"].startswith("/login")
    await signed_up(base, engine, client=client)

    session = client.morsels["ls_session"]
    assert session["httponly"] and session["samesite"] == "Lax" and not session["secure"]
    page = await client.get("/account")
    assert page.code == 200 and "ada@example.org" in text(page)
    account = await accounts.by_email(engine, "ada@example.org")
    assert account.verified
    assert [(r.exercise_id, r.attempts) for r in await progress.get_for_user(engine, account.id)] \
        == [("hello", 1)]                                   # the anonymous learner's progress
    assert await users.get(engine, anonymous.id) is None
    assert len(await emailed(engine, "ada@example.org", "welcome")) == 1

    token = (await link(engine, "ada@example.org", "verify")).split("token=", 1)[1]
    assert (await client.post("/verify", {"token": token})).code == 400     # used once already

    first_session = client.cookies["ls_session"]
    assert (await client.post("/logout")).code == 302
    assert "ls_session" not in client.cookies
    assert (await client.get("/account")).code == 302
    replay = Client(base)
    replay.cookies["ls_session"] = first_session
    assert (await replay.get("/account")).code == 302       # the ended session is dead

    again = await logged_in(base, "ada@example.org")
    assert again.cookies["ls_session"] != first_session     # a new session at every log-in
    assert (await again.get("/account")).code == 200
    catalog = text(await again.get("/"))
    assert "ada@example.org" in catalog and "Log out" in catalog


async def test_wrong_password_and_unknown_address_read_the_same(sqlite_site):
    base, engine = sqlite_site
    await signed_up(base, engine)
    client = Client(base)
    wrong = await client.post("/login", {"email": "ada@example.org", "password": "wrong horse"})
    unknown = await client.post("/login", {"email": "nobody@example.org", "password": "wrong horse"})
    assert wrong.code == unknown.code == 400
    assert BAD_LOGIN.split(".")[0] in text(wrong)
    assert same_page(wrong, unknown, "ada@example.org", "nobody@example.org")
    assert "ls_session" not in client.cookies


async def test_signing_up_with_a_taken_address_changes_nothing_and_tells_its_owner(sqlite_site):
    base, engine = sqlite_site
    await signed_up(base, engine)
    intruder = Client(base)
    response = await intruder.post("/signup", {"email": "Ada@Example.org", "password": "my password"})
    fresh = await Client(base).post("/signup", {"email": "bob@example.org", "password": "bob's password"})
    assert response.code == fresh.code == 200
    assert same_page(response, fresh, "ada@example.org", "bob@example.org")
    assert "ls_session" not in intruder.cookies
    assert len(await arrived(engine, "ada@example.org", "already")) == 1
    await logged_in(base, "ada@example.org")                 # the old password still works
    bad = await Client(base).post("/login", {"email": "ada@example.org", "password": "my password"})
    assert bad.code == 400


async def test_an_unconfirmed_account_cannot_log_in_until_its_link_is_used(sqlite_site):
    base, engine = sqlite_site
    client = Client(base)
    await client.post("/signup", {"email": "ada@example.org", "password": PASSWORD})
    response = await client.post("/login", {"email": "ada@example.org", "password": PASSWORD})
    assert response.code == 400 and "ls_session" not in client.cookies


async def test_every_form_needs_its_xsrf_token(sqlite_site):
    base, engine = sqlite_site
    client = Client(base)
    for path in ("/signup", "/login", "/logout", "/login/link", "/password/reset", "/account/delete"):
        response = await client.post(path, {"email": "ada@example.org", "password": PASSWORD},
                                     xsrf=False)
        assert response.code == 403, path


async def test_malformed_input_is_named(sqlite_site):
    base, _ = sqlite_site
    response = await Client(base).post("/signup", {"email": "ada", "password": PASSWORD})
    assert response.code == 400 and "Email: enter an address" in text(response)
    response = await Client(base).post("/signup", {"email": "ada@example.org", "password": "short"})
    assert response.code == 400 and "Password: use at least 8" in text(response)


@pytest.mark.parametrize("sqlite_site", [{"LS_AUTH_PER_IP": "3/60"}], indirect=True)
async def test_log_in_and_sign_up_are_rate_limited_per_address(sqlite_site):
    base, _ = sqlite_site
    client = Client(base)
    for _ in range(3):
        response = await client.post("/login", {"email": "ada@example.org", "password": "wrong"})
        assert response.code == 400
    for path in ("/login", "/signup", "/login/link", "/password/reset"):
        response = await client.post(path, {"email": "bob@example.org", "password": PASSWORD})
        assert response.code == 429, path
        assert int(response.headers["Retry-After"]) >= 1


@pytest.mark.parametrize("sqlite_site", [{"LS_AUTH_PER_ACCOUNT": "2/60"}], indirect=True)
async def test_guesses_at_one_address_are_limited_from_anywhere(sqlite_site):
    base, _ = sqlite_site
    for _ in range(2):
        assert (await Client(base).post("/login", {"email": "ada@example.org",
                                                   "password": "wrong"})).code == 400
    assert (await Client(base).post("/login", {"email": "ada@example.org",
                                               "password": "wrong"})).code == 429
    assert (await Client(base).post("/login", {"email": "bob@example.org",
                                               "password": "wrong"})).code == 400


async def test_magic_link_signs_in_once_and_unknown_addresses_get_no_email(sqlite_site):
    base, engine = sqlite_site
    await signed_up(base, engine)
    client = Client(base)
    known = await client.post("/login/link", {"email": "ada@example.org"})
    unknown = await client.post("/login/link", {"email": "nobody@example.org"})
    assert same_page(known, unknown, "ada@example.org", "nobody@example.org")
    path = await link(engine, "ada@example.org", "magic")
    assert await emailed(engine, "nobody@example.org", "magic") == []
    assert (await Client(base).get(path)).code == 200    # a mail scanner's GET uses nothing up
    token = path.split("token=", 1)[1]
    assert (await client.post("/login/link/open", {"token": token})).code == 302
    assert (await client.get("/account")).code == 200
    assert (await Client(base).post("/login/link/open", {"token": token})).code == 400
    assert (await Client(base).get(path)).code == 400


async def test_password_reset_sets_a_new_password_and_ends_every_session(sqlite_site):
    base, engine = sqlite_site
    await signed_up(base, engine)
    elsewhere = await logged_in(base, "ada@example.org")
    client = Client(base)
    await client.post("/password/reset", {"email": "ada@example.org"})
    token = (await link(engine, "ada@example.org", "reset")).split("token=", 1)[1]
    short = await client.post("/password/reset/open", {"token": token, "password": "short"})
    assert short.code == 400                                  # and the token is still good
    done = await client.post("/password/reset/open", {"token": token, "password": "a new password"})
    assert done.code == 302 and (await client.get("/account")).code == 200
    assert (await elsewhere.get("/account")).code == 302
    await logged_in(base, "ada@example.org", "a new password")
    assert (await Client(base).post("/login", {"email": "ada@example.org",
                                               "password": PASSWORD})).code == 400
    again = await Client(base).post("/password/reset/open", {"token": token, "password": "x" * 9})
    assert again.code == 400


async def test_account_page_logs_out_other_sessions_and_changes_the_password(sqlite_site):
    base, engine = sqlite_site
    first = await signed_up(base, engine)
    second = await logged_in(base, "ada@example.org", user_agent="second-browser")
    page = text(await first.get("/account"))
    assert "second-browser" in page and "(this one)" in page
    assert (await first.post("/account/sessions")).code == 200
    assert (await second.get("/account")).code == 302
    assert (await first.get("/account")).code == 200
    third = await logged_in(base, "ada@example.org")
    wrong = await first.post("/account/password", {"current": "nope", "password": "a new password"})
    assert wrong.code == 400
    changed = await first.post("/account/password", {"current": PASSWORD, "password": "a new password"})
    assert changed.code == 200 and "1 other session" in text(changed)
    assert (await third.get("/account")).code == 302
    await logged_in(base, "ada@example.org", "a new password")


async def test_deleting_the_account_removes_its_progress_and_signs_out(sqlite_site):
    base, engine = sqlite_site
    client = await signed_up(base, engine)
    account = await accounts.by_email(engine, "ada@example.org")
    await progress.record(engine, account.id, "intro", "hello", True, "x")
    assert (await client.post("/account/delete", {"current": "wrong"})).code == 400
    response = await client.post("/account/delete", {"current": PASSWORD})
    assert response.code == 200 and "deleted" in text(response)
    assert await accounts.by_email(engine, "ada@example.org") is None
    assert await progress.get_for_user(engine, account.id) == []
    assert await sessions.of_user(engine, account.id) == []
    assert (await client.get("/account")).code == 302


async def test_admin_pages_take_an_admin_session_and_show_the_outbox(sqlite_site):
    base, engine = sqlite_site
    learner = await signed_up(base, engine)
    assert (await learner.get("/admin/outbox")).headers["Location"].startswith("/admin/login")
    admin = await accounts.make_admin(engine, "root@example.org")
    await accounts.set_password(engine, admin.id, await passwords.hash_password(PASSWORD))
    client = await logged_in(base, "root@example.org")
    outbox = await client.get("/admin/outbox")
    assert outbox.code == 200
    assert "ada@example.org" in text(outbox) and "/verify?token=" in text(outbox)
    assert (await client.get("/admin/runs")).code == 200


@pytest.mark.parametrize("sqlite_site", [{"LS_SECURE_COOKIES": "1"}], indirect=True)
async def test_session_cookie_is_secure_when_asked(sqlite_site):
    base, engine = sqlite_site
    client = await signed_up(base, engine)
    assert client.morsels["ls_session"]["secure"]


async def test_log_in_and_signed_in_page_timings(sqlite_site):
    """Prints p50/p95 of a successful log-in (one argon2id check) and of a signed-in page."""
    base, engine = sqlite_site
    await signed_up(base, engine)
    logins, pages = [], []
    for _ in range(20):
        client = Client(base)
        await client.get("/login")
        started = time.perf_counter()
        response = await client.post("/login", {"email": "ada@example.org", "password": PASSWORD})
        logins.append(time.perf_counter() - started)
        assert response.code == 302
        started = time.perf_counter()
        assert (await client.get("/account")).code == 200
        pages.append(time.perf_counter() - started)

    def p(samples, q):
        return sorted(samples)[int(q * (len(samples) - 1))] * 1000
    print(f"log-in p50 {p(logins, .5):.0f} ms p95 {p(logins, .95):.0f} ms; "
          f"signed-in /account p50 {p(pages, .5):.1f} ms p95 {p(pages, .95):.1f} ms")
    assert p(logins, .5) < 1000


async def test_the_reminders_unsubscribe_link_works_without_signing_in(sqlite_site):
    base, engine = sqlite_site
    account = await accounts.create(engine, "ada@example.org", "h", verified=True)
    token = urllib.parse.quote(unsubscribe_token(SECRET, account.id), safe="")
    response = await Client(base).get(f"/unsubscribe?token={token}")
    assert response.code == 200 and "No more reminders" in text(response)
    async with engine.connect() as conn:
        off = (await conn.execute(sa.select(User.reminders_off_at)
                                  .where(User.id == account.id))).scalar_one()
    assert off is not None
    forged = urllib.parse.quote(unsubscribe_token("another secret", account.id), safe="")
    assert (await Client(base).get(f"/unsubscribe?token={forged}")).code == 400
    assert (await Client(base).get("/unsubscribe")).code == 400


async def test_a_new_address_takes_effect_once_its_link_is_used(sqlite_site):
    base, engine = sqlite_site
    client = await signed_up(base, engine)
    await signed_up(base, engine, "bob@example.org")
    other = await logged_in(base, "ada@example.org")
    wrong = await client.post("/account/email", {"email": "ada@new.example.org", "current": "nope"})
    assert wrong.code == 400
    asked = await client.post("/account/email", {"email": "Ada@New.example.org", "current": PASSWORD})
    taken = await client.post("/account/email", {"email": "bob@example.org", "current": PASSWORD})
    assert same_page(asked, taken, "ada@new.example.org", "bob@example.org")
    path = await link(engine, "ada@new.example.org", "change")
    assert (await accounts.by_email(engine, "ada@example.org")) is not None    # not yet
    token = path.split("token=", 1)[1]
    assert (await client.post("/account/email/open", {"token": token})).code == 302
    assert (await accounts.by_email(engine, "ada@new.example.org")) is not None
    assert await accounts.by_email(engine, "ada@example.org") is None
    assert (await other.get("/account")).code == 302                      # other sessions end
    assert "ada@new.example.org" in text(await client.get("/account"))
    await asyncio.sleep(0.3)
    assert await emailed(engine, "bob@example.org", "change") == []        # nothing to bob
    await logged_in(base, "ada@new.example.org")


async def test_a_signed_in_page_is_private_even_without_the_learner_cookie(sqlite_site):
    base, engine = sqlite_site
    client = await signed_up(base, engine)
    client.cookies.pop("ls_user")
    for path in ("/", "/lessons/values-and-printing"):
        page = await client.get(path)
        assert page.code == 200 and "ada@example.org" in text(page), path
        assert page.headers["Cache-Control"] == "private, no-cache", path
    anonymous = await Client(base).get("/")
    assert "ada@example.org" not in text(anonymous) and "Log in" in text(anonymous)
