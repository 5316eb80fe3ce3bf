"""The runs pages made readable: parameters as values, sorting and paging in SQL, and the pages
over a real server with real traces."""
from __future__ import annotations

import re

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from server.admin import display, runs as view
from server.handlers.admin_runs import BadFilter
from tests.admin_support import FAILED, OK, TIMEOUT, admin_site, traced  # noqa: F401 (fixture)
from tests.accounts_support import text
from tests.test_trace_support import schema_url
from workers.trace_store import open_store


def test_a_limit_name_as_status_means_runs_stopped_by_that_limit():
    q = view.parse({"status": "timeout"})
    assert (q.status, q.limit) == ("limit", "timeout")
    assert view.parse({"status": "ok"}).limit is None


@pytest.mark.parametrize("args, words", [
    ({"status": "bogus"}, "status 'bogus' is not one we record; use one of died, error"),
    ({"sort": "code"}, "sort 'code': use one of requested"),
    ({"dir": "up"}, "dir 'up': use asc or desc"),
    ({"page": "0"}, "page must be a whole number 1 or more"),
    ({"size": "9999"}, "size must be a whole number from 1 to 200"),
    ({"since": "yesterday"}, "since must be an ISO 8601 time"),
    ({"client": "robot"}, "client 'robot': use lesson or api"),
    ({"colour": "red"}, "unknown parameter 'colour'"),
])
def test_bad_parameters_are_named_with_what_they_take(args, words):
    with pytest.raises(BadFilter) as caught:
        view.parse(args)
    assert words in str(caught.value)


def test_every_parameter_lives_in_the_url():
    args = {"user": "u1", "status": "timeout", "sort": "total", "dir": "asc", "page": "2"}
    assert view.url(args, page=3) == \
        "/admin/runs?user=u1&status=timeout&sort=total&dir=asc&page=3"
    assert view.url(args, page=None, user="") == "/admin/runs?status=timeout&sort=total&dir=asc"
    assert view.sort_url({"sort": "total", "dir": "desc"}, "total").endswith("sort=total&dir=asc")
    assert view.sort_url({"sort": "total", "dir": "asc"}, "total").endswith("sort=total&dir=desc")
    assert view.sort_url({}, "status").endswith("sort=status&dir=desc")
    q = view.parse({"page": "3", "size": "25"})
    assert (q.offset, q.size) == (50, 25)


def test_display_rules():
    assert display.ms(None) == "-" and display.ms(0) == "0 ms" and display.ms(1234.4) == "1,234 ms"
    assert display.ms(0.25) == "0.2 ms"
    assert display.utc_text("2026-11-29T21:33:05.123456+00:00") == "2026-11-29 21:33:05 UTC"
    assert display.utc_text("2026-11-29T22:33:05+01:00") == "2026-11-29 21:33:05 UTC"
    assert display.utc_text(None) == "-"
    assert display.who("a" * 32, "ada@example.org") == "ada@example.org"
    assert display.who("a" * 32, None, "Ada") == "Ada"
    assert display.who("abcdef0123456789", None) == "anonymous abcdef01"
    assert display.pool(None) == "-" and display.pool(True) == "warm"
    assert display.event_text("output", {"output_type": "error", "bytes": 9, "ename": "KeyError",
                                         "evalue": "'x'", "elapsed_ms": 3}) == \
        "error, 9 bytes: KeyError: 'x'"
    assert display.event_text("finished", {"status": "ok", "limit": None, "elapsed_ms": 4}) == \
        "status: ok"


@pytest.fixture(params=["postgres", "sqlite"])
async def traced_db(request, tmp_path):
    with schema_url(request.param, request, tmp_path) as url:
        runs = {f"r{i}": traced(f"u{i % 3}", f"ex{i % 2}", i, [OK, TIMEOUT, FAILED][i % 3])
                for i in range(7)}
        store = open_store(url)
        store.write([e for events in runs.values() for e in events])
        store.close()
        engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://")
                                     .replace("sqlite://", "sqlite+aiosqlite://"))
        yield engine, {name: events[0].run_id for name, events in runs.items()}
        await engine.dispose()


