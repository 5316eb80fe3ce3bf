"""The admin overview and its audit log over a real server with real traces and kernels, the
pure aggregates behind it, and an authorization test of every admin route."""
from __future__ import annotations

import json
import re
import types

import pytest
import redis.asyncio
import rq
import redis as sync_redis

from server.admin import overview
from server.handlers import admin_learning, admin_outbox, admin_overview, admin_pages, admin_runs
from server.handlers import admin_live_events, admin_ops, admin_users
from server.store import grants
from tests.admin_support import TOKEN, admin_site  # noqa: F401 (fixture)
from tests.accounts_support import text


def kernel(plugin: str, state: str):
    return types.SimpleNamespace(plugin=plugin, execution_state=state)


def test_kernels_are_counted_by_language_and_state():
    live = [kernel("python", "idle"), kernel("python", "busy"), kernel("python", "idle"),
            kernel("bash", "starting")]
    assert overview.kernels_by(live) == {"bash": {"starting": 1},
                                         "python": {"busy": 1, "idle": 2}}
    assert overview.kernels_by([]) == {}


def test_rates_and_bars():
    stats = overview.RunStats(10, {"ok": 6, "error": 2, "died": 1, "running": 1}, {}, {},
                              [0] * 30, 2.0, 3, 1)
    assert stats.error_rate == 3 / 9 and overview.percent(stats.error_rate) == "33.3 %"
    assert stats.per_minute == 10 / 60 and stats.pool_hit_rate == 0.75
    empty = overview.RunStats(0, {}, {}, {}, [0] * 30, 2.0, 0, 0)
    assert empty.error_rate is None and overview.percent(None) == "-"
    assert overview.bucket_counts([(0, 2), (2, 1), (2, 3), (9, 5), (-1, 4)], 3) == [2, 0, 4]
    bars = overview.bars([0, 5, 10], width=300, height=100, gap=0)
    assert [(b.x, b.height, b.y) for b in bars] == [(0, 0, 100), (100, 50, 50), (200, 100, 0)]
    assert all(b.height == 0 for b in overview.bars([0, 0]))
    assert overview.parse_range(None) == "1h" and overview.parse_range("7d") == "7d"
    with pytest.raises(overview.BadRange, match="use one of 15m, 1h, 24h, 7d"):
        overview.parse_range("1y")


async def test_queue_depths_read_rqs_own_keys(redis_url):
    connection = sync_redis.Redis.from_url(redis_url)
    queue = rq.Queue("ls-test-depths", connection=connection)
    queue.empty()
    for _ in range(3):
        queue.enqueue("os.getcwd")
    failed = queue.enqueue("os.getcwd")
    queue.failed_job_registry.add(failed, ttl=60)
    client = redis.asyncio.from_url(redis_url)
    try:
        assert await overview.queue_depths(client, ["ls-test-depths", "ls-test-none"]) == {
            "ls-test-depths": {"waiting": 4, "failed": 1},
            "ls-test-none": {"waiting": 0, "failed": 0}}
    finally:
        queue.empty()
        queue.failed_job_registry.remove(failed)
        await client.aclose()


def cell_numbers(body: str, table_id: str) -> dict[str, str]:
    table = body.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    return {re.sub("<[^>]+>", "", key): value for key, value in
            re.findall(r'<tr><td>([^<]*(?:<a [^>]*>[^<]*</a>)?)</td>(?:<td>[^<]*</td>)?'
                       r'<td class="num">(\d+)</td></tr>', table)}


