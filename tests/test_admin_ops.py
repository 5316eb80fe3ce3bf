"""The operations page over real servers: kernels ended from it, pools drained and resumed,
failed RQ jobs (made by a real worker) retried and discarded, lessons reloaded from disk with
the check report; each action audited, XSRF-checked and refused to learners and anonymous."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import shutil
import time
from pathlib import Path

import pytest
import redis as sync_redis
import rq
import tornado.httpclient
import tornado.websocket
from rq.job import Job

from server.admin import flags

from server.admin import operations
from server.course.check import CheckResult
from server.course.model import LessonError
from server.handlers import admin_ops
from server.handlers.exercise_ws import RUNS_PAUSED_MESSAGE
from server.store import accounts
from tests.accounts_support import Client, text
from tests.admin_support import TOKEN
from tests.serve_process import lessonserver
from tests.test_accounts_http import close_site, open_site, signed_up

BUNDLED = Path(__file__).resolve().parent.parent / "lessons"
API = {"Authorization": f"token {TOKEN}"}
NEW_LESSON = """---
title: Reloaded without a restart
slug: shell-reloaded
order: 9
kernel: bash
summary: A lesson added while the server ran.
---
# Reloaded without a restart

```bash exercise id=hi title="Say hi"
# --- expected output ---
hi
# --- solution ---
echo hi
```
"""


async def token_admin(base: str) -> Client:
    admin = Client(base)
    assert (await admin.post("/admin/login", {"token": TOKEN})).code == 302
    return admin


def audit_rows(body: str) -> list[tuple[str, str, str]]:
    """(who, what, to what) of each audit row, newest first."""
    table = body.split('id="audit"', 1)[1]
    return re.findall(r"<td>([^<]*)</td><td>([a-z-]+)</td><td>([^<]*)</td>", table)


@pytest.fixture
async def ops_site(make_settings, tmp_path):
    lessons = tmp_path / "lessons"
    shutil.copytree(BUNDLED, lessons)
    base, engine, handles = await open_site(make_settings, LS_API_TOKEN=TOKEN,
                                            LS_LESSONS_DIR=str(lessons))
    try:
        yield base, engine, lessons
    finally:
        await close_site(handles)


def test_pool_rows_and_reload_refusals_are_plain_values():
    class FakePool:
        size, ready, starting, drained = 2, 1, 1, True
    assert operations.pool_rows({"python": FakePool()}) == [
        operations.PoolRow("python", 2, 1, 1, True)]
    error = LessonError("x.md", 3, "bad")
    assert operations.refusal(CheckResult((), 0, ()), force=True).startswith("No lessons")
    assert "1 errors" in operations.refusal(CheckResult(("lesson",), 1, (error,)), force=False)
    assert operations.refusal(CheckResult(("lesson",), 1, (error,)), force=True) is None
    assert operations.refusal(CheckResult(("lesson",), 1, ()), force=False) is None


async def test_kernels_are_listed_and_ended_from_the_operations_page(ops_site):
    base, _, _ = ops_site
    admin = await token_admin(base)
    started = await admin.fetch("/api/kernels", "POST", json.dumps({"name": "python"}), headers=API)
    kernel_id = json.loads(started.body)["id"]
    page = await admin.get("/admin/operations")
    assert page.code == 200 and f"/admin/kernels/{kernel_id}/end" in text(page)
    ended = await admin.post(f"/admin/kernels/{kernel_id}/end", {"next": "/admin/operations"})
    assert ended.code == 302 and ended.headers["Location"] == "/admin/operations"
    assert kernel_id not in text(await admin.get("/admin/operations"))
    offsite = await admin.post("/admin/kernels/nope/end", {"next": "//evil.example"})
    assert offsite.code == 404


async def test_a_pool_is_drained_and_resumed_and_both_are_audited(ops_site):
    base, _, _ = ops_site
    admin = await token_admin(base)
    row = r'<tr data-pool="bash"><td>bash</td><td>{}</td>'
    assert re.search(row.format("warming"), text(await admin.get("/admin/operations")))
    assert (await admin.post("/admin/pools/bash/drain", xsrf=False)).code == 403
    assert re.search(row.format("warming"), text(await admin.get("/admin/operations")))
    drained = await admin.post("/admin/pools/bash/drain")
    assert drained.code == 302 and drained.headers["Location"] == "/admin/operations"
    assert re.search(row.format("drained"), text(await admin.get("/admin/operations")))
    assert (await admin.post("/admin/pools/bash/resume")).code == 302
    assert re.search(row.format("warming"), text(await admin.get("/admin/operations")))
    assert (await admin.post("/admin/pools/cobol/drain")).code == 404
    audit = audit_rows(text(await admin.get("/admin")))
    assert audit[:2] == [("API token", "resume-pool", "bash"), ("API token", "drain-pool", "bash")]


async def test_lessons_reload_from_disk_with_the_check_report(ops_site):
    base, _, lessons = ops_site
    admin, visitor = await token_admin(base), Client(base)
    assert "shell-reloaded" not in text(await visitor.get("/"))     # now cached
    (lessons / "shell" / "09-reloaded.md").write_text(NEW_LESSON)
    reloaded = await admin.post("/admin/lessons/reload")
    body = text(reloaded)
    assert reloaded.code == 200 and 'id="reload-applied"' in body and "0 errors" in body
    assert "shell-reloaded" in text(await visitor.get("/"))         # the cached page was dropped
    assert (await visitor.get("/lessons/shell-reloaded")).code == 200
    # A broken lesson: the report names file and line, and the served course stays.
    (lessons / "shell" / "09-reloaded.md").write_text(NEW_LESSON.replace("kernel: bash", "kernel: cobol"))
    refused = text(await admin.post("/admin/lessons/reload"))
    assert "the course being served is kept" in refused and "09-reloaded.md" in refused
    assert (await visitor.get("/lessons/shell-reloaded")).code == 200
    forced = text(await admin.post("/admin/lessons/reload", {"force": "1"}))
    assert 'id="reload-applied"' in forced and "1 errors" in forced
    assert (await visitor.get("/lessons/shell-reloaded")).code == 404
    audit = audit_rows(text(await admin.get("/admin")))
    assert [row[1] for row in audit[:3]] == ["reload-lessons"] * 3


ROUTES = {  # every operations route, and a request that would change something
    r"/admin/operations": ("GET", "/admin/operations"),
    r"/admin/pools/([a-z0-9_-]{1,64})/(drain|resume)": ("POST", "/admin/pools/bash/drain"),
    r"/admin/jobs/([a-z0-9_-]{1,64})/(retry|discard)": ("POST", "/admin/jobs/emails/discard"),
    r"/admin/lessons/reload": ("POST", "/admin/lessons/reload"),
    r"/admin/flags/([a-z0-9_]{1,64})": ("POST", "/admin/flags/signups_open"),
}


def test_the_authorization_test_covers_every_operations_route():
    assert {p for p, *_ in admin_ops.routes(None, None, None, None)} == set(ROUTES)


async def test_no_operation_is_open_to_a_learner_or_anonymous(ops_site):
    base, engine, lessons = ops_site
    learner = await signed_up(base, engine)
    (lessons / "shell" / "09-reloaded.md").write_text(NEW_LESSON)
    for browser in (learner, Client(base)):
        for method, path in ROUTES.values():
            response = await (browser.post(path, {"job": "x", "value": "off"}) if method == "POST"
                              else browser.get(path))
            assert response.code == 403 or (response.code == 302 and response.headers[
                "Location"].startswith("/admin/login")), (path, response.code)
            assert "Pools" not in text(response) and "drain" not in text(response)
    admin = await token_admin(base)
    page = text(await admin.get("/admin/operations"))
    assert '<td>bash</td><td>warming</td>' in page                   # nothing was drained
    assert (await Client(base).get("/signup")).code == 200           # no flag was set
    assert (await Client(base).get("/lessons/shell-reloaded")).code == 404   # nor reloaded
    assert [row[1] for row in audit_rows(text(await admin.get("/admin")))] == ["sign-in"]


@pytest.fixture
async def rq_site(make_settings, fresh_pg_url, redis_url):
    base, engine, handles = await open_site(make_settings, LS_API_TOKEN=TOKEN,
                                            LS_DATABASE_URL=fresh_pg_url, LS_REDIS_URL=redis_url)
    connection = sync_redis.Redis.from_url(redis_url)
    try:
        yield base, connection
    finally:
        connection.close()
        await close_site(handles)


def failed_emails(connection, count: int) -> list[str]:
    """Jobs on the emails queue that a real worker ran and saw fail."""
    queue = rq.Queue("emails", connection=connection)
    jobs = [queue.enqueue("json.loads", "{broken", description=f"test email {i}")
            for i in range(count)]
    rq.SimpleWorker([queue], connection=connection).work(burst=True)
    assert all(job.id in queue.failed_job_registry for job in jobs)
    return [job.id for job in jobs]


async def test_failed_jobs_are_retried_and_discarded(rq_site):
    base, connection = rq_site
    retried, discarded = failed_emails(connection, 2)
    admin = await token_admin(base)
    body = text(await admin.get("/admin/operations"))
    assert f'data-job="{retried}"' in body and f'data-job="{discarded}"' in body
    assert "JSONDecodeError" in body and "test email 0" in body
    assert (await admin.post("/admin/jobs/emails/retry", {"job": retried})).code == 302
    queue = rq.Queue("emails", connection=connection)
    assert retried in queue.job_ids and retried not in queue.failed_job_registry
    assert (await admin.post("/admin/jobs/emails/discard", {"job": discarded})).code == 302
    assert discarded not in queue.failed_job_registry
    assert not Job.exists(discarded, connection=connection)
    assert (await admin.post("/admin/jobs/emails/discard", {"job": discarded})).code == 404
    assert (await admin.post("/admin/jobs/nowhere/retry", {"job": retried})).code == 404
    audit = audit_rows(text(await admin.get("/admin")))
    assert ("API token", "discard-job", f"emails/{discarded}") in audit
    assert ("API token", "retry-job", f"emails/{retried}") in audit
    queue.empty()


def test_flag_states_fall_back_to_defaults_and_toggles_name_bad_input():
    at = dt.datetime(2026, 11, 29, tzinfo=dt.timezone.utc)
    states = flags.states_of([("runs_paused", True, at, "root"), ("retired_flag", True, at, "x")])
    assert set(states) == set(flags.FLAGS)
    assert states["runs_paused"] == flags.FlagState(flags.RUNS_PAUSED, True, at, "root")
    assert states["signups_open"] == flags.FlagState(flags.SIGNUPS_OPEN, True, None, "")
    assert flags.parse_toggle("signups_open", "off") == (flags.SIGNUPS_OPEN, False)
    with pytest.raises(flags.UnknownFlag, match="'nope'"):
        flags.parse_toggle("nope", "on")
    with pytest.raises(ValueError, match="'maybe'"):
        flags.parse_toggle("runs_paused", "maybe")


async def lesson_socket(base: str, slug: str = "shell-first-commands"):
    page = await Client(base).get(f"/lessons/{slug}")
    assert page.code == 200
    cookie = "; ".join(c.split(";", 1)[0] for c in page.headers.get_list("Set-Cookie"))
    return await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(
        base.replace("http", "ws") + f"/lessons/{slug}/ws", headers={"Cookie": cookie}))


async def frame_of_run(socket, run: str) -> dict:
    while True:
        frame = json.loads(await asyncio.wait_for(socket.read_message(), 10))
        if frame.get("run") == run:
            return frame


async def test_flags_close_sign_ups_and_pause_runs_and_are_audited(ops_site):
    base, engine, _ = ops_site
    admin = await token_admin(base)
    assert (await admin.post("/admin/flags/signups_open", {"value": "off"}, xsrf=False)).code == 403
    assert (await admin.post("/admin/flags/signups_open", {"value": "off"})).code == 302
    row = text(await admin.get("/admin/operations")).split('data-flag="signups_open"', 1)[1]
    assert '<td class="flag-state">off</td>' in row.split("</tr>", 1)[0] and "by API token" in row
    closed = await Client(base).get("/signup")
    assert closed.code == 403 and "Sign-ups are closed for now" in text(closed)
    refused = await Client(base).post("/signup", {"email": "new@example.org", "password": "x" * 12})
    assert refused.code == 403 and await accounts.by_email(engine, "new@example.org") is None
    assert (await admin.post("/admin/flags/signups_open", {"value": "on"})).code == 302
    assert (await Client(base).get("/signup")).code == 200

    assert (await admin.post("/admin/flags/runs_paused", {"value": "on"})).code == 302
    socket = await lesson_socket(base)
    await socket.write_message(json.dumps({"type": "run", "run": "r1", "exercise": "echo",
                                           "code": "echo Hello, shell!"}))
    answer = await frame_of_run(socket, "r1")
    assert answer["type"] == "error" and answer["message"] == RUNS_PAUSED_MESSAGE
    socket.close()
    kernels = await admin.fetch("/api/kernels", headers=API)
    assert json.loads(kernels.body) == []                      # no kernel was started for it
    assert (await admin.post("/admin/flags/nope", {"value": "on"})).code == 404
    assert (await admin.post("/admin/flags/runs_paused", {"value": "maybe"})).code == 400
    audit = audit_rows(text(await admin.get("/admin")))
    assert audit[:3] == [("API token", "set-flag", "runs_paused"),
                         ("API token", "set-flag", "signups_open"),
                         ("API token", "set-flag", "signups_open")]


async def test_a_toggle_on_one_server_process_reaches_another_within_the_refresh(
        rq_site, fresh_pg_url, redis_url, instance_name, tmp_path):
    """This test's server and a `lessonserver serve` subprocess share Postgres and Redis."""
    base, _ = rq_site
    env = {"LS_DATABASE_URL": fresh_pg_url, "LS_REDIS_URL": redis_url, "LS_API_TOKEN": TOKEN,
           "LS_INSTANCE": instance_name, "LS_POOL_SIZE": "0", "LS_SANDBOX": "local"}
    with lessonserver(tmp_path, **env) as other:
        admin = await token_admin(base)
        for value, code in (("off", 403), ("on", 200)):
            assert (await admin.post("/admin/flags/signups_open", {"value": value})).code == 302
            began = time.monotonic()
            while (await Client(other.url).get("/signup")).code != code:
                assert time.monotonic() - began < flags.REFRESH + 2, "the other process never saw it"
                await asyncio.sleep(0.1)
