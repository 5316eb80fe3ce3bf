"""Accounts, sessions, emailed tokens, carry-over and deletion on SQLite and Postgres."""
from __future__ import annotations

import asyncio
import datetime as dt

import pytest
import sqlalchemy as sa

from server.accounts.tokens import Purpose
from server.models import Run, TraceEvent, utcnow
from server.store import accounts, emails, progress, sessions, tokens, users

DAY = dt.timedelta(days=1)


async def test_accounts_by_address_and_a_taken_address(db_engine):
    made = await accounts.create(db_engine, "ada@example.org", "hash")
    assert await accounts.by_email(db_engine, "ada@example.org") == made
    assert not made.verified
    with pytest.raises(accounts.AddressTaken):
        await accounts.create(db_engine, "ada@example.org", "other")
    assert await accounts.mark_verified(db_engine, made.id)
    assert not await accounts.mark_verified(db_engine, made.id)      # only the first time
    anonymous = await users.create_anonymous(db_engine)
    assert await accounts.by_id(db_engine, anonymous.id) is None      # not an account


async def test_make_admin_creates_or_promotes(db_engine):
    created = await accounts.make_admin(db_engine, "root@example.org")
    assert created.is_admin and created.verified and created.password_hash is None
    learner = await accounts.create(db_engine, "bob@example.org", "h")
    promoted = await accounts.make_admin(db_engine, "bob@example.org")
    assert promoted.id == learner.id and (await users.get(db_engine, learner.id)).is_admin


async def test_sessions_sign_in_until_ended_or_too_old(db_engine):
    account = await accounts.create(db_engine, "ada@example.org", "h")
    first = await sessions.start(db_engine, account.id, "Firefox", "10.0.0.1")
    second = await sessions.start(db_engine, account.id, "Chromium", "10.0.0.2")
    assert first != second
    assert (await sessions.user_of(db_engine, first, DAY)).id == account.id
    assert await sessions.user_of(db_engine, "forged", DAY) is None
    assert await sessions.user_of(db_engine, first, dt.timedelta(seconds=-1)) is None   # too old
    assert await sessions.end_others(db_engine, account.id, second) == 1
    assert await sessions.user_of(db_engine, first, DAY) is None
    assert [s.user_agent for s in await sessions.of_user(db_engine, account.id)] == ["Chromium"]
    await sessions.end(db_engine, second)
    assert await sessions.user_of(db_engine, second, DAY) is None


async def test_tokens_redeem_once_for_their_purpose_and_not_when_expired(db_engine):
    account = await accounts.create(db_engine, "ada@example.org", "h")
    issued = await tokens.issue(db_engine, Purpose.RESET, account.id, DAY, "anon")
    other = await tokens.issue(db_engine, Purpose.RESET, account.id, DAY)
    assert await tokens.redeem(db_engine, issued.secret, Purpose.MAGIC) is None   # wrong purpose
    assert await tokens.peek(db_engine, issued.secret, Purpose.RESET)
    assert await tokens.redeem(db_engine, issued.secret, Purpose.RESET) == tokens.Redeemed(account.id, "anon")
    assert await tokens.redeem(db_engine, issued.secret, Purpose.RESET) is None   # used
    assert await tokens.redeem(db_engine, other.secret, Purpose.RESET) is None    # siblings too
    expired = await tokens.issue(db_engine, Purpose.MAGIC, account.id, -dt.timedelta(seconds=1))
    assert not await tokens.peek(db_engine, expired.secret, Purpose.MAGIC)
    assert await tokens.redeem(db_engine, expired.secret, Purpose.MAGIC) is None


async def test_concurrent_clicks_redeem_a_token_once(db_engine):
    account = await accounts.create(db_engine, "ada@example.org", "h")
    issued = await tokens.issue(db_engine, Purpose.MAGIC, account.id, DAY)
    results = await asyncio.gather(*(tokens.redeem(db_engine, issued.secret, Purpose.MAGIC)
                                     for _ in range(5)), return_exceptions=True)
    assert sum(isinstance(r, tokens.Redeemed) for r in results) == 1