async def test_overview_shows_the_runs_kernels_and_health(admin_site):
    page = await admin_site.admin.get("/admin?range=7d")
    body = text(page)
    assert page.code == 200
    assert cell_numbers(body, "by-status") == {"ok": "2", "limit": "1", "error": "1"}
    assert cell_numbers(body, "by-limit") == {"timeout": "1"}
    assert re.search(r'id="error-rate">25.0 %<', body)
    assert "3 warm, 1 cold" in body and "4 runs in 7d" in body
    assert body.count("<rect ") == 30
    assert "health-database" in body and "No Redis" in body
    day = text(await admin_site.admin.get("/admin?range=24h"))
    assert "3 runs in 24h" in day                  # the run of two days ago is out of range
    assert (await admin_site.admin.get("/admin?range=1y")).code == 400


async def test_the_run_figures_are_counted_once_for_every_view_within_their_ttl(admin_site):
    """Issue 11: admins refreshing the overview during an event share one count per range."""
    bodies = [text(await admin_site.admin.get("/admin?range=7d")) for _ in range(3)]
    bodies.append(text(await admin_site.admin.get("/admin?range=24h")))
    metrics = (await admin_site.anonymous.fetch("/metrics")).body.decode()
    assert re.search(r'^lessonserver_cache_recomputes_total\{prefix="admin_runs"\} 2\.0$', metrics, re.M)
    counted = [re.search(r'id="runs-as-of">([^<]+) UTC<', body).group(1) for body in bodies]
    assert counted[0] == counted[1] == counted[2]         # the same count, and it says when
    assert all("4 runs in 7d" in body for body in bodies[:3])


async def test_ending_a_kernel_is_done_and_audited(admin_site):
    api = {"Authorization": f"token {TOKEN}"}
    started = await admin_site.anonymous.fetch("/api/kernels", "POST", json.dumps({"name": "python"}),
                                               headers=api)
    assert started.code == 201, started.body
    kernel_id = json.loads(started.body)["id"]
    body = text(await admin_site.admin.get("/admin"))
    assert cell_numbers(body, "kernels-by")["python"] == "1" and kernel_id[:8] in body
    forged = await admin_site.admin.post(f"/admin/kernels/{kernel_id}/end", xsrf=False)
    assert forged.code == 403                      # another site's form cannot end it
    assert kernel_id in text(await admin_site.admin.get("/admin"))
    ended = await admin_site.admin.post(f"/admin/kernels/{kernel_id}/end")
    assert ended.code == 302 and ended.headers["Location"] == "/admin"
    listing = await admin_site.anonymous.fetch("/api/kernels", headers=api)
    assert kernel_id not in listing.body.decode()
    audit = text(await admin_site.admin.get("/admin")).split('id="audit"', 1)[1]
    assert re.search(r"<td>root@example.org</td><td>end-kernel</td><td>" + kernel_id, audit)
    gone = await admin_site.admin.post(f"/admin/kernels/{kernel_id}/end")
    assert gone.code == 404


async def test_a_token_sign_in_is_audited(admin_site):
    login = await admin_site.anonymous.post("/admin/login", {"token": TOKEN})
    assert login.code == 302
    audit = text(await admin_site.anonymous.get("/admin")).split('id="audit"', 1)[1]
    assert "<td>API token</td><td>sign-in</td>" in audit


