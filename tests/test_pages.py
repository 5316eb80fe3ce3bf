"""The pages, the lesson API, health and metrics over real HTTP, on SQLite and Postgres."""
from __future__ import annotations

import asyncio
import json
import logging
import shutil
from pathlib import Path

import pytest
import tornado.httpclient

from server.accounts.limiter import MemoryRateStore, NewLearnerLimiter
from server.app import run_server
from server.config import PROJECT_ROOT
from server.store import users

BUNDLED = PROJECT_ROOT / "lessons"


class Served:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.client = tornado.httpclient.AsyncHTTPClient()

    async def get(self, path: str, **kwargs) -> tornado.httpclient.HTTPResponse:
        return await self.client.fetch(self.base + path, raise_error=False, follow_redirects=False,
                                       **kwargs)


async def start(settings):
    stop = asyncio.Event()
    started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_server(settings, ready=started.set_result, stop=stop))
    done, _ = await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # start-up failed: raise its error here
    return Served(started.result()), stop, task


@pytest.fixture(params=["sqlite", "postgres"])
async def served(request, make_settings):
    env = {"LS_LESSONS_DIR": str(BUNDLED)}
    if request.param == "postgres":
        from server import db
        url = request.getfixturevalue("fresh_pg_url")
        env["LS_DATABASE_URL"] = url
        await asyncio.to_thread(db.upgrade, make_settings(**env))
    server, stop, task = await start(make_settings(**env))
    yield server
    stop.set()
    await asyncio.wait_for(task, 15)


def first_lesson(catalog_json, **wanted):
    for course in catalog_json["courses"]:
        for lesson in course["lessons"]:
            if all(lesson.get(key) == value for key, value in wanted.items()):
                return lesson
    raise AssertionError(f"no lesson with {wanted}")


async def test_catalog_lists_every_bundled_lesson(served):
    api = json.loads((await served.get("/api/lessons")).body)
    page = await served.get("/")
    assert page.code == 200
    html = page.body.decode()
    for course in api["courses"]:
        assert course["title"] in html
        for lesson in course["lessons"]:
            assert f'href="/lessons/{lesson["slug"]}"' in html


async def test_lesson_api_shape(served):
    response = await served.get("/api/lessons")
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    data = json.loads(response.body)
    lessons = [lesson for course in data["courses"] for lesson in course["lessons"]]
    assert len(lessons) >= 5
    for lesson in lessons:
        assert set(lesson) >= {"slug", "title", "url", "access", "exercises"}
        assert lesson["access"] in ("free", "paid")
        assert lesson["url"] == f"/lessons/{lesson['slug']}"
    assert {lesson["kernel"] for lesson in lessons} >= {"python", "bash", "sql"}


async def test_free_lesson_page_shows_cells_but_no_hidden_code(served):
    api = json.loads((await served.get("/api/lessons")).body)
    lesson = first_lesson(api, access="free", prerequisites=[])
    response = await served.get(lesson["url"])
    assert response.code == 200
    html = response.body.decode()
    assert lesson["title"] in html
    assert html.count('class="exercise"') == len(lesson["exercises"])
    # The same bytes for every newcomer (its identity comes with the lesson socket): public.
    assert response.headers["Cache-Control"].startswith("public")
    assert "Set-Cookie" not in response.headers and "Cookie" in response.headers["Vary"]
    from kernels.plugins import discover
    from server.course.loader import load_catalog
    parsed = load_catalog(BUNDLED, frozenset(p.name for p in discover())).lesson(lesson["slug"])
    for exercise in parsed.exercises:
        if exercise.check.code:
            assert exercise.check.code.strip() not in html
        if exercise.setup:
            assert exercise.setup.strip() not in html


async def test_locked_lessons_say_why(served):
    api = json.loads((await served.get("/api/lessons")).body)
    paid = first_lesson(api, access="paid")
    response = await served.get(paid["url"])
    assert response.code == 402
    assert "paid course" in response.body.decode()   # and why it cannot open: see test_billing_pages
    gated = next(lesson for course in api["courses"] for lesson in course["lessons"]
                 if lesson["prerequisites"] and lesson["access"] == "free")
    response = await served.get(gated["url"])
    assert response.code == 403
    assert f'href="/lessons/{gated["prerequisites"][0]}"' in response.body.decode()


async def test_unknown_pages_are_404_html_and_json(served):
    page = await served.get("/lessons/no-such-lesson")
    assert page.code == 404 and "no lesson called" in page.body.decode()
    page = await served.get("/nowhere")
    assert page.code == 404 and "<h1>404" in page.body.decode()
    api = await served.get("/api/nowhere")
    assert api.code == 404
    assert json.loads(api.body)["error"]["status"] == 404


async def test_request_id_is_echoed_or_made(served):
    response = await served.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert response.headers["X-Request-Id"] == "abc-123"
    response = await served.get("/healthz", headers={"X-Request-Id": "bad id with spaces"})
    assert response.headers["X-Request-Id"] != "bad id with spaces"
    assert len(response.headers["X-Request-Id"]) == 16