async def add_run(engine, run_id, user_id):
    async with engine.begin() as conn:
        await conn.execute(sa.insert(Run).values(id=run_id, user_id=user_id, status="ok"))
        await conn.execute(sa.insert(TraceEvent).values(id=run_id[::-1], run_id=run_id, seq=0,
                                                        ts=utcnow(), kind="requested", data={}))


async def test_carry_over_moves_progress_and_runs_and_drops_the_anonymous_user(db_engine):
    account = await accounts.create(db_engine, "ada@example.org", "h")
    anonymous = await users.create_anonymous(db_engine)
    await progress.record(db_engine, account.id, "intro", "a", True, "mine")
    await progress.record(db_engine, anonymous.id, "intro", "a", False, "theirs")
    await progress.record(db_engine, anonymous.id, "intro", "b", True, "b")
    await add_run(db_engine, "r" * 32, anonymous.id)
    assert await accounts.carry_over(db_engine, anonymous.id, account.id) == 2
    rows = {r.exercise_id: r for r in await progress.get_for_user(db_engine, account.id)}
    assert (rows["a"].status.value, rows["a"].attempts, rows["a"].code) == ("passed", 2, "theirs")
    assert rows["b"].status.value == "passed"
    assert await users.get(db_engine, anonymous.id) is None
    async with db_engine.connect() as conn:
        assert (await conn.execute(sa.select(Run.user_id))).scalar_one() == account.id


async def test_carry_over_never_takes_from_another_account(db_engine):
    ada = await accounts.create(db_engine, "ada@example.org", "h")
    bob = await accounts.create(db_engine, "bob@example.org", "h")
    await progress.record(db_engine, bob.id, "intro", "a", True, "bob's")
    assert await accounts.carry_over(db_engine, bob.id, ada.id) == 0
    assert await progress.get_for_user(db_engine, ada.id) == []
    assert len(await progress.get_for_user(db_engine, bob.id)) == 1


async def test_deleting_an_account_removes_everything_that_names_it(db_engine):
    ada = await accounts.create(db_engine, "ada@example.org", "h")
    bob = await accounts.create(db_engine, "bob@example.org", "h")
    for user in (ada, bob):
        await progress.record(db_engine, user.id, "intro", "a", True, "x")
        await sessions.start(db_engine, user.id, "ua", "ip")
        await tokens.issue(db_engine, Purpose.MAGIC, user.id, DAY)
        await emails.record(db_engine, emails.email_id("welcome", user.id), user.id, "welcome",
                            user.email, "Welcome")
        await add_run(db_engine, user.id, user.id)
    await accounts.delete(db_engine, ada.id)
    assert await users.get(db_engine, ada.id) is None
    assert await progress.get_for_user(db_engine, ada.id) == []
    assert await sessions.of_user(db_engine, ada.id) == []
    async with db_engine.connect() as conn:
        assert (await conn.execute(sa.select(Run.id))).scalars().all() == [bob.id]
        assert (await conn.execute(sa.select(TraceEvent.run_id))).scalars().all() == [bob.id]
    assert [e.recipient for e in await emails.recent(db_engine)] == ["bob@example.org"]
    assert len(await progress.get_for_user(db_engine, bob.id)) == 1


async def test_an_email_is_recorded_once_per_trigger(db_engine):
    key = emails.email_id("welcome", "user-1")
    assert key != emails.email_id("magic", "user-1")
    assert await emails.record(db_engine, key, None, "welcome", "ada@example.org", "Welcome")
    assert not await emails.record(db_engine, key, None, "welcome", "ada@example.org", "Welcome")
    [logged] = await emails.recent(db_engine)
    assert (logged.status, logged.attempts, logged.outbox) == ("queued", 0, None)
    await emails.forget(db_engine, key)
    assert await emails.recent(db_engine) == []
