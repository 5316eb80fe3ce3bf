"""Faults under runs, end to end: a real `lessonserver serve` process in production mode
(Postgres, Redis, a `lessonserver worker`, local sandbox), learners on the lesson socket,
then Postgres counted: every run with a verdict traced and saved, no row left `running`."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from urllib.parse import urlsplit

import psycopg2
import pytest

from server.handlers.health import health
from tests.serve_process import served
from tests.test_exercise_ws import COURSE, LESSON, Page
from tests.test_pages import Served
from tests.test_trace_pipeline import WorkerProcess, pipeline, wait_until  # noqa: F401
from tests.test_trace_support import fetch_all

SLOW = "import time\ntime.sleep(2)\nprint('hello')"


@pytest.fixture
def production(pipeline, tmp_path, instance_name):  # noqa: F811
    """Env for a serve process on the pipeline's Postgres and Redis, and a way to start workers."""
    settings, new_worker = pipeline
    lessons = tmp_path / "lessons" / "practice"
    lessons.mkdir(parents=True)
    (lessons / COURSE).write_text("title: Practice\ndescription: drills\n")
    (lessons / "practice.md").write_text(LESSON)
    env = {"LS_DATABASE_URL": settings.database_url, "LS_REDIS_URL": settings.redis_url,
           "LS_LESSONS_DIR": str(tmp_path / "lessons"), "LS_SANDBOX": "local",
           "LS_INSTANCE": instance_name, "LS_POOL_SIZE": "0", "LS_RUN_TIMEOUT": "10",
           "LS_DATA_DIR": str(tmp_path / "serve-data"), "LS_TRACE_FLUSH": "0.05",
           "LS_SHUTDOWN_GRACE": "15"}
    return settings.database_url, env, new_worker


def site_of(server) -> Served:
    return Served(urlsplit(server.url).port)


def runs(url: str) -> list[tuple]:
    return fetch_all(url, "SELECT status, verdict FROM runs ORDER BY requested_at")


def answered(url: str, query: str, params: tuple = ()) -> list[tuple] | None:
    """The rows, or None while the database is away or still starting up."""
    try:
        return fetch_all(url, query, params)
    except psycopg2.OperationalError:
        return None


