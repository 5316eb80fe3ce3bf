"""Scheduled live events against the real server and real kernel pools (local sandbox): an admin
schedules one on its page (admins only, XSRF, audited), the lesson's pool grows ahead of the
start within the host's capacity, and shrinks when the event ends or is cancelled."""
from __future__ import annotations

import asyncio
import datetime as dt
import re
import time

import pytest

from kernels.manager import KernelManager
from kernels.plugins import discover
from kernels.sandbox import create_sandbox
from server import db
from server.admin import audit, live_events
from server.admin.live_events import BadEvent, LivePools, NewEvent
from tests.accounts_support import Client, text
from tests.test_accounts_http import close_site, open_site

TOKEN = "live-token-" + "x" * 20
LESSON = "values-and-printing"     # a python lesson of the bundled course
UTC = dt.timezone.utc
NOW = dt.datetime(2026, 12, 1, 17, 0, tzinfo=UTC)


def lessons(slug: str) -> bool:
    return slug == LESSON


def form(**changes: str) -> dict[str, str]:
    return {"starts_at": "2026-12-01T18:00", "minutes": "90", "lesson": LESSON,
            "learners": "200", **changes}


def test_the_form_is_read_in_utc_and_bad_fields_are_named():
    assert live_events.parse(form(), lessons, NOW) == NewEvent(
        dt.datetime(2026, 12, 1, 18, 0, tzinfo=UTC), 90, LESSON, 200)
    assert live_events.parse(form(starts_at="2026-12-01T19:00+01:00"), lessons, NOW).starts_at \
        == dt.datetime(2026, 12, 1, 18, 0, tzinfo=UTC)
    for bad, named in ((form(starts_at="tomorrow"), "starts_at"), (form(minutes="0"), "minutes"),
                       (form(minutes="2000"), "minutes"), (form(learners="many"), "learners"),
                       (form(lesson="nope"), "lesson"),
                       (form(starts_at="2026-12-01T15:00", minutes="60"), "already over")):
        with pytest.raises(BadEvent, match=named):
            live_events.parse(bad, lessons, NOW)


def pools(page: str) -> dict[str, tuple[int, int]]:
    """The admin page's pool table: plugin -> (wanted, ready)."""
    return {name: (int(wanted), int(ready)) for name, wanted, ready in re.findall(
        r'<tr class="pool" data-plugin="(\w+)"><td>\w+</td><td>(\d+)</td><td>(\d+)</td>', page)}


async def until(check, timeout: float, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(every)


async def test_an_admin_schedules_an_event_and_the_pool_grows_ahead_then_shrinks(make_settings):
    base, engine, handles = await open_site(
        make_settings, LS_API_TOKEN=TOKEN, LS_SANDBOX="local", LS_POOL_SIZE="0",
        LS_MAX_KERNELS="2", LS_LIVE_LEAD="2", LS_LIVE_EVERY="0.2")
    try:
        stranger = Client(base)
        assert (await stranger.get("/admin/live-events")).headers["Location"].startswith("/admin/login")
        refused = await stranger.post("/admin/live-events", form(), xsrf=True)
        assert refused.code == 302 and (await audit.recent(engine)) == []   # not an admin: nothing

        admin = Client(base)
        assert (await admin.post("/admin/login", {"token": TOKEN})).code == 302
        assert (await admin.post("/admin/live-events", form(), xsrf=False)).code == 403
        bad = await admin.post("/admin/live-events", form(learners="many"))
        assert bad.code == 400 and "learners: &#x27;many&#x27; is not a whole number" in text(bad)

        starts = dt.datetime.now(UTC).replace(microsecond=0) + dt.timedelta(seconds=5)
        scheduled = await admin.post("/admin/live-events", form(
            starts_at=starts.strftime("%Y-%m-%dT%H:%M:%S"), minutes="1", learners="5"))
        assert scheduled.code == 302
        page = text(await admin.get("/admin/live-events"))
        assert 'class="live-event"' in page and "Live events</a>" in page
        assert pools(page)["python"][0] == 0                # more than the lead time ahead

        async def wanted():
            return pools(text(await admin.get("/admin/live-events")))["python"][0] > 0
        assert await until(wanted, 10)
        grown_at = dt.datetime.now(UTC)
        assert starts - dt.timedelta(seconds=2.5) <= grown_at < starts   # ahead, not too early

        async def full():
            sizes = pools(text(await admin.get("/admin/live-events")))
            return sizes if sizes["python"] == (2, 2) else None
        sizes = await until(full, 30, every=0.3)
        assert sizes and all(v == (0, 0) for k, v in sizes.items() if k != "python")

        event_id = re.search(r'class="live-event" data-id="(\d+)"', page).group(1)
        assert (await admin.post(f"/admin/live-events/{event_id}/cancel")).code == 302

        async def shrunk():
            return pools(text(await admin.get("/admin/live-events")))["python"] == (0, 0)
        assert await until(shrunk, 10)
        actions = [entry.action for entry in await audit.recent(engine)]
        assert actions[:2] == ["live-event cancelled", "live-event scheduled"]
        assert (await admin.post(f"/admin/live-events/{event_id}/cancel")).code == 404
    finally:
        await close_site(handles)


async def test_the_pool_goes_back_to_normal_when_the_event_ends(make_settings):
    settings = make_settings(LS_SANDBOX="local", LS_POOL_SIZE="0", LS_MAX_KERNELS="3")
    await asyncio.to_thread(db.upgrade, settings)
    engine = db.create_engine(settings)
    manager = KernelManager(settings, create_sandbox(settings), discover())
    starts = dt.datetime.now(UTC).replace(microsecond=0) + dt.timedelta(hours=1)
    clock = [starts.timestamp() - 61]
    live = LivePools(engine, manager, lambda slug: "python", lead=60, every=60,
                     clock=lambda: clock[0])
    python = manager.pools["python"]
    try:
        await live_events.schedule(engine, NewEvent(starts, 1, LESSON, 10), "test")
        assert (await live.apply())["python"] == 0
        clock[0] = starts.timestamp() - 60          # the lead time before the start
        assert (await live.apply())["python"] == 3  # 10 wanted, 3 kernels on this host
        assert await python.wait_full(30) and python.ready == 3
        clock[0] = starts.timestamp() + 60          # the end
        assert await live.apply() == {name: 0 for name in manager.pools}
        assert python.ready == 0
    finally:
        await manager.close()
        await manager.sandbox.close()
        await engine.dispose()
