"""Pages through the cache: HTTP caching headers, no write on a read, learners kept apart,
and one recompute per expiry across two real `serve` processes sharing Redis."""
from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import time

import sqlalchemy as sa
import tornado.httpclient
import tornado.websocket

from server import db
from server.store import progress, users
from tests.serve_process import lessonserver
from tests.test_exercise_ws import handshake_cookie
from tests.test_pages import BUNDLED, first_lesson, start

VOLATILE = {"Date", "X-Request-Id", "Content-Length", "Etag", "Set-Cookie"}


def course_with_a_reading(root) -> str:
    """The bundled python course plus a lesson without exercises (nothing to run: no identity)."""
    course = root / "course"
    shutil.copytree(BUNDLED / "python-basics", course)
    (course / "zz-reading.md").write_text(
        "---\ntitle: Further reading\nslug: further-reading\norder: 99\nkernel: python\n---\n"
        "# Further reading\n\nBooks and links.\n")
    return str(course)


@contextlib.asynccontextmanager
async def serve(make_settings, lessons: str = str(BUNDLED), **env):
    """(settings, the site, its /api/lessons) of an in-process server, stopped afterwards."""
    settings = make_settings(LS_LESSONS_DIR=lessons, **env)
    server, stop, task = await start(settings)
    try:
        yield settings, server, json.loads((await server.get("/api/lessons")).body)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def count_users(settings) -> int:
    engine = db.create_engine(settings)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(sa.text("select count(*) from users"))).scalar_one()
    finally:
        await engine.dispose()


async def learner_cookie(site, slug: str) -> str:
    """A new visitor's identity, as the lesson socket's handshake gives it."""
    socket = await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(
        site.base.replace("http", "ws") + f"/lessons/{slug}/ws"))
    socket.close()
    return handshake_cookie(socket)


async def test_anonymous_answers_are_public_with_validators(make_settings, tmp_path):
    async with serve(make_settings, course_with_a_reading(tmp_path),
                     LS_CACHE_TTL="30", LS_CACHE_GRACE="90") as (settings, site, api):
        reading = first_lesson(api, exercises=[])
        for path in ("/", "/api/lessons", f"/lessons/{reading['slug']}"):
            first = await site.get(path)
            assert first.code == 200, path
            assert first.headers["Cache-Control"] == \
                "public, max-age=0, s-maxage=30, stale-while-revalidate=90", path
            assert "Set-Cookie" not in first.headers, path
            etag = first.headers["Etag"]
            again = await site.get(path, headers={"If-None-Match": etag})
            assert again.code == 304 and not again.body, path
            assert (await site.get(path)).body == first.body
        assert "Cookie" in (await site.get("/")).headers["Vary"]
        assert "Cookie" not in (await site.get("/api/lessons")).headers.get("Vary", "")
        metrics = (await site.get("/metrics")).body.decode()
        assert 'lessonserver_cache_requests_total{prefix="catalog",result="hit"}' in metrics
        assert recomputes(metrics, "catalog") == 1
        missing = await site.get("/lessons/no-such-lesson")
        assert missing.code == 404 and (await site.get("/lessons/no-such-lesson")).code == 404
        assert recomputes((await site.get("/metrics")).body.decode(), "lesson") == 2  # reading + 404


async def test_a_stale_page_is_refreshed_behind_the_request_that_found_it(make_settings, redis_url,
                                                                            instance_name):
    """With Redis between, the refresh runs after that request has finished, so it cannot
    render through its handler (Tornado tears its template namespace down at finish)."""
    async with serve(make_settings, LS_REDIS_URL=redis_url, LS_INSTANCE=instance_name,
                     LS_CACHE_TTL="1", LS_CACHE_GRACE="60") as (settings, site, api):
        lesson = first_lesson(api, access="free", prerequisites=[])
        paid = first_lesson(api, access="paid")
        paths = ("/", f"/lessons/{lesson['slug']}", f"/lessons/{paid['slug']}")
        first = {path: await site.get(path) for path in paths}
        await asyncio.sleep(1.3)
        for path in paths:                   # stale: served at once, each starts a refresh
            assert (await site.get(path)).headers["Etag"] == first[path].headers["Etag"], path
        await asyncio.sleep(0.5)
        for path in paths:
            fresh = await site.get(path)
            assert fresh.headers["Etag"] != first[path].headers["Etag"], path    # refreshed
            assert (fresh.code, fresh.body) == (first[path].code, first[path].body), path
        assert "part of the paid course" in first[paths[2]].body.decode()
        metrics = (await site.get("/metrics")).body.decode()
        assert recomputes(metrics, "catalog") == 2 and recomputes(metrics, "lesson") == 4


async def first_run(site, slug: str, cookie: str, api) -> dict:
    """Open the lesson's socket and run its first exercise's starter; the result frame."""
    lesson = first_lesson(api, slug=slug)
    socket = await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(
        site.base.replace("http", "ws") + f"/lessons/{slug}/ws", headers={"Cookie": cookie}))
    try:
        await socket.write_message(json.dumps({"type": "run", "run": "r1", "code": "print(1)",
                                               "exercise": lesson["exercises"][0]["id"]}))
        while True:
            frame = json.loads(await asyncio.wait_for(socket.read_message(), 30))
            if frame["type"] in ("result", "error") and frame.get("run") == "r1":
                return frame
    finally:
        socket.close()


