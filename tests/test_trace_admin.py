"""Admin JSON over HTTP on a real Tornado server and real databases: auth, filters, one run."""
from __future__ import annotations

import datetime as dt
import json
import time

import pytest
import tornado.httpclient
import tornado.httpserver
import tornado.web
from sqlalchemy.ext.asyncio import create_async_engine

from kernels.result import LimitHit, Output, RunResult, RunStatus
from server.handlers.admin_runs import BadFilter, parse_filter, routes, token_verdict
from server.tracing.events import TraceEvent
from server.tracing.tracer import RunTracer
from tests.test_trace_support import schema_url
from workers.trace_store import open_store

TOKEN = "s3cret-admin-token"
HOUR = 3600


def traced(user: str, exercise: str, age_hours: float, result: RunResult) -> list[TraceEvent]:
    events: list[TraceEvent] = []
    tracer = RunTracer(events.append, clock=lambda: time.time() - age_hours * HOUR)
    tracer.requested(user_id=user, lesson_slug="intro", exercise_id=exercise, kernel="python",
                     code="print(1)")
    tracer.kernel_assigned(pool_hit=True, container_id="c1")
    tracer.output(Output("stream", name="stdout", text="1\n"))
    tracer.finished(result)
    return events


OK = RunResult(RunStatus.OK, bytes_out=2)
TIMEOUT = RunResult(RunStatus.LIMIT, limit=LimitHit.TIMEOUT, bytes_out=2)


@pytest.fixture(params=["postgres", "sqlite"])
async def admin(request, tmp_path):
    """A server with the admin routes over a database holding four traced runs."""
    with schema_url(request.param, request, tmp_path) as url:
        runs = {"alice-old": traced("alice", "ex1", 48, OK), "alice-new": traced("alice", "ex2", 1, TIMEOUT),
                "bob": traced("bob", "ex1", 2, OK), "carol": traced("carol", "ex1", 3, OK)}
        store = open_store(url)
        store.write([e for events in runs.values() for e in events])
        store.close()
        async_url = url.replace("postgresql://", "postgresql+asyncpg://").replace(
            "sqlite://", "sqlite+aiosqlite://")
        engine = create_async_engine(async_url)
        app = tornado.web.Application(routes(api_token=TOKEN, engine=engine))
        server = tornado.httpserver.HTTPServer(app)
        [sock] = tornado.netutil.bind_sockets(0, "127.0.0.1")
        server.add_sockets([sock])
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        client = tornado.httpclient.AsyncHTTPClient()

        async def get(path: str, token: str | None = TOKEN, scheme: str = "token"):
            headers = {"Authorization": f"{scheme} {token}"} if token is not None else {}
            response = await client.fetch(base + path, headers=headers, raise_error=False)
            json_body = response.headers.get("Content-Type", "").startswith("application/json")
            return response.code, json.loads(response.body) if json_body else None

        yield get, {name: events[0].run_id for name, events in runs.items()}, runs
        server.stop()
        await engine.dispose()


async def test_without_a_token_401_and_with_a_wrong_one_403(admin):
    get, ids, _ = admin
    assert (await get("/api/admin/runs", token=None))[0] == 401
    assert (await get("/api/admin/runs", scheme="Bearer"))[0] == 401
    assert (await get("/api/admin/runs", token=""))[0] == 401
    code, body = await get("/api/admin/runs", token="s3cret-admin-tokeN")
    assert code == 403 and body["error"]["status"] == 403
    assert (await get(f"/api/admin/runs/{ids['bob']}", token="nope"))[0] == 403


async def test_runs_newest_first_with_filters_and_paging(admin):
    get, ids, _ = admin
    code, body = await get("/api/admin/runs")
    assert code == 200
    assert [r["id"] for r in body["runs"]] == [ids["alice-new"], ids["bob"], ids["carol"],
                                               ids["alice-old"]]
    assert "code" not in body["runs"][0] and body["runs"][0]["limit_hit"] == "timeout"

    async def ids_for(query: str) -> set[str]:
        code, body = await get(f"/api/admin/runs?{query}")
        assert code == 200, body
        return {r["id"] for r in body["runs"]}

    assert await ids_for("user=alice") == {ids["alice-old"], ids["alice-new"]}
    assert await ids_for("exercise=ex1&user=alice") == {ids["alice-old"]}
    assert await ids_for("status=limit") == {ids["alice-new"]}
    since = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2.5)).isoformat()
    assert await ids_for(f"since={since.replace('+', '%2B')}") == {ids["alice-new"], ids["bob"]}
    assert await ids_for(f"until={time.time() - 2.5 * HOUR:.0f}") == {ids["carol"], ids["alice-old"]}
    assert await ids_for("limit=2&offset=1") == {ids["bob"], ids["carol"]}
    assert (await get("/api/admin/runs?limit=0"))[0] == 400
    code, body = await get("/api/admin/runs?status=exploded")
    assert code == 400 and "status" in body["error"]["message"]


async def test_one_run_with_its_events_in_order(admin):
    get, ids, runs = admin
    code, run = await get(f"/api/admin/runs/{ids['alice-new']}")
    assert code == 200
    assert (run["status"], run["limit_hit"], run["code"], run["pool_hit"]) == \
        ("limit", "timeout", "print(1)", True)
    events = runs["alice-new"]
    assert [(e["id"], e["seq"], e["kind"]) for e in run["events"]] == \
        [(e.id, e.seq, e.kind.value) for e in events]
    assert run["events"][0]["data"]["user_id"] == "alice"
    requested = dt.datetime.fromisoformat(run["requested_at"]).timestamp()
    assert requested == pytest.approx(events[0].ts, abs=1e-3)
    assert (await get(f"/api/admin/runs/{'0' * 32}"))[0] == 404
    assert (await get("/api/admin/runs/not-an-id"))[0] == 404          # no route: the app's 404


def test_token_verdict_and_filter_parsing_as_values():
    assert token_verdict("token abc", "abc") is None
    assert token_verdict("Token abc", "abc") is None
    assert token_verdict(None, "abc") == 401 and token_verdict("abc", "abc") == 401
    assert token_verdict("token abd", "abc") == 403
    assert token_verdict("token abc", None) == 403        # no admin token configured: nobody
    f = parse_filter({"user": "u", "since": "2026-01-02T03:04:05", "limit": "10", "offset": "20"})
    assert (f.user, f.limit, f.offset) == ("u", 10, 20)
    assert f.since == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    for bad in ({"limit": "501"}, {"offset": "-1"}, {"since": "yesterday"}, {"limit": "x"}):
        with pytest.raises(BadFilter):
            parse_filter(bad)
