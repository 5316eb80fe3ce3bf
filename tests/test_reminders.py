"""Reminders: the pure rule on values; the job against real databases, run twice; the signed
one-click unsubscribe link over HTTP; and the schedule in a real worker with Redis and SMTP."""
from __future__ import annotations

import asyncio
import datetime as dt
import urllib.parse

import pytest
import sqlalchemy as sa

from server import db
from server.mail.reminders import (LessonActivity, Learner, reminder_for, unsubscribe_token,
                                   unsubscribed_user)
from server.models import Progress, utcnow
from server.store import accounts, emails, progress
from server.store import reminders as store
from workers import deps
from workers.reminders import send_reminders

NOW = dt.datetime(2026, 11, 29, 12, tzinfo=dt.timezone.utc)
DAYS = 7


def lesson(slug, passed, total, days_ago):
    return LessonActivity(slug, slug.title(), passed, total, NOW - dt.timedelta(days=days_ago))


def learner(*lessons, reminded_days_ago=None):
    return Learner("u1", "ada@example.org", tuple(lessons),
                   None if reminded_days_ago is None else NOW - dt.timedelta(days=reminded_days_ago))


def test_an_idle_learner_is_reminded_of_the_unfinished_lesson_it_touched_last():
    due = reminder_for(learner(lesson("loops", 1, 3, 9), lesson("lists", 0, 2, 8),
                               lesson("intro", 2, 2, 7.5)), NOW, DAYS)
    assert (due.lesson_slug, due.lesson_title) == ("lists", "Lists")
    assert due.trigger == f"u1:{(NOW - dt.timedelta(days=7.5)).isoformat()}"   # the last activity


@pytest.mark.parametrize("case", [
    learner(lesson("loops", 1, 3, 6.9)),                             # active within the period
    learner(lesson("loops", 3, 3, 30)),                              # nothing unfinished
    learner(lesson("loops", 1, 3, 30), reminded_days_ago=6),         # reminded within the period
    learner(),                                                       # never started anything
])
def test_no_reminder(case):
    assert reminder_for(case, NOW, DAYS) is None


def test_reminders_can_be_switched_off_and_come_again_after_a_period():
    idle = learner(lesson("loops", 1, 3, 30), reminded_days_ago=8)
    assert reminder_for(idle, NOW, 0) is None
    assert reminder_for(idle, NOW, DAYS) is not None


def test_unsubscribe_tokens_are_signed_for_one_user():
    token = unsubscribe_token("secret", "u1")
    assert unsubscribed_user("secret", token) == "u1"
    assert unsubscribed_user("other secret", token) is None
    assert unsubscribed_user("secret", token.replace("dTE=", "dTI=")) is None   # u1 -> u2
    assert unsubscribed_user("secret", "") is None


async def idle_learner(engine, email, days_ago=10, verified=True, lesson="values-and-printing"):
    account = await accounts.create(engine, email, "h", verified=verified)
    await progress.record(engine, account.id, lesson, "hello", True, "x")
    async with engine.begin() as conn:
        await conn.execute(sa.update(Progress).where(Progress.user_id == account.id)
                           .values(updated_at=utcnow() - dt.timedelta(days=days_ago)))
    return account


@pytest.fixture(params=["sqlite", "postgres"])
async def catalog_db(request, make_settings):
    """A migrated database holding the bundled course, and its settings (embedded jobs)."""
    from server.app import load_library
    from server.store import catalog
    from kernels.plugins import discover
    env = {"LS_COOKIE_SECRET": "s", "LS_PUBLIC_URL": "http://lessons.example.org"}
    if request.param == "postgres":
        env["LS_DATABASE_URL"] = request.getfixturevalue("fresh_pg_url")
    settings = make_settings(**env)
    db.upgrade(settings)
    engine = db.create_engine(settings)
    library = load_library(settings, discover())
    await catalog.sync_catalog(engine, catalog.entries_from(library.catalog))
    yield settings, engine
    await engine.dispose()


def run_job(settings) -> int:
    job_deps = deps.JobDeps(settings)
    try:
        with deps.provided(job_deps):
            return send_reminders()
    finally:
        job_deps.close()


async def test_the_job_reminds_each_idle_learner_once_however_often_it_runs(catalog_db):
    settings, engine = catalog_db
    ada = await idle_learner(engine, "ada@example.org")
    await idle_learner(engine, "bob@example.org", days_ago=2)            # active lately
    await idle_learner(engine, "cy@example.org", verified=False)          # never confirmed
    await idle_learner(engine, "eve@example.org", lesson="withdrawn")     # no such lesson now
    off = await idle_learner(engine, "dee@example.org")
    await store.unsubscribe(engine, off.id)
    first = await asyncio.to_thread(run_job, settings)
    again = await asyncio.gather(*(asyncio.to_thread(run_job, settings) for _ in range(2)))
    sent = [e for e in await emails.recent(engine) if e.kind == "reminder"]
    recipients = sorted(e.recipient for e in sent)
    assert first == len(recipients) and again == [0, 0]
    assert recipients == ["ada@example.org"]
    [to_ada] = [e for e in sent if e.recipient == "ada@example.org"]
    assert to_ada.status == "sent" and "/lessons/values-and-printing" in to_ada.outbox
    token = urllib.parse.unquote(to_ada.outbox.split("unsubscribe?token=", 1)[1].split()[0])
    assert unsubscribed_user("s", token) == ada.id
