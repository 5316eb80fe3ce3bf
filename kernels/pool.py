"""Warm kernels, ready before anyone asks: one Pool per plugin, one StartGate per host.

A kernel start costs about half a second of two busy cores; a hand-out from
the pool costs a list pop. The pool refills in the background after each
hand-out. All starts (refills and cold starts alike) pass one StartGate, so a
spike queues instead of starting a hundred containers at once, and past
`start_queue` waiting requests it answers CapacityError(retry_after) at once.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kernels.sandbox import Sandbox, SandboxKernel, StartSpec

log = logging.getLogger(__name__)

RETRY_BACKOFF = (0.5, 30.0)   # seconds before a failed refill is retried: first, most
CLOSE_WAIT = 30.0             # seconds close() lets starts in flight finish (then removes them)


class CapacityError(RuntimeError):
    """No kernel can be had now; try again after `retry_after` seconds (HTTP 429).

    `reason` names the limit for metrics: host, queue, or an owner's quota."""

    def __init__(self, message: str, retry_after: float, reason: str = "host") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.reason = reason


class StartGate:
    """At most `concurrency` starts in flight; at most `queue` requests waiting behind them."""

    def __init__(self, concurrency: int, queue: int) -> None:
        self.concurrency = concurrency
        self.queue = queue
        self.waiting = 0                 # learners' requests waiting for a slot
        self.start_seconds = 1.0         # running average of one start, for Retry-After
        self._slots = asyncio.Semaphore(concurrency)

    def retry_after(self) -> float:
        return float(max(1, math.ceil((self.waiting + 1) * self.start_seconds / self.concurrency)))

    @contextlib.asynccontextmanager
    async def slot(self, *, queued: bool) -> AsyncIterator[None]:
        """Hold a start slot; `queued` requests count against the queue (refills do not)."""
        if queued and self.waiting >= self.queue:
            raise CapacityError(f"{self.waiting} kernel starts are already waiting",
                                self.retry_after(), "queue")
        self.waiting += queued
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= queued
        began = time.monotonic()
        try:
            yield
            self.start_seconds = 0.8 * self.start_seconds + 0.2 * (time.monotonic() - began)
        finally:
            self._slots.release()


async def _nothing(kernel: SandboxKernel) -> None:
    return None


class Pool:
    """Ready kernels of one plugin. A kernel leaves the pool once, to one caller.

    `prepare` readies a started kernel further before it joins the pool (the manager opens
    its session and does the handshake, so a live event's first runs do not); `release`
    undoes that for a kernel the pool removes without handing it out."""

    def __init__(self, sandbox: Sandbox, spec: StartSpec, size: int, gate: StartGate,
                 room: Callable[[], bool] = lambda: True,
                 prepare: Callable[[SandboxKernel], Awaitable[None]] = _nothing,
                 release: Callable[[SandboxKernel], Awaitable[None]] = _nothing) -> None:
        self.sandbox = sandbox
        self.spec = spec
        self.size = size
        self.gate = gate
        self._room = room                 # may one more kernel live on this host?
        self._prepare = prepare
        self._release = release
        self._ready: collections.deque[SandboxKernel] = collections.deque()
        self._watchers: dict[str, asyncio.Task] = {}
        self._starting = 0
        self._failures = 0
        self._paused_until = 0.0
        self._tasks: set[asyncio.Task] = set()
        self._closed = False
        self._drained = False             # an operator stopped it: no hand-outs, no refills

    @property
    def ready(self) -> int:
        return len(self._ready)

    @property
    def starting(self) -> int:
        return self._starting

    @property
    def drained(self) -> bool:
        return self._drained

    def drain(self) -> None:
        """Hand out and keep no warm kernels (callers get cold starts) until `resume()`:
        for an operator replacing an image or freeing the host."""
        self._drained = True
        while self._ready:
            self._spawn(self._discard(self._ready.pop()))

    def resume(self) -> None:
        """Warm kernels again, up to `size`."""
        self._drained = False
        self.refill()

    async def acquire(self) -> tuple[SandboxKernel, bool]:
        """A kernel for one caller: warm from the pool (True) or started now (False)."""
        if self._ready:
            kernel = self._ready.popleft()
            self._watchers.pop(kernel.id).cancel()
            self.refill()
            return kernel, True
        self.refill()
        async with self.gate.slot(queued=True):
            return await self.sandbox.start(self.spec), False

    def resize(self, size: int) -> None:
        """Keep `size` kernels ready from now on (raise it ahead of a live event)."""
        self.size = size
        while len(self._ready) > size:
            self._spawn(self._discard(self._ready.pop()))
        self.refill()

    def refill(self) -> None:
        """Start kernels in the background until the pool is full (or the host is)."""
        while (not self._closed and not self._drained and time.monotonic() >= self._paused_until
               and self.ready + self._starting < self.size and self._room()):
            self._starting += 1
            self._spawn(self._start_one())

    async def wait_full(self, timeout: float) -> bool:
        """For start-up and tests: wait until the pool holds `size` kernels."""
        deadline = time.monotonic() + timeout
        while self.ready < self.size and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.ready >= self.size

    async def _start_one(self) -> None:
        try:
            async with self.gate.slot(queued=False):
                kernel = await self.sandbox.start(self.spec)
                try:
                    await self._prepare(kernel)
                except BaseException:     # started, not prepared (or the pool closing): it goes
                    await self._discard(kernel)
                    raise
        except Exception as exc:
            # A missing image or a full disk would otherwise make refill spin: back off.
            self._starting -= 1
            self._failures += 1
            delay = min(RETRY_BACKOFF[1], RETRY_BACKOFF[0] * 2 ** (self._failures - 1))
            self._paused_until = time.monotonic() + delay
            log.warning("pool %s: start failed (%s); retrying in %.1f s", self.spec.plugin, exc, delay)
            asyncio.get_running_loop().call_later(delay, self.refill)
            return
        self._starting -= 1
        self._failures = 0
        if self._closed or self._drained or self.ready >= self.size:
            await self._discard(kernel)
            return
        self._ready.append(kernel)
        self._watchers[kernel.id] = asyncio.create_task(self._watch(kernel))
        self.refill()

    async def _watch(self, kernel: SandboxKernel) -> None:
        """A pooled kernel that dies is dropped, so no one is handed a dead kernel."""
        ended = await self.sandbox.wait(kernel)
        if kernel in self._ready:
            log.warning("pool %s: ready kernel %s ended (%s)", self.spec.plugin, kernel.id,
                        ended.reason)
            self._ready.remove(kernel)
            self._watchers.pop(kernel.id, None)
            await self._discard(kernel)
            self.refill()

    async def _discard(self, kernel: SandboxKernel) -> None:
        watcher = self._watchers.pop(kernel.id, None)
        if watcher is not None and watcher is not asyncio.current_task():
            watcher.cancel()
        try:
            await self._release(kernel)
        except Exception:   # the kernel goes all the same
            log.exception("pool %s: could not release kernel %s", self.spec.plugin, kernel.id)
        try:
            await self.sandbox.kill(kernel)
        except Exception:
            log.exception("pool %s: could not remove kernel %s", self.spec.plugin, kernel.id)

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop refilling and remove the ready kernels (starts in flight finish, then go)."""
        self._closed = True
        _, late = await asyncio.wait(self._tasks, timeout=CLOSE_WAIT) if self._tasks else ((), ())
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        kernels, self._ready = list(self._ready), collections.deque()
        await asyncio.gather(*(self._discard(k) for k in kernels))
