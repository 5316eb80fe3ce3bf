"""Closes the kernels of learners whose access ended, in the server that holds them.

Workers store the end of access (`access_ended_at`); a past_due grace runs out
by itself. Every few seconds each server reads both and closes the kernels
that those learners hold on this host, with a plain message.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from server.learning import access
from server.billing.machine import DAY
from server.periodic import Every
from server.store import grants, subscriptions as store
from server.store.subscriptions import Subscription

log = logging.getLogger("lessonserver.billing")

EVERY = 2.0                  # seconds between looks
OVERLAP = 120.0              # seconds each look reaches back: a worker's commit may land late
CLOSED_MESSAGE = "Your subscription has ended, so paid lessons are locked; this kernel was closed."

CloseKernels = Callable[[str, str], Awaitable[int]]   # (user id, message) -> kernels closed


def ended_between(row: Subscription, start: float, end: float, grace_days: float) -> float | None:
    """When the row's access ended, if within [start, end): stored by a worker, or a grace run out."""
    if row.access_ended_at is not None and start <= row.access_ended_at.timestamp() < end:
        return row.access_ended_at.timestamp()
    if row.status == "past_due":
        since = row.current_period_start or row.updated_at
        if since is not None and start <= since.timestamp() + grace_days * DAY < end:
            return since.timestamp() + grace_days * DAY
    return None


class AccessWatch:
    def __init__(self, engine: AsyncEngine, close_kernels: CloseKernels, grace_days: float,
                 every: float = EVERY) -> None:
        self.engine = engine
        self.close_kernels = close_kernels
        self.grace_days = grace_days
        self.checked_to = time.time()          # ends before start-up are not ours to act on
        self._done: dict[tuple[str, float], float] = {}
        self._looks = Every(every, self.check, "billing access watch", at_once=True)

    async def check(self) -> int:
        """One look; returns how many kernels were closed."""
        now = time.time()
        start = self.checked_to - OVERLAP
        rows = await store.access_changes(self.engine, dt.datetime.fromtimestamp(start, dt.timezone.utc))
        closed = 0
        for row in rows:
            ended = ended_between(row, start, now, self.grace_days)
            if ended is None or (row.user_id, ended) in self._done:
                continue
            self._done[(row.user_id, ended)] = now
            grant = await grants.get(self.engine, row.user_id)
            if access.paid_access(False, grant.until if grant else None, now):
                continue                 # an admin's grant keeps paid lessons open
            closed += await self.close_kernels(row.user_id, CLOSED_MESSAGE)
        self.checked_to = now
        self._done = {key: at for key, at in self._done.items() if at > now - 2 * OVERLAP}
        return closed

    async def start(self) -> None:
        self._looks.start()

    async def close(self) -> None:
        await self._looks.close()


def kernel_closer(manager) -> CloseKernels:
    """Close every kernel the learner holds on this host (KernelManager's public API): when access
    ends, and when the account is deleted (server/accounts/deletion.py)."""
    from kernels.manager import UnknownKernel

    async def close(user_id: str, message: str) -> int:
        kernels = manager.list(user_id)
        for kernel in kernels:
            try:
                await manager.shutdown(kernel.id, message)
            except UnknownKernel:
                pass                 # gone meanwhile
        if kernels:
            log.info("kernels closed", extra={"fields": {"user": user_id, "kernels": len(kernels),
                                                         "reason": message}})
        return len(kernels)
    return close
