"""The access watch on real databases: kernels are closed once when access ends, never for old ends."""
from __future__ import annotations

import asyncio
import datetime as dt
import time

from server.billing.machine import DAY
from server.billing.watch import CLOSED_MESSAGE, AccessWatch
from server.store import grants, subscriptions, users
from server.store.subscriptions import Subscription


def utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc)


async def test_kernels_are_closed_once_when_access_ends_or_a_grace_runs_out(db_engine):
    closed: list[tuple[str, str]] = []

    async def close(user_id: str, message: str) -> int:
        closed.append((user_id, message))
        return 1

    grace_days = 1.0
    old, canceled, past_due, active = [(await users.create_anonymous(db_engine)).id for _ in range(4)]
    now = time.time()
    await subscriptions.put(db_engine, Subscription(old, "canceled", access_ended_at=utc(now - 3600)))
    await subscriptions.put(db_engine, Subscription(active, "active", stripe_subscription_id="sub_a"))
    watch = AccessWatch(db_engine, close, grace_days)
    # The grace of this failed renewal runs out half a second from now.
    await subscriptions.put(db_engine, Subscription(
        past_due, "past_due", current_period_start=utc(now - grace_days * DAY + 0.5)))
    assert await watch.check() == 0

    await subscriptions.put(db_engine, Subscription(canceled, "canceled", access_ended_at=utc(time.time())))
    assert await watch.check() == 1
    assert closed == [(canceled, CLOSED_MESSAGE)]
    await asyncio.sleep(0.6)
    assert await watch.check() == 1
    assert closed[-1] == (past_due, CLOSED_MESSAGE)
    assert await watch.check() == 0                       # each end closes kernels once
    assert [user for user, _ in closed] == [canceled, past_due]


async def test_a_learner_with_an_admins_grant_keeps_its_kernels_when_the_subscription_ends(db_engine):
    closed: list[str] = []

    async def close(user_id: str, message: str) -> int:
        closed.append(user_id)
        return 1

    granted, expired = [(await users.create_anonymous(db_engine)).id for _ in range(2)]
    await grants.put(db_engine, granted, utc(time.time() + DAY), "admin@example.org")
    await grants.put(db_engine, expired, utc(time.time() - 1), "admin@example.org")
    watch = AccessWatch(db_engine, close, 1.0)
    for user in (granted, expired):
        await subscriptions.put(db_engine, Subscription(user, "canceled",
                                                        access_ended_at=utc(time.time())))
    await watch.check()
    assert closed == [expired]                   # a grant that ran out opens nothing


async def test_the_closer_shuts_the_learners_real_kernels_with_the_plain_message(make_settings):
    """A real KernelManager on the local sandbox: only that learner's kernels go, with the reason."""
    from kernels.events import KernelGone
    from kernels.manager import KernelManager
    from kernels.plugins import discover
    from kernels.sandbox import create_sandbox
    from server.billing.watch import kernel_closer

    gone: list = []
    settings = make_settings(LS_SANDBOX="local")
    manager = KernelManager(settings, create_sandbox(settings), discover(),
                            on_event=[lambda e: gone.append(e) if isinstance(e, KernelGone) else None])
    await manager.startup()
    try:
        mine = await manager.start("learner", "python")
        other = await manager.start("someone-else", "python")
        close = kernel_closer(manager)
        assert await close("learner", CLOSED_MESSAGE) == 1
        assert manager.get(mine.id) is None and manager.get(other.id) is not None
        assert [(e.kernel_id, e.reason) for e in gone] == [(mine.id, CLOSED_MESSAGE)]
        assert await close("learner", CLOSED_MESSAGE) == 0
    finally:
        await manager.close()
        await manager.sandbox.close()
