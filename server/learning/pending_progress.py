"""Progress writes that outlive a database outage: kept on disk and retried until stored.

A learner who saw a verdict must find it in their progress, even when
Postgres was away at that moment. `record` writes at once when it can (in one transaction
with the writes of runs that finish at the same moment); when
the database does not answer, the write goes to a spool on local disk (fsync'd,
so a server killed meanwhile keeps it) and a background task retries the
spool, oldest first, every `retry_every` seconds, also after a restart. A
write the database refuses for its content is not retried: it is logged.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import zlib
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.rounds import Rounds
from server.store import progress
from server.tracing.spool import Spool

log = logging.getLogger("lessonserver.progress")

SPOOL_DIR = "progress-spool"
# The database is away (refused, reset, restarting) as opposed to refusing the write itself.
DATABASE_AWAY = (sa.exc.OperationalError, sa.exc.InterfaceError, OSError, asyncio.TimeoutError)


# SQLSTATE classes that mean the server is not there for us now: connection exceptions (08)
# and operator intervention (57P01 shut down, 57P02 crashed, 57P03 starting up).
AWAY_STATES = ("08", "57P0")


def sqlstate(exc: BaseException) -> str:
    """The Postgres error code behind a driver's (or SQLAlchemy's wrapped) error, or ""."""
    orig = getattr(exc, "orig", None)
    for source in (exc, orig, getattr(orig, "__cause__", None)):
        code = getattr(source, "sqlstate", None) or getattr(source, "pgcode", None)
        if isinstance(code, str):
            return code
    return ""


def database_away(exc: BaseException) -> bool:
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, DATABASE_AWAY) or sqlstate(exc).startswith(AWAY_STATES)


ProgressWrite = progress.Attempt      # spooled as its fields
LANES = 4    # rounds of writes that may run at once; one learner's writes share one lane


class PendingProgress:
    def __init__(self, engine: AsyncEngine, directory: Path, retry_every: float = 1.0) -> None:
        self.engine = engine
        self.spool = Spool(directory)
        self.retry_every = retry_every
        self.waiting = 0                    # writes on disk, for /healthz
        self._task: asyncio.Task | None = None
        # Writes that arrive while their lane's transaction runs go together in its next one.
        self._rounds: Rounds[int, ProgressWrite] = Rounds(
            lambda _, writes: self._store_together(writes))

    async def start(self) -> None:
        self.waiting = len(await asyncio.to_thread(self.spool.pending))
        self._task = asyncio.create_task(self._retry_forever(), name="pending-progress")

    async def record(self, write: ProgressWrite) -> list[progress.ProgressRow] | None:
        """The learner's rows of the write's lesson when stored now (for the verdict's count);
        None when kept for later (the database is away)."""
        if self.waiting == 0:               # otherwise queue behind older writes: attempts in order
            try:
                return await self._rounds.submit(zlib.crc32(write.user_id.encode()) % LANES, write)
            except Exception as exc:
                if not database_away(exc):
                    raise
                log.warning("database away: progress write kept for later", extra={"fields": {
                    "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:200]}})
        await asyncio.to_thread(self.spool.append, [dataclasses.asdict(write)])
        self.waiting += 1
        return None

    async def _store_together(self, writes: list[ProgressWrite]) -> list:
        """Each write's rows of its lesson, or why it was not stored. One transaction for all;
        when the database refuses it for one write (its learner deleted meanwhile), each on its
        own, so that only that one fails."""
        try:
            return await progress.record_each_in_lesson(self.engine, writes)
        except Exception as exc:
            if len(writes) == 1 or database_away(exc):
                raise                     # Rounds gives each caller this error
        outcomes: list = []
        for write in writes:
            try:
                outcomes += await progress.record_each_in_lesson(self.engine, [write])
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    async def _store(self, write: ProgressWrite) -> None:
        await progress.record(self.engine, write.user_id, write.lesson_slug, write.exercise_id,
                              write.passed, write.code, write.last_run)

    async def _retry_forever(self) -> None:
        while True:
            await asyncio.sleep(self.retry_every)
            if self.waiting:
                try:
                    await self._retry()
                except Exception:  # the retrier must outlive any one failure
                    log.exception("progress retry failed")

    async def _retry(self) -> None:
        for path in await asyncio.to_thread(self.spool.pending):
            batch = await asyncio.to_thread(self.spool.load, path)
            for raw in batch or ():
                try:
                    await self._store(ProgressWrite(**raw))
                except Exception as exc:
                    if database_away(exc):
                        return                  # still away: try again next time
                    log.exception("progress write refused and dropped", extra={"fields": {
                        "user": raw.get("user_id"), "exercise": raw.get("exercise_id")}})
            await asyncio.to_thread(self.spool.remove, path)
            self.waiting = max(0, self.waiting - 1)
        if not self.waiting:
            log.info("progress writes kept during the outage are saved")

    async def close(self) -> None:
        """Stop retrying; writes still waiting stay on disk for the next start."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