async def test_viewing_lessons_writes_no_row_until_the_first_run(make_settings):
    async with serve(make_settings, LS_SANDBOX="local") as (settings, site, api):
        slug = first_lesson(api, access="free", prerequisites=[])["slug"]
        views = [await site.get(f"/lessons/{slug}") for _ in range(20)]
        assert all(v.code == 200 for v in views)
        assert all(v.headers["Cache-Control"].startswith("public") and "Set-Cookie" not in v.headers
                   for v in views)                # one page for every newcomer: a CDN keeps it
        assert len({v.body for v in views}) == 1
        assert await count_users(settings) == 0
        cookie = await learner_cookie(site, slug)             # the socket's handshake: an identity
        assert cookie.startswith("ls_user=")
        for _ in range(3):                                    # the visitor comes back: still no row
            again = await site.get(f"/lessons/{slug}", headers={"Cookie": cookie})
            assert again.code == 200 and "Set-Cookie" not in again.headers
        assert await count_users(settings) == 0               # an open socket is still a read
        assert (await first_run(site, slug, cookie, api))["type"] == "result"
        assert await count_users(settings) == 1               # a run is worth a row
        again = await site.get(f"/lessons/{slug}", headers={"Cookie": cookie})
        assert again.code == 200 and again.headers["Cache-Control"] == "private, no-cache"


async def test_one_address_can_mint_only_so_many_learners(make_settings):
    """Issue 9, item 2: cookies cost nothing, so new learners are limited per address."""
    async with serve(make_settings, LS_SANDBOX="local", LS_NEW_LEARNERS_PER_IP="2/60") as (
            settings, site, api):
        slug = first_lesson(api, access="free", prerequisites=[])["slug"]
        frames = []
        for _ in range(3):
            assert (await site.get(f"/lessons/{slug}")).code == 200
            frames.append(await first_run(site, slug, await learner_cookie(site, slug), api))
        assert [f["type"] for f in frames] == ["result", "result", "error"]
        assert "Too many new learners" in frames[2]["message"] and frames[2]["retry_after"] >= 1
        assert await count_users(settings) == 2


async def test_one_learners_state_never_reaches_another(make_settings):
    async with serve(make_settings) as (settings, site, api):
        lesson = first_lesson(api, access="free", prerequisites=[])
        exercise = lesson["exercises"][0]["id"]
        anonymous = await site.get(f"/lessons/{lesson['slug']}")   # warms the shared entry
        cookies = []
        for secret in ("print('alice-secret-code')", "print('bob-other-code')"):
            cookie = await learner_cookie(site, lesson["slug"])
            user_id = tornado.web.decode_signed_value(
                site_secret(settings), "ls_user", cookie.split("=", 1)[1].strip('"')).decode()
            engine = db.create_engine(settings)
            await users.create_anonymous(engine, user_id)
            await progress.record(engine, user_id, lesson["slug"], exercise, True, secret)
            await engine.dispose()
            cookies.append(cookie)
        alice, bob = [await site.get(f"/lessons/{lesson['slug']}", headers={"Cookie": c})
                      for c in cookies]
        assert "alice-secret-code" in alice.body.decode() and "alice-secret-code" not in bob.body.decode()
        assert "bob-other-code" in bob.body.decode() and "bob-other-code" not in alice.body.decode()
        for page in (alice, bob):
            assert page.headers["Cache-Control"] == "private, no-cache"
            assert "Cookie" in page.headers["Vary"]
            assert "public" not in page.headers["Cache-Control"]
        assert alice.headers["Etag"] != bob.headers["Etag"]
        same = lambda r: {k: v for k, v in r.headers.get_all() if k not in VOLATILE}
        assert same(alice) == same(bob)                 # only the body and its validator differ
        assert "alice-secret-code" not in anonymous.body.decode()
        after = await site.get(f"/lessons/{lesson['slug']}")    # anonymous again, from the cache
        assert "alice-secret-code" not in after.body.decode() and "bob" not in after.body.decode()
        catalog = [await site.get("/", headers={"Cookie": c}) for c in cookies]
        assert all(c.headers["Cache-Control"] == "private, no-cache" for c in catalog)


def site_secret(settings) -> str:
    from server.secrets import load_secrets
    return load_secrets(settings).cookie_secret


def recomputes(metrics: str, prefix: str) -> float:
    match = re.search(rf'^lessonserver_cache_recomputes_total{{prefix="{prefix}"}} (\S+)$',
                      metrics, re.M)
    return float(match.group(1)) if match else 0.0


def test_an_expired_key_is_recomputed_once_across_two_processes(tmp_path, redis_url, instance_name):
    env = {"LS_REDIS_URL": redis_url, "LS_INSTANCE": instance_name, "LS_POOL_SIZE": "0",
           "LS_LESSONS_DIR": str(BUNDLED), "LS_CACHE_TTL": "3", "LS_CACHE_GRACE": "0"}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    with lessonserver(tmp_path / "a", **env) as a, lessonserver(tmp_path / "b", **env) as b:
        urls = [a.url, b.url]

        async def burst(n: int) -> list[int]:
            client = tornado.httpclient.AsyncHTTPClient(max_clients=100)
            responses = await asyncio.gather(*(client.fetch(urls[i % 2] + "/api/lessons",
                                                            raise_error=False) for i in range(n)))
            return [r.code for r in responses]

        def total() -> float:
            client = tornado.httpclient.HTTPClient()
            try:
                return sum(recomputes(client.fetch(u + "/metrics").body.decode(), "api_lessons")
                           for u in urls)
            finally:
                client.close()

        assert set(asyncio.run(burst(200))) == {200}
        assert total() == 1                                   # a cold key: one recompute
        time.sleep(3.3)                                       # expired: past TTL, no grace
        assert set(asyncio.run(burst(200))) == {200}
        assert total() == 2                                   # one more, for 200 readers
