"""A real server (embedded SQLite) with traced runs in its database, an admin signed in by
password, a signed-in learner and an anonymous browser: what the admin pages' tests share."""
from __future__ import annotations

import dataclasses
import time

import pytest

from kernels.result import LimitHit, Output, RunResult, RunStatus
from server.accounts import passwords
from server.store import accounts
from server.tracing.tracer import RunTracer
from tests.accounts_support import Client
from tests.test_accounts_http import PASSWORD, close_site, logged_in, open_site, signed_up
from workers.trace_store import open_store

TOKEN = "admin-token-" + "x" * 20
HOUR = 3600
OK = RunResult(RunStatus.OK, bytes_out=2)
TIMEOUT = RunResult(RunStatus.LIMIT, limit=LimitHit.TIMEOUT, bytes_out=2)
FAILED = RunResult(RunStatus.ERROR, bytes_out=40)


def traced(user: str, exercise: str, age_hours: float, result: RunResult, code: str = "print(1)",
           output: Output | None = None, pool_hit: bool = True):
    events = []
    tracer = RunTracer(events.append, clock=lambda: time.time() - age_hours * HOUR)
    tracer.requested(user_id=user, lesson_slug="intro", exercise_id=exercise, kernel="python",
                     code=code)
    tracer.kernel_assigned(pool_hit=pool_hit, container_id="c1")
    tracer.output(output or Output("stream", name="stdout", text="1\n"))
    tracer.finished(result)
    return events


@dataclasses.dataclass
class AdminSite:
    base: str
    engine: object
    admin: Client
    learner: Client
    anonymous: Client
    learner_id: str
    runs: dict          # name -> run id


@pytest.fixture
async def admin_site(make_settings):
    base, engine, handles = await open_site(make_settings, LS_API_TOKEN=TOKEN)
    try:
        learner = await signed_up(base, engine)
        learner_id = (await accounts.by_email(engine, "ada@example.org")).id
        admin = await accounts.make_admin(engine, "root@example.org")
        await accounts.set_password(engine, admin.id, await passwords.hash_password(PASSWORD))
        runs = {"ada-old": traced(learner_id, "ex1", 48, OK),
                "ada-timeout": traced(learner_id, "ex2", 1, TIMEOUT, code="while True:\n    pass"),
                "bob": traced("b" * 32, "ex1", 2, OK, pool_hit=False),
                "carol": traced("c" * 32, "ex1", 3, FAILED, code="1/0", output=Output(
                    "error", ename="ZeroDivisionError", evalue="division by zero",
                    traceback=["ZeroDivisionError"]))}
        settings = make_settings(LS_API_TOKEN=TOKEN)
        store = open_store(settings.sqlalchemy_url)
        store.write([e for events in runs.values() for e in events])
        store.close()
        yield AdminSite(base, engine, await logged_in(base, "root@example.org"), learner,
                        Client(base), learner_id,
                        {name: events[0].run_id for name, events in runs.items()})
    finally:
        await close_site(handles)
