"""The in-process tier: a bounded LRU of entries, with leases and fencing like the Redis tier.

Alone it is the whole cache of embedded mode (one process); in production it holds
short-lived copies in front of Redis. Leases here keep a background recompute single
within the process.
"""
from __future__ import annotations

import collections
import itertools
import secrets
import time

from server.cache.freshness import Entry, may_store

Lease = tuple[str, int]   # (token, fencing number)


class StoreUnavailable(Exception):
    """The shared store did not answer; the cache then computes without it."""


class LocalStore:
    def __init__(self, max_entries: int = 4096, clock=time.time) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self._entries: collections.OrderedDict[str, Entry] = collections.OrderedDict()
        self._leases: dict[str, tuple[str, float]] = {}
        self._fences: dict[str, int] = {}
        self._counter = itertools.count(1)

    async def read(self, key: str) -> Entry | None:
        return self.peek(key)

    def peek(self, key: str) -> Entry | None:
        entry = self._entries.get(key)
        if entry is not None:
            if entry.stale_until <= self.clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
        return entry

    def put(self, key: str, entry: Entry) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def try_lease(self, key: str, ttl: float) -> Lease | None:
        held = self._leases.get(key)
        now = self.clock()
        if held is not None and held[1] > now:
            return None
        token = secrets.token_hex(8)
        self._leases[key] = (token, now + ttl)
        fence = next(self._counter)
        self._fences[key] = fence
        return token, fence

    async def write(self, key: str, entry: Entry, lease: Lease) -> bool:
        if not may_store(self.peek(key), entry.fence) or self._fences.get(key, 0) > entry.fence:
            return False
        self.put(key, entry)
        return True

    async def release(self, key: str, lease: Lease) -> None:
        held = self._leases.get(key)
        if held is not None and held[0] == lease[0]:
            del self._leases[key]

    async def invalidate(self, key: str) -> None:
        self.drop(key)
        self._fences[key] = next(self._counter)   # a recompute begun before this may not store

    def drop(self, key: str) -> None:
        self._entries.pop(key, None)

    def drop_prefix(self, prefix: str) -> None:
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]

    async def invalidate_prefix(self, prefix: str) -> None:
        for key in [k for k in self._entries if k.startswith(prefix)]:
            await self.invalidate(key)