async def test_health_and_metrics(served):
    response = await served.get("/healthz")
    assert response.code == 200
    assert json.loads(response.body) == {"status": "ok", "down": [], "checks": {"database": "ok"}}
    await served.get("/")
    metrics = (await served.get("/metrics")).body.decode()
    assert 'lessonserver_http_requests_total{method="GET",route="catalog",status="200"}' in metrics
    assert "lessonserver_http_request_seconds_bucket" in metrics


async def test_health_names_redis_when_it_is_down(make_settings, redis_server):
    settings = make_settings(LS_LESSONS_DIR=str(BUNDLED), LS_REDIS_URL=redis_server.url)
    server, stop, task = await start(settings)
    try:
        response = await server.get("/healthz")
        assert response.code == 200
        assert json.loads(response.body)["checks"] == {"database": "ok", "redis": "ok"}
        redis_server.stop()
        response = await server.get("/healthz")
        assert response.code == 503
        body = json.loads(response.body)
        assert body["down"] == ["redis"] and body["checks"]["database"] == "ok"
    finally:
        if redis_server.proc is None:
            redis_server.start()
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_one_log_line_per_request(served, caplog):
    caplog.set_level(logging.INFO, logger="lessonserver.access")
    await served.get("/api/lessons", headers={"X-Request-Id": "trace-me"})
    lines = [r for r in caplog.records if r.name == "lessonserver.access"
             and r.fields.get("request_id") == "trace-me"]
    assert len(lines) == 1
    fields = lines[0].fields
    assert fields["status"] == 200 and fields["path"] == "/api/lessons" and fields["ms"] >= 0


async def test_server_errors_render_the_500_page(make_settings):
    # A handler that fails is the app's bug; the learner sees a page with a request id only.
    import tornado.httpserver
    import tornado.netutil

    from server.app import make_app, start_runtime
    from server.handlers.base import BaseHandler, Common

    class Boom(BaseHandler):
        def get(self):
            raise RuntimeError("secret internal detail")

    runtime = await start_runtime(make_settings(LS_LESSONS_DIR=str(BUNDLED)))
    app = make_app(runtime)
    app.add_handlers(r".*", [(r"/boom", Boom,
                              {"common": Common(runtime.settings, runtime.engine, runtime.metrics,
                                                NewLearnerLimiter(MemoryRateStore(),
                                                                  runtime.settings.new_learners_per_ip),
                                                users.AnonymousRows(runtime.engine))})])
    http = tornado.httpserver.HTTPServer(app)
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    http.add_sockets(sockets)
    try:
        response = await Served(sockets[0].getsockname()[1]).get("/boom")
        assert response.code == 500
        html = response.body.decode()
        assert "Something went wrong" in html and "secret internal detail" not in html
        assert "Request id" in html
    finally:
        http.stop()
        await runtime.close()


async def test_a_broken_lesson_is_skipped_and_the_rest_served(make_settings, tmp_path, caplog):
    course = tmp_path / "course"
    shutil.copytree(BUNDLED / "python-basics", course)
    broken = course / "zz-broken.md"
    broken.write_text("---\ntitle: Broken\nslug: broken\norder: 99\nkernel: python\n---\n"
                      "Some prose.\n\n```python exercise=oops\nprint(1)\n")
    caplog.set_level(logging.ERROR, logger="lessonserver")
    server, stop, task = await start(make_settings(LS_LESSONS_DIR=str(course)))
    try:
        assert (await server.get("/lessons/broken")).code == 404
        api = json.loads((await server.get("/api/lessons")).body)
        assert sum(len(c["lessons"]) for c in api["courses"]) >= 3
        errors = [r.fields["error"] for r in caplog.records if r.getMessage() == "lesson skipped"]
        assert errors and all(str(broken) in e or "zz-broken.md" in e for e in errors)
        assert any(":9:" in e for e in errors), errors  # names the line of the fence
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def test_serve_subprocess_starts_and_stops_cleanly_on_ctrl_c(tmp_path):
    """What `make run` does: db upgrade, serve, Ctrl-C."""
    import os
    import signal
    import subprocess
    import time
    import urllib.request

    from tests.services import free_port, wait_for_port

    port = free_port()
    env = {**os.environ, "LS_PORT": str(port), "LS_DATA_DIR": str(tmp_path / "data")}
    env.pop("LS_DATABASE_URL", None)
    env.pop("LS_REDIS_URL", None)
    lessonserver = str(Path(os.sys.executable).parent / "lessonserver")
    upgrade = subprocess.run([lessonserver, "db", "upgrade"], env=env, capture_output=True, text=True)
    assert upgrade.returncode == 0, upgrade.stderr
    proc = subprocess.Popen([lessonserver, "serve"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port, 30, "lessonserver serve")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            assert response.status == 200
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        assert proc.wait(timeout=20) == 0
        assert time.monotonic() - started < 20
        log = proc.stderr.read()
        assert "msg=listening" in log and "msg=stopped" in log
        assert "Traceback" not in log
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_bad_setting_stops_start_up_with_one_line(tmp_path):
    import os
    import subprocess

    env = {**os.environ, "LS_PORT": "eighty", "LS_DATA_DIR": str(tmp_path)}
    lessonserver = str(Path(os.sys.executable).parent / "lessonserver")
    result = subprocess.run([lessonserver, "serve"], env=env, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip() == "lessonserver: bad setting LS_PORT: 'eighty' is not a whole number"
