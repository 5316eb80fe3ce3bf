"""`TraceBuffer`: collects the events of every run and sends them on in batches.

`emit` only appends to a list, so a run never waits on tracing. A background
task sends a batch when `batch_size` events are waiting or when the oldest
has waited `flush_every` seconds. When sending fails (Redis down, or the
database in embedded mode), the batch goes to the spool on local disk and
sending is retried every `retry_every` seconds; once it works again the
spool is replayed, oldest first, before newer batches. `close` sends or
spools whatever is left, so a clean shutdown loses nothing either.

`commit` is the run path's durability point: the runner awaits it before the
learner sees a verdict, and it returns once every event emitted so far is in
the write-ahead log on local disk (one write(2), no network; fdatasync'd once
a second off the loop), from where the usual batches take them to Redis
(persisted with AOF); a log segment goes once the queue (or the spool) has all
of its events, and a new process replays what a killed one left. A run is kept in a
journal on disk from when its start is sent until its end is safe: at `close` every
run still open gets an `interrupted` end, and at `start` so does every run a
killed process left in the journal, so no run stays `running`.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from server.config import Settings
from server.tracing.events import EventKind, TraceEvent
from server.tracing.spool import Batch, Spool, WriteAheadLog, sync_and_close

log = logging.getLogger("lessonserver.tracing")

Send = Callable[[Batch], Awaitable[Any]]
SPOOL_DIR = "trace-spool"
WAL_SYNC_EVERY = 1.0      # seconds between fdatasyncs of the write-ahead log (power-loss window)


ENDS = frozenset({EventKind.FINISHED.value, EventKind.KERNEL_DIED.value})
INTERRUPTED = "interrupted"        # the status of a run the server stopped (or lost) mid-way
INTERRUPTED_SEQ = 1_000_000_000    # after any real event of the run, so the fold ends on it


class BatchRejected(Exception):
    """Raised by a sink that will never take this batch: it is set aside, not retried."""


def interrupted_event(run_id: str, ts: float, reason: str) -> TraceEvent:
    """The end of a run that never got one; the same id every time, so it is stored once."""
    event_id = hashlib.blake2b(f"{run_id}:{INTERRUPTED}".encode(), digest_size=16).hexdigest()
    return TraceEvent(id=event_id, run_id=run_id, seq=INTERRUPTED_SEQ, ts=ts,
                      kind=EventKind.FINISHED, data={"status": INTERRUPTED, "reason": reason})


class TraceBuffer:
    def __init__(self, send: Send, spool: Spool, *, batch_size: int, flush_every: float,
                 retry_every: float = 1.0) -> None:
        self._send = send
        self._spool = spool
        self.batch_size = batch_size
        self.flush_every = flush_every
        self.retry_every = retry_every
        self._pending: list[TraceEvent] = []
        self._oldest = 0.0                  # monotonic time the oldest pending event arrived
        self._wake = asyncio.Event()
        self._due: asyncio.TimerHandle | None = None   # wakes the sender when a batch is due
        self._lock = asyncio.Lock()         # one sender at a time: the task, flush() or close()
        self._task: asyncio.Task | None = None
        self._closing = False
        self._down_until = 0.0              # while the sink fails: next monotonic time to try
        self._spooled = False               # the spool may hold batches to replay
        self._open: set[str] = set()        # runs requested here whose end was not emitted yet
        self._journaled: set[str] = set()   # runs with a journal entry: started, end not yet safe
        self._wal = WriteAheadLog(spool.directory / "wal")
        self._taken = 0                     # events taken from _pending so far (a running index)
        self._walled = 0                    # events before this index are in the write-ahead log
        self._delivered = 0                 # events before this index are in the queue or spool
        self._syncer: asyncio.Task | None = None
        self.stats = {"sent": 0, "spooled": 0, "replayed": 0, "rejected": 0}   # events, for metrics and tests

    @classmethod
    def for_settings(cls, settings: Settings, send: Send) -> "TraceBuffer":
        return cls(send, Spool(settings.data_dir / SPOOL_DIR), batch_size=settings.trace_batch,
                   flush_every=settings.trace_flush)

    def emit(self, event: TraceEvent) -> None:
        """Queue one event; never blocks on the network and never raises into the run."""
        if event.kind is EventKind.REQUESTED:
            self._open.add(event.run_id)
        elif event.kind.value in ENDS:
            self._open.discard(event.run_id)
        self._pending.append(event)
        if len(self._pending) == 1:
            self._oldest = time.monotonic()
            self._wake_when_due()
        elif len(self._pending) >= self.batch_size:
            self._wake.set()

    def _wake_when_due(self) -> None:
        """Wake the sender when the first waiting event's window ends, not at once: waking it
        for every run's first event cost 80 us of the loop while that run's kernel worked."""
        if self._due is not None:
            self._due.cancel()
        self._due = asyncio.get_running_loop().call_later(self.flush_every, self._wake.set)

    async def start(self) -> None:
        # Batches a previous process spooled (Redis was down when it stopped) are replayed too,
        # and the runs it left open are ended.
        self._spooled = bool(await asyncio.to_thread(self._spool.pending))
        left_open = await asyncio.to_thread(self._spool.open_journal)
        self._journaled |= set(left_open)
        await self._replay_wal()
        still_open = set(self._journaled)    # left open, or started in the replayed log, never ended
        self._interrupt(still_open, "the server stopped before the run ended")
        if still_open:
            log.warning("runs left open by a stopped server marked interrupted",
                        extra={"fields": {"runs": len(still_open)}})
            await self.flush()               # their ends now, not after a flush window
        self._task = asyncio.create_task(self._run(), name="trace-buffer")
        self._syncer = asyncio.create_task(self._sync_wal_forever(), name="trace-wal-sync")

    async def _replay_wal(self) -> None:
        """Hand on what a killed process logged and had not delivered."""
        for path in self._wal.leftovers():
            events = await asyncio.to_thread(WriteAheadLog.read, path)
            for start in range(0, len(events), self.batch_size):
                await self._hand_over(events[start:start + self.batch_size])
            await asyncio.to_thread(path.unlink)
            log.info("write-ahead log of a stopped server replayed",
                     extra={"fields": {"events": len(events)}})

    async def _sync_wal_forever(self) -> None:
        while True:
            await asyncio.sleep(WAL_SYNC_EVERY)
            try:
                handle = self._wal.sync_handle()
                if handle is not None:
                    await asyncio.to_thread(sync_and_close, handle)
            except OSError:   # e.g. the segment was dropped meanwhile: nothing left to sync
                log.debug("write-ahead log sync skipped", exc_info=True)

    def _interrupt(self, run_ids, reason: str) -> None:
        now = time.time()
        for run_id in sorted(run_ids):
            self.emit(interrupted_event(run_id, now, reason))

    @property
    def spooling(self) -> bool:
        """Batches wait on local disk for the queue (Redis) to take them again."""
        return self._spooled

    async def commit(self) -> None:
        """Return once every event emitted so far is in the write-ahead log (or delivered)."""
        async with self._lock:   # a batch being sent now is delivered when this is acquired
            first = max(self._walled, self._taken)
            end = self._taken + len(self._pending)
            if end > first:
                self._wal.append([e.to_json() for e in self._pending[first - self._taken:]], end)
                self._walled = end
                self._wake.set()     # and on to the queue now, not at the end of the flush window

    async def flush(self) -> None:
        """Send (or spool) everything emitted so far; for shutdown, tests and benchmarks."""
        async with self._lock:
            await self._replay()
            while self._pending:
                await self._deliver(self._take(self.batch_size))

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._open:
            log.warning("runs still open at shutdown marked interrupted",
                        extra={"fields": {"runs": len(self._open)}})
        self._interrupt(set(self._open), "the server stopped during the run")
        await self.flush()
        if self._syncer is not None:
            self._syncer.cancel()
            await asyncio.gather(self._syncer, return_exceptions=True)
        self._wal.close()

    async def _run(self) -> None:
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), self._timeout())
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            try:
                async with self._lock:
                    await self._send_due()
            except Exception:  # the flusher must outlive any one bad batch
                log.exception("trace flush failed")

    def _timeout(self) -> float | None:
        now, waits = time.monotonic(), []
        if self._pending:
            waits.append(self._oldest + self.flush_every - now)
        if self._spooled:
            waits.append(self._down_until - now)
        return max(0.0, min(waits)) if waits else None

    async def _send_due(self) -> None:
        await self._replay()
        while len(self._pending) >= self.batch_size:
            await self._deliver(self._take(self.batch_size))
        committed = self._walled > self._taken    # a verdict is out: its run need not wait
        if self._pending and (committed or time.monotonic() >= self._oldest + self.flush_every):
            await self._deliver(self._take(len(self._pending)))

    def _take(self, count: int) -> Batch:
        batch, self._pending = self._pending[:count], self._pending[count:]
        self._taken += len(batch)
        if self._pending:
            self._oldest = time.monotonic()   # the rest arrived no earlier than now-ish: a new window
            self._wake_when_due()
        elif self._due is not None:           # nothing waits: no window to end
            self._due.cancel()
            self._due = None
        return [event.to_json() for event in batch]

    async def _deliver(self, batch: Batch) -> None:
        """Hand on the next batch taken from _pending; acknowledge it in the write-ahead log."""
        await self._hand_over(batch)
        self._delivered += len(batch)
        if self._wal.due(self._delivered):
            await asyncio.to_thread(self._wal.acknowledge, self._delivered)

    async def _hand_over(self, batch: Batch) -> set[str]:
        """To the queue, or the spool when it is away; returns the runs the batch ends."""
        # A run's start goes to Redis only once the journal holds it, unless its end goes too
        # (the usual short run, committed at its verdict: no journal I/O at all).
        ended = {event["run_id"] for event in batch if event["kind"] in ENDS}
        started = {event["run_id"] for event in batch
                   if event["kind"] == EventKind.REQUESTED.value} - ended
        if started:
            await asyncio.to_thread(self._spool.mark_open, started)
            self._journaled |= started
        if self._spooled or not await self._try_send(batch, "sent"):
            # Down, or older batches wait in the spool: keep the order by queueing behind them.
            await asyncio.to_thread(self._spool.append, batch)
            self._spooled = True
            self.stats["spooled"] += len(batch)
        closed = ended & self._journaled
        if closed:   # their ends are safe now: off the journal
            await asyncio.to_thread(self._spool.mark_closed, closed)
            self._journaled -= closed
        return ended

    async def _replay(self) -> None:
        if not self._spooled or time.monotonic() < self._down_until:
            return
        for path in await asyncio.to_thread(self._spool.pending):
            batch = await asyncio.to_thread(self._spool.load, path)
            if batch is None:
                continue
            if not await self._try_send(batch, "replayed"):
                return
            await asyncio.to_thread(self._spool.remove, path)
        self._spooled = False
        log.info("trace spool replayed", extra={"fields": {"events": self.stats["replayed"]}})

    async def _try_send(self, batch: Batch, outcome: str) -> bool:
        """True when the batch is dealt with (taken, or refused and set aside), counted as `outcome`."""
        if time.monotonic() < self._down_until:
            return False
        try:
            await self._send(batch)
        except BatchRejected as exc:
            log.error("trace batch rejected and set aside", extra={"fields": {
                "events": len(batch), "error": str(exc)[:300]}})
            await asyncio.to_thread(self._spool.set_aside, batch)
            outcome = "rejected"
        except Exception as exc:  # whatever else the sink raises, the batch is kept on disk
            if self._down_until == 0.0:
                log.warning("trace sink unavailable, spooling to disk", extra={"fields": {
                    "error": f"{type(exc).__name__}: {exc}"[:200], "dir": self._spool.directory}})
            self._down_until = time.monotonic() + self.retry_every
            return False
        if self._down_until:
            log.info("trace sink back")
        self._down_until = 0.0
        self.stats[outcome] += len(batch)
        return True