def process_gone(pid: int) -> bool:
    """Exited (a zombie until `served` reaps it counts as gone)."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


async def test_sigterm_finishes_runs_in_flight_and_refuses_new_ones_in_plain_words(production, tmp_path):
    url, env, new_worker = production
    new_worker()
    with served(env, tmp_path / "serve.log") as server:
        site = site_of(server)
        pages = [await Page.open(site) for _ in range(4)]
        late = await Page.open(site)
        for page in (*pages, late):                  # warm kernels, so the slow runs start at once
            result, _ = await page.run("hello", "print('hello')", run="warm")
            assert result["verdict"]["passed"]
        for page in pages:
            await page.send(type="run", run="slow", exercise="hello", code=SLOW)
        for page in pages:
            await page.until("started")
        os.kill(server.pid, signal.SIGTERM)
        await asyncio.sleep(0.3)
        await late.send(type="run", run="late", exercise="hello", code="print('hello')")
        refused, _ = await late.until("error")
        assert refused["message"] == "The server is restarting; run again in a moment."
        for page in pages:                           # the runs in flight finish, with verdicts
            result, _ = await page.until("result", timeout=15)
            assert result["run"] == "slow" and result["verdict"]["passed"]
        wait_until(lambda: process_gone(server.pid), 30, "the server to exit")
    log = (tmp_path / "serve.log").read_text()
    assert "stopped" in log.strip().splitlines()[-1]           # logged last, as the process ends
    wait_until(lambda: len(runs(url)) == 9, 20, "every run traced")
    assert runs(url).count(("ok", "passed")) == 9               # none left running, none lost
    assert fetch_all(url, "SELECT count(*) FROM progress") == [(5,)]
    assert fetch_all(url, "SELECT sum(attempts) FROM progress") == [(9,)]


async def test_a_killed_server_loses_no_trace_of_a_verdict_and_its_open_runs_are_closed_next_start(
        production, tmp_path):
    url, env, new_worker = production
    env = {**env, "LS_TRACE_FLUSH": "30"}            # nothing leaves by the timer: only the log
    new_worker()
    with served(env, tmp_path / "serve1.log") as server:
        done, slow = await Page.open(site_of(server)), await Page.open(site_of(server))
        await slow.send(type="run", run="slow", exercise="hello", code=SLOW)
        await slow.until("started")
        result, _ = await done.run("hello", "print('hello')")
        os.kill(server.pid, signal.SIGKILL)          # right after the verdict
        wait_until(lambda: process_gone(server.pid), 10, "the server to die")
    with served(env, tmp_path / "serve2.log"):
        started = time.monotonic()
        wait_until(lambda: sorted(runs(url)) == [("interrupted", None), ("ok", "passed")], 15,
                   "the verdict's run replayed and the open run closed")
        print(f"\nreplayed and closed {time.monotonic() - started:.2f} s after the restart")
    assert fetch_all(url, "SELECT status, verdict, event_count FROM runs WHERE id = %s",
                     (result["trace"],)) == [("ok", "passed", 5)]


@pytest.fixture
def own_postgres(tmp_path, make_settings):
    """A Postgres cluster of this test's own, which it may stop: the session's stays up."""
    from tests.services import PostgresServer
    from tests.test_trace_support import migrate
    server = PostgresServer()
    try:
        server.start()
        url = server.create_database()
        migrate(url, make_settings)
        yield server, url
    finally:
        server.close()


async def test_postgres_down_the_learner_gets_the_verdict_and_progress_is_saved_later(
        own_postgres, production, tmp_path):
    pg, url = own_postgres
    _, env, _ = production                           # the worker writes to this test's Postgres
    env = {**env, "LS_DATABASE_URL": url}
    worker = WorkerProcess({**env, "PATH": os.environ.get("PATH", "")}, tmp_path / "own-worker.log")
    worker.start()
    try:
        with served(env, tmp_path / "serve.log") as server:
            site = site_of(server)
            pages = [await Page.open(site) for _ in range(3)]
            for page in pages:
                result, _ = await page.run("hello", "print('hello')", run="before")
                assert result["verdict"]["passed"]
            newcomer = await Page.open(site)             # no row yet: its first run needs one
            pg.stop()
            for page in pages:
                result, _ = await page.run("hello", "print('hello')", run="during")
                assert result["verdict"]["passed"]
                assert "Your progress will be saved when the database is back." in \
                    result["verdict"]["message"]
            health = await site.get("/healthz")      # still in the load balancer: it serves
            body = json.loads(health.body)
            assert health.code == 200 and body["status"] == "degraded"
            assert body["down"] == ["database"] and body["checks"]["database"] != "ok"
            assert body["degraded"]["progress"].startswith("3 progress writes wait")
            assert (await site.get("/lessons/practice")).code == 200    # pages are served
            await newcomer.send(type="run", run="first", exercise="hello", code="print('hello')")
            error, _ = await newcomer.until("error")     # told, not left waiting
            assert "something on our side failed" in error["message"] and error["retry_after"] > 0
            await asyncio.sleep(5)                   # a longer outage than the runs alone
            pg.start()
            back = time.monotonic()
            wait_until(lambda: answered(url, "SELECT count(*), sum(attempts) FROM progress")
                       == [(3, 6)], 15, "the progress kept during the outage")
            saved_after = time.monotonic() - back
            wait_until(lambda: len(answered(url, "SELECT id FROM runs") or ()) == 6, 60,
                       "every run traced")
            traced_after = time.monotonic() - back
            print(f"\nprogress saved {saved_after:.2f} s, traces {traced_after:.2f} s after Postgres"
                  " came back")
            assert runs(url).count(("ok", "passed")) == 6
            health = await site.get("/healthz")
            assert health.code == 200 and "degraded" not in json.loads(health.body)
            assert json.loads(health.body)["status"] == "ok"
    finally:
        worker.stop()


def test_health_answers_200_degraded_while_the_shared_database_is_away():
    status, body = health({"database": "OperationalError: connection refused", "docker": "ok"},
                          {"progress": "2 progress writes wait for the database; runs go on"})
    assert status == 200 and body["status"] == "degraded" and body["down"] == ["database"]
    assert body["degraded"] == {"progress": "2 progress writes wait for the database; runs go on"}


def test_health_answers_503_when_this_hosts_own_dependency_is_down():
    status, body = health({"database": "OperationalError: refused", "docker": "no answer within 2s"},
                          {})
    assert status == 503 and body["status"] == "down" and body["down"] == ["database", "docker"]
    assert health({"database": "ok", "redis": "ConnectionError: refused"}, {})[0] == 503


def test_health_is_ok_only_with_every_check_ok_and_nothing_worked_around():
    assert health({"database": "ok"}, {}) == (200, {"status": "ok", "down": [],
                                                    "checks": {"database": "ok"}})
    status, body = health({"database": "ok"}, {"traces": "kept on local disk"})
    assert (status, body["status"]) == (200, "degraded")
