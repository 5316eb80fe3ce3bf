"""Faults under runs, end to end: a real `lessonserver serve` process in production mode
(Postgres, Redis, a `lessonserver worker`, local sandbox), learners on the lesson socket,
then Postgres counted: every run with a verdict traced and saved, no row left `running`."""
from __future__ import annotations

import asyncio
import os
import signal
import time
from urllib.parse import urlsplit

import pytest

from tests.serve_process import served
from tests.test_exercise_ws import COURSE, LESSON, Page
from tests.test_pages import Served
from tests.test_trace_pipeline import pipeline, wait_until  # noqa: F401
from tests.test_trace_support import fetch_all

SLOW = "import time\ntime.sleep(2)\nprint('hello')"


@pytest.fixture
def production(pipeline, tmp_path, instance_name):  # noqa: F811
    """Env for a serve process on the pipeline's Postgres and Redis, with a worker running."""
    settings, new_worker = pipeline
    new_worker()
    lessons = tmp_path / "lessons" / "practice"
    lessons.mkdir(parents=True)
    (lessons / COURSE).write_text("title: Practice\ndescription: drills\n")
    (lessons / "practice.md").write_text(LESSON)
    env = {"LS_DATABASE_URL": settings.database_url, "LS_REDIS_URL": settings.redis_url,
           "LS_LESSONS_DIR": str(tmp_path / "lessons"), "LS_SANDBOX": "local",
           "LS_INSTANCE": instance_name, "LS_POOL_SIZE": "0", "LS_RUN_TIMEOUT": "10",
           "LS_DATA_DIR": str(tmp_path / "serve-data"), "LS_TRACE_FLUSH": "0.05",
           "LS_SHUTDOWN_GRACE": "15"}
    return settings.database_url, env


def site_of(server) -> Served:
    return Served(urlsplit(server.url).port)


def runs(url: str) -> list[tuple]:
    return fetch_all(url, "SELECT status, verdict FROM runs ORDER BY requested_at")


def process_gone(pid: int) -> bool:
    """Exited (a zombie until `served` reaps it counts as gone)."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


async def test_sigterm_finishes_runs_in_flight_and_refuses_new_ones_in_plain_words(production, tmp_path):
    url, env = production
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


async def test_runs_a_killed_server_left_open_are_closed_by_the_next_start(production, tmp_path):
    url, env = production
    with served(env, tmp_path / "serve1.log") as server:
        page = await Page.open(site_of(server))
        await page.send(type="run", run="slow", exercise="hello", code=SLOW)
        await page.until("started")
        wait_until(lambda: runs(url) == [("running", None)], 10, "the run's start traced")
        os.kill(server.pid, signal.SIGKILL)
        wait_until(lambda: process_gone(server.pid), 10, "the server to die")
    assert runs(url) == [("running", None)]
    with served(env, tmp_path / "serve2.log"):
        started = time.monotonic()
        wait_until(lambda: runs(url) == [("interrupted", None)], 15, "the open run closed")
        print(f"\nrun left open closed {time.monotonic() - started:.2f} s after the restart")
