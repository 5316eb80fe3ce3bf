"""The Redis tier: entries as hashes, a lease per key (SET NX PX) with a token-checked release,
and a fencing number per lease so that a holder whose lease ran out cannot overwrite newer data.

Keys under `namespace`: `<ns>e:<key>` the entry hash (fence, value, meta), `<ns>l:<key>` the
lease (its token), `<ns>f:<key>` the fencing counter.
"""
from __future__ import annotations

import functools
import json
import secrets
import time

import redis.exceptions

from server.cache.freshness import Entry
from server.cache.local import Lease, StoreUnavailable

# Take the lease and the next fencing number in one step; 0 when someone holds it.
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0
"""
# Release only our own lease: after it expired, another request may hold the key.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# Store only if no newer fence wrote (or invalidated) the entry since our lease began.
_STORE = """
local current = redis.call('HGET', KEYS[1], 'fence')
if current and tonumber(current) >= tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
if ARGV[2] == '' then
  redis.call('HSET', KEYS[1], 'fence', ARGV[1])
else
  redis.call('HSET', KEYS[1], 'fence', ARGV[1], 'value', ARGV[3], 'meta', ARGV[2])
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""


def _answers(method):
    """Redis errors become StoreUnavailable, which the cache survives."""
    @functools.wraps(method)
    async def wrapper(*args, **kwargs):
        try:
            return await method(*args, **kwargs)
        except (redis.exceptions.RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
    return wrapper


class RedisStore:
    def __init__(self, redis, namespace: str, tombstone_seconds: float, clock=time.time) -> None:
        self.redis = redis
        self.clock = clock
        self.ns = namespace
        self.tombstone_ms = max(1, int(tombstone_seconds * 1000))
        self._acquire = redis.register_script(_ACQUIRE)
        self._release = redis.register_script(_RELEASE)
        self._store = redis.register_script(_STORE)

    def _keys(self, key: str) -> tuple[str, str, str]:
        return f"{self.ns}e:{key}", f"{self.ns}l:{key}", f"{self.ns}f:{key}"

    @_answers
    async def read(self, key: str) -> Entry | None:
        fence, value, meta = await self.redis.hmget(self._keys(key)[0], "fence", "value", "meta")
        if value is None or meta is None:
            return None       # absent, or a tombstone left by an invalidation
        m = json.loads(meta)
        return Entry(value, m["status"], m["fresh_until"], m["stale_until"], m["delta"],
                     int(fence), m["negative"])

    @_answers
    async def try_lease(self, key: str, ttl: float) -> Lease | None:
        entry_key, lease_key, fence_key = self._keys(key)
        token = secrets.token_hex(12)
        fence = int(await self._acquire(keys=[lease_key, fence_key],
                                        args=[token, max(1, int(ttl * 1000))]))
        return (token, fence) if fence else None

    @_answers
    async def write(self, key: str, entry: Entry, lease: Lease) -> bool:
        meta = json.dumps({"status": entry.status, "fresh_until": entry.fresh_until,
                           "stale_until": entry.stale_until, "delta": entry.delta,
                           "negative": entry.negative})
        ttl_ms = max(1, int((entry.stale_until - self.clock()) * 1000))
        return bool(await self._store(keys=[self._keys(key)[0]],
                                      args=[entry.fence, meta, entry.value, ttl_ms]))

    @_answers
    async def release(self, key: str, lease: Lease) -> None:
        await self._release(keys=[self._keys(key)[1]], args=[lease[0]])

    @_answers
    async def invalidate(self, key: str) -> None:
        """A tombstone with a new fencing number: readers miss, and a recompute that began
        before this cannot store its (older) answer."""
        entry_key, _, fence_key = self._keys(key)
        fence = await self.redis.incr(fence_key)
        await self._store(keys=[entry_key], args=[fence, "", "", self.tombstone_ms])

    @_answers
    async def invalidate_prefix(self, prefix: str) -> None:
        start = len(f"{self.ns}e:")
        async for raw in self.redis.scan_iter(match=f"{self.ns}e:{prefix}*", count=500):
            await self.invalidate(raw.decode()[start:] if isinstance(raw, bytes) else raw[start:])
