"""The cache's shell: one `get(prefix, key, compute)` with single flight across processes.

Per request: the in-process copy if fresh; else one coroutine per key and process reads
the store (Redis, or the local store in embedded mode) and acts on `freshness.state_of`:
fresh -> serve; early or stale -> serve, and the lease holder recomputes in the background;
missing or expired -> the lease holder recomputes while the others poll briefly for its
answer. A holder that dies stops renewing nothing: its lease simply expires after
`lease_ttl` and the next poller takes it.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable

from server.cache import freshness
from server.cache.freshness import Entry, Policy, State
from server.cache.local import Lease, LocalStore, StoreUnavailable

log = logging.getLogger("lessonserver.cache")


@dataclasses.dataclass(frozen=True)
class Computed:
    """What a recompute produced: the answer's bytes and HTTP status; negative for a 404."""
    value: bytes
    status: int = 200
    negative: bool = False


Compute = Callable[[], Awaitable[Computed]]


class CacheObserver:
    """What the cache reports (server.metrics.Metrics implements it)."""

    def observe_cache(self, prefix: str, result: str) -> None: ...
    def observe_cache_recompute(self, prefix: str) -> None: ...
    def observe_cache_lock_wait(self, prefix: str, seconds: float) -> None: ...


class Cache:
    def __init__(self, policy: Policy, store, observer: CacheObserver, *,
                 near: LocalStore | None = None, near_ttl: float = 1.0,
                 lease_ttl: float = 5.0, poll: float = 0.02,
                 clock: Callable[[], float] = time.time,
                 rand: Callable[[], float] = lambda: 1.0 - random.random()) -> None:
        self.policy = policy
        self.store = store                 # LocalStore (embedded) or RedisStore
        self.near = near                   # in-process copies in front of Redis
        self.near_ttl = near_ttl
        self.observer = observer
        self.lease_ttl = lease_ttl
        self.poll = poll
        self.clock = clock
        self.rand = rand
        self._flights: dict[str, asyncio.Future[tuple[Entry, str]]] = {}
        self._background: set[asyncio.Task] = set()

    @classmethod
    def embedded(cls, policy: Policy, observer: CacheObserver, **kwargs) -> "Cache":
        return cls(policy, LocalStore(), observer, **kwargs)

    async def get(self, prefix: str, key: str, compute: Compute) -> Entry:
        full = f"{prefix}:{key}"
        if self.near is not None:
            copy = self.near.peek(full)
            if copy is not None and self.clock() < copy.fresh_until:
                self.observer.observe_cache(prefix, "hit")
                return copy
        flight = self._flights.get(full)
        if flight is None:   # the one coroutine of this process that asks the store for `full`
            flight = asyncio.ensure_future(self._load_or_compute(prefix, full, compute))
            self._flights[full] = flight
            flight.add_done_callback(lambda _: self._flights.pop(full, None))
        entry, result = await asyncio.shield(flight)
        self.observer.observe_cache(prefix, result)
        return entry

    async def _load_or_compute(self, prefix: str, full: str, compute: Compute) -> tuple[Entry, str]:
        try:
            return await self._load(prefix, full, compute)
        except StoreUnavailable as exc:
            # Pages keep being served without Redis: one compute per key, process and near_ttl.
            log.warning("cache store unavailable; computing here", extra={"fields": {
                "key": full, "error": str(exc)}})
            entry = await self._compute(prefix, compute, fence=0)
            self._keep_near(full, entry)
            return entry, "miss"

    async def _load(self, prefix: str, full: str, compute: Compute) -> tuple[Entry, str]:
        entry = await self.store.read(full)
        state = freshness.state_of(entry, self.clock(), self.policy.beta, self.rand())
        if freshness.wants_recompute(state):
            lease = await self.store.try_lease(full, self.lease_ttl)
            if lease is not None:
                if freshness.servable(state):     # early or stale: answer now, refresh behind
                    self._spawn(self._recompute(prefix, full, compute, lease, behind=True))
                else:
                    return await self._recompute(prefix, full, compute, lease), "miss"
            elif not freshness.servable(state):
                return await self._wait(prefix, full, compute), "miss"
        self._keep_near(full, entry)
        return entry, freshness.result_label(state)

    async def _wait(self, prefix: str, full: str, compute: Compute) -> Entry:
        """Another request holds the lease: poll for its answer; take the lease if it expires."""
        began = self.clock()
        deadline = began + 2 * self.lease_ttl
        try:
            while self.clock() < deadline:
                await asyncio.sleep(self.poll)
                entry = await self.store.read(full)
                if freshness.servable(freshness.state_of(entry, self.clock(), 0, 1.0)):
                    self._keep_near(full, entry)
                    return entry
                lease = await self.store.try_lease(full, self.lease_ttl)
                if lease is not None:      # the holder finished without storing, or died
                    return await self._recompute(prefix, full, compute, lease)
        finally:
            self.observer.observe_cache_lock_wait(prefix, self.clock() - began)
        log.warning("cache wait timed out; computing without the lease",
                    extra={"fields": {"key": full}})
        return await self._compute(prefix, compute, fence=0)

    async def _recompute(self, prefix: str, full: str, compute: Compute, lease: Lease, *,
                         behind: bool = False) -> Entry:
        release = True
        try:
            # The previous holder may have stored and released between our read and our lease.
            entry = await self.store.read(full)
            if entry is not None and freshness.state_of(entry, self.clock(), 0, 1.0) is State.FRESH:
                self._keep_near(full, entry)
                return entry
            entry = await self._compute(prefix, compute, fence=lease[1])
            self._keep_near(full, entry)
            if not await self.store.write(full, entry, lease):
                log.info("a newer answer was stored first; ours is not kept",
                         extra={"fields": {"key": full}})
            return entry
        except Exception:
            # A refresh behind a served answer that fails keeps its lease until the lease's
            # TTL: the stale answer goes on being served and the failure is retried once per
            # lease_ttl, not by every request (each with its traceback). A request that waits
            # for the answer gets the error and the next one may try at once.
            release = not behind
            raise
        finally:
            if release:
                with contextlib.suppress(StoreUnavailable):   # then the lease simply expires
                    await self.store.release(full, lease)

    async def _compute(self, prefix: str, compute: Compute, fence: int) -> Entry:
        self.observer.observe_cache_recompute(prefix)
        began = time.perf_counter()
        computed = await compute()
        return freshness.make_entry(computed.value, computed.status, now=self.clock(),
                                    delta=time.perf_counter() - began, fence=fence,
                                    policy=self.policy, negative=computed.negative)

    def _keep_near(self, full: str, entry: Entry | None) -> None:
        if self.near is not None and entry is not None:
            self.near.put(full, freshness.local_copy(entry, self.clock(), self.near_ttl))

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The stale answer keeps being served until its grace ends; then requests see the error.
            log.error("background recompute failed", exc_info=task.exception())

    async def invalidate(self, prefix: str, key: str | None = None) -> None:
        """Drop one key of `prefix`, or all of them; other processes see it within near_ttl.
        Without the store, its entries still end with their TTL."""
        if self.near is not None and key is None:
            self.near.drop_prefix(f"{prefix}:")
        elif self.near is not None:
            self.near.drop(f"{prefix}:{key}")
        try:
            if key is None:
                await self.store.invalidate_prefix(f"{prefix}:")
            else:
                await self.store.invalidate(f"{prefix}:{key}")
        except StoreUnavailable as exc:
            log.warning("cache invalidation not stored", extra={"fields": {
                "prefix": prefix, "key": key, "error": str(exc)}})

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
