"""The last run (what a reloaded page shows) and a shown solution survive sign-up / log-in (the
anonymous carry-over) and a progress write spooled while the database was away; on SQLite and on
real Postgres."""
from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import create_async_engine

from server.accounts.rules import ExerciseProgress, merge_progress
from server.learning.pending_progress import PendingProgress, ProgressWrite
from server.store import accounts, progress, users
from tests.services import free_port

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def row(minutes: int, last_run: str | None, shown: int | None = None) -> ExerciseProgress:
    return ExerciseProgress("intro", "a", "failed", 1, f"code {minutes}", T0 + dt.timedelta(minutes=minutes),
                            last_run, None if shown is None else T0 + dt.timedelta(minutes=shown))


def test_the_newer_submission_keeps_its_last_run_and_a_shown_solution_stays_shown():
    [merged] = merge_progress([row(1, "account's run", shown=1)], [row(2, "anonymous run")])
    assert (merged.code, merged.last_run, merged.attempts) == ("code 2", "anonymous run", 2)
    assert merged.solution_shown_at == T0 + dt.timedelta(minutes=1)
    [merged] = merge_progress([row(3, "account's run")], [row(2, "anonymous run", shown=2)])
    assert (merged.code, merged.last_run) == ("code 3", "account's run")
    assert merged.solution_shown_at == T0 + dt.timedelta(minutes=2)


async def test_sign_up_carries_the_last_run_and_the_shown_solution(db_engine):
    account = await accounts.create(db_engine, "ada@example.org", "h")
    anonymous = await users.create_anonymous(db_engine)
    await progress.record(db_engine, anonymous.id, "intro", "a", False, "print(1)", '{"status": "ok"}')
    await progress.mark_solution_shown(db_engine, anonymous.id, "intro", "a")
    await progress.record(db_engine, account.id, "intro", "b", False, "old", '{"old": true}')
    await progress.record(db_engine, anonymous.id, "intro", "b", True, "new", '{"new": true}')
    assert await accounts.carry_over(db_engine, anonymous.id, account.id) == 2
    assert await progress.last_runs(db_engine, account.id, "intro") == {
        "a": '{"status": "ok"}', "b": '{"new": true}'}
    rows = progress.by_exercise(await progress.get_for_user(db_engine, account.id))
    assert rows[("intro", "a")].solution_shown_at is not None
    assert rows[("intro", "b")].solution_shown_at is None and rows[("intro", "b")].attempts == 2


async def test_a_spooled_progress_write_keeps_its_last_run(db_engine, tmp_path):
    learner = await users.create_anonymous(db_engine)
    spool = tmp_path / "progress-spool"
    away = create_async_engine(f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/gone")
    try:
        pending = PendingProgress(away, spool)
        write = ProgressWrite(learner.id, "intro", "a", False, "print(2)", '{"outputs": ["2"]}')
        assert await pending.record(write) is None           # the database is away: spooled
    finally:
        await away.dispose()
    back = PendingProgress(db_engine, spool)                  # the next start finds the spool
    await back.start()
    try:
        assert back.waiting == 1
        await back._retry()
    finally:
        await back.close()
    assert back.waiting == 0
    assert await progress.last_runs(db_engine, learner.id, "intro") == {"a": '{"outputs": ["2"]}'}