async def test_sorting_filtering_and_paging_happen_in_sql(traced_db):
    engine, ids = traced_db
    page1, more = await view.search(engine, view.parse({"size": "3"}))
    assert [r["id"] for r in page1] == [ids["r0"], ids["r1"], ids["r2"]] and more
    page3, more = await view.search(engine, view.parse({"size": "3", "page": "3"}))
    assert [r["id"] for r in page3] == [ids["r6"]] and not more
    oldest, _ = await view.search(engine, view.parse({"dir": "asc", "size": "2"}))
    assert [r["id"] for r in oldest] == [ids["r6"], ids["r5"]]
    timeouts, _ = await view.search(engine, view.parse({"status": "timeout"}))
    assert {r["id"] for r in timeouts} == {ids["r1"], ids["r4"]}
    assert all(r["limit_hit"] == "timeout" for r in timeouts)
    by_user, _ = await view.search(engine, view.parse({"sort": "user", "dir": "asc"}))
    assert [r["user_id"] for r in by_user] == sorted(r["user_id"] for r in by_user)
    by_total, _ = await view.search(engine, view.parse({"sort": "total"}))
    totals = [r["total_ms"] for r in by_total if r["total_ms"] is not None]
    assert totals == sorted(totals, reverse=True)


async def test_runs_page_is_readable(admin_site):
    page = await admin_site.admin.get("/admin/runs")
    body = text(page)
    assert page.code == 200
    assert "ada@example.org" in body                          # users by email ...
    assert "anonymous bbbbbbbb" in body                       # ... or a short name
    times = re.findall(r'<time datetime="([^"]+)">([^<]+)</time>', body)
    assert len(times) == 4 and all(shown.endswith(" UTC") and "." not in shown for _, shown in times)
    assert "js/admin_time.js" in body                         # the viewer's zone, in the browser
    assert "None" not in body
    assert "cold" in body and "warm" in body


async def test_status_timeout_is_answered_and_a_bad_filter_explained(admin_site):
    timeouts = await admin_site.admin.get("/admin/runs?status=timeout")
    assert timeouts.code == 200
    assert re.findall(r'href="/admin/runs/([0-9a-f]{32})"', text(timeouts)) == \
        [admin_site.runs["ada-timeout"]]
    bad = await admin_site.admin.get("/admin/runs?status=bogus&user=u1")
    assert bad.code == 400
    assert "This search cannot be answered: status &#x27;bogus&#x27; is not one we record" in text(bad)
    assert 'value="u1"' in text(bad)                         # the form keeps what was sent
    assert "/admin/runs/" + admin_site.runs["bob"] not in text(bad)


async def test_paging_and_sorting_links_keep_every_parameter(admin_site):
    first = text(await admin_site.admin.get("/admin/runs?size=1&exercise=ex1&sort=total&dir=asc"))
    assert 'rel="next" href="/admin/runs?size=1&amp;exercise=ex1&amp;sort=total&amp;dir=asc&amp;page=2"' in first
    second = text(await admin_site.admin.get("/admin/runs?size=1&exercise=ex1&sort=total&dir=asc&page=2"))
    assert 'rel="prev"' in second and "Page 2" in second


async def test_run_page_shows_timings_events_code_and_links(admin_site):
    run_id = admin_site.runs["carol"]
    body = text(await admin_site.admin.get(f"/admin/runs/{run_id}"))
    assert "None" not in body
    assert "queue -" in body or re.search(r"queue [\d,.]+ ms", body)
    assert "anonymous cccccccc" in body
    assert '<li><code>1/0</code></li>' in body                # the code, line by line
    assert "error, " in body and "ZeroDivisionError: division by zero" in body
    assert "<strong>requested</strong>" in body and "<strong>finished</strong>" in body
    assert f'href="/admin/runs?user={"c" * 32}"' in body and 'href="/admin/runs?exercise=ex1"' in body
    assert "{&quot;" not in body                               # no raw JSON