ROUTES = {  # every admin route, and a request that would show or change something
    r"/admin": ("GET", "/admin"),
    r"/admin/runs": ("GET", "/admin/runs"),
    r"/admin/runs/([0-9a-f]{32})": ("GET", "/admin/runs/{run}"),
    r"/admin/outbox": ("GET", "/admin/outbox"),
    r"/admin/kernels/([0-9a-zA-Z-]{1,64})/end": ("POST", "/admin/kernels/{kernel}/end"),
    r"/api/admin/runs": ("GET", "/api/admin/runs"),
    r"/api/admin/runs/([0-9a-f]{32})": ("GET", "/api/admin/runs/{run}"),
    r"/admin/learning": ("GET", "/admin/learning"),
    r"/admin/learning/([A-Za-z0-9_-]+)": ("GET", "/admin/learning/values-and-printing"),
    r"/admin/users": ("GET", "/admin/users?q=ada"),
    r"/admin/users/([0-9a-zA-Z]{1,64})": ("GET", "/admin/users/{user}"),
    r"/admin/users/([0-9a-zA-Z]{1,64})/grant": ("POST", "/admin/users/{user}/grant"),
    r"/admin/users/([0-9a-zA-Z]{1,64})/revoke": ("POST", "/admin/users/{user}/revoke"),
    r"/admin/operations": ("GET", "/admin/operations"),
    r"/admin/pools/([a-z0-9_-]{1,64})/(drain|resume)": ("POST", "/admin/pools/python/drain"),
    r"/admin/jobs/([a-z0-9_-]{1,64})/(retry|discard)": ("POST", "/admin/jobs/traces/discard"),
    r"/admin/lessons/reload": ("POST", "/admin/lessons/reload"),
    r"/admin/flags/([a-z0-9_]{1,64})": ("POST", "/admin/flags/runs_paused"),
    r"/admin/live-events": ("GET", "/admin/live-events"),
    r"/admin/live-events/([0-9]{1,12})/cancel": ("POST", "/admin/live-events/1/cancel"),
}
OPEN = {r"/admin/login"}          # the sign-in form itself


def test_the_authorization_test_covers_every_admin_route():
    declared = [pattern for module in (admin_pages, admin_outbox, admin_users)
                for pattern, *_ in module.routes(None, None, None)]
    declared += [p for p, *_ in admin_learning.routes(None, None, None, None, None)]
    declared += [p for p, *_ in admin_overview.routes(None, None, None, None)]
    declared += [p for p, *_ in admin_runs.routes(api_token=None, engine=None)]
    declared += [p for p, *_ in admin_ops.routes(None, None, None, None)]
    declared += [p for p, *_ in admin_live_events.routes(None, None, None, None, None)]
    assert set(declared) - OPEN == set(ROUTES)


@pytest.mark.parametrize("who", ["anonymous", "learner"])
async def test_no_admin_route_shows_data_to_a_learner_or_anonymous(admin_site, who):
    browser = getattr(admin_site, who)
    api = {"Authorization": f"token {TOKEN}"}
    started = await admin_site.admin.fetch("/api/kernels", "POST", json.dumps({"name": "python"}),
                                           headers=api)
    kernel_id = json.loads(started.body)["id"]
    for method, path in ROUTES.values():
        path = path.format(run=admin_site.runs["carol"], kernel=kernel_id,
                           user=admin_site.learner_id)
        if method == "POST":
            response = await browser.post(path, {"until": "2099-01-01", "value": "on"})
        else:
            response = await browser.get(path)
        body = text(response)
        assert response.code in (401, 403) or (
            response.code == 302 and response.headers["Location"].startswith("/admin/login")), \
            (who, path, response.code)
        for secret in (admin_site.runs["carol"], "ZeroDivisionError", "root@example.org",
                       "anonymous cccccccc", kernel_id, "ada@example.org", "Values and printing"):
            assert secret not in body, (who, path, secret)
    still = await admin_site.admin.fetch("/api/kernels", headers=api)
    assert kernel_id in still.body.decode()        # no POST got through
    audit = text(await admin_site.admin.get("/admin")).split('id="audit"', 1)[1]
    for action in ("end-kernel", "grant-access", "drain-pool", "discard-job", "reload-lessons",
                   "set-flag", "live-event"):
        assert action not in audit, action
    assert await grants.get(admin_site.engine, admin_site.learner_id) is None


async def test_every_admin_page_answers_an_admin(admin_site):
    """So that the test above cannot pass on routes that answer nobody."""
    api = {"Authorization": f"token {TOKEN}"}
    for method, path in ROUTES.values():
        if method == "GET":
            path = path.format(run=admin_site.runs["carol"], user=admin_site.learner_id)
            response = await admin_site.admin.fetch(path, headers=api if "/api/" in path else None)
            assert response.code == 200, (path, response.code)
