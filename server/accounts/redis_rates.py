"""Rate-limit buckets in Redis, shared by every `serve` process: the same pure rule decides.

Each update is an optimistic transaction: WATCH the bucket's hash, read it
and Redis's clock (one clock for every process), let ratelimit.take or
give_back compute the new bucket here, and write it in MULTI/EXEC with a
PEXPIRE of one window (a bucket untouched for a window is full again, which
is the same as no bucket). A write that raced another is done again; a key
so contended that it keeps losing is refused (a refusal is the safe answer
for a credential guard, and only a burst on one key gets there). Within one
process the updates of a key go together: those that arrive while one
transaction runs ride the next, folded by the same rule in arrival order, so
only other processes can race them, and a classroom behind one address
arriving at once costs a few round trips (200 learners queued behind one
another's four round trips took a live event's first runs 13 s).

Redis unavailable: the decision falls back to this process's own buckets.
Not fail-closed, since a Redis outage must not lock every learner out of
signing in (the site keeps serving everyone else, as the page cache does);
not fail-open either, since guessing stays limited per process: with N
processes, at most N times the budget while Redis is away.
"""
from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Callable
from typing import TypeVar

from redis.exceptions import RedisError, WatchError

from server.accounts.limiter import MemoryRateStore
from server.accounts.ratelimit import Bucket, Decision, Rule, give_back, take
from server.rounds import Rounds

log = logging.getLogger("lessonserver.accounts")

TIMEOUT = 0.5            # seconds per Redis round trip before this process decides alone
TRIES = 50               # optimistic transactions per decision before a contended key is refused
CONTENDED = Decision(False, 1.0)

T = TypeVar("T")
Step = Callable[[Bucket | None, float], tuple[Bucket | None, T]]
Waiting = tuple[Rule, Step]


def fold(steps: list[Step], bucket: Bucket | None, now: float) -> tuple[Bucket | None, list]:
    """The steps applied in turn, each to the bucket the one before left: the bucket to
    store (None when no step changed it) and each step's result."""
    changed, results = None, []
    for step in steps:
        new, result = step(bucket, now)
        if new is not None:
            bucket = changed = new
        results.append(result)
    return changed, results


class RedisRateStore:
    def __init__(self, redis, prefix: str, fallback: MemoryRateStore | None = None) -> None:
        self.redis = redis          # a redis.asyncio client with socket timeouts (`client`)
        self.prefix = prefix
        self.fallback = fallback or MemoryRateStore()
        self.available = True
        # A key's updates in one transaction per round (server/rounds.py).
        self._rounds: Rounds[str, Waiting] = Rounds(
            lambda key, batch: self._transact(self.prefix + key, batch))

    async def take(self, key: str, rule: Rule) -> Decision:
        try:
            decision = await self._update(key, rule, lambda bucket, now: take(bucket, rule, now))
        except (RedisError, OSError) as exc:
            self._away(exc)
            return await self.fallback.take(key, rule)
        self._back()
        return CONTENDED if decision is None else decision

    async def give_back(self, key: str, rule: Rule) -> None:
        def step(bucket: Bucket | None, now: float) -> tuple[Bucket | None, bool]:
            return (None, True) if bucket is None else (give_back(bucket, rule, now), True)
        try:
            await self._update(key, rule, step)
        except (RedisError, OSError) as exc:
            self._away(exc)
            await self.fallback.give_back(key, rule)

    async def _update(self, key: str, rule: Rule, step: Step) -> T | None:
        return await self._rounds.submit(key, (rule, step))

    async def _transact(self, key: str, batch: list[Waiting]) -> list:
        """The steps applied in turn to the stored bucket, atomically; Nones when the key
        stayed contended. Each round trip has the client's timeout: a slow answer under
        contention is not an outage."""
        window = max(rule.window for rule, _ in batch)
        async with self.redis.pipeline(transaction=True) as pipe:
            for _ in range(TRIES):
                try:
                    await pipe.watch(key)
                    tokens, at = await pipe.hmget(key, "tokens", "at")
                    seconds, micros = await pipe.time()
                    old = None if tokens is None or at is None else Bucket(float(tokens), float(at))
                    bucket, results = fold([step for _, step in batch], old,
                                           seconds + micros / 1e6)
                    if bucket is None:           # nothing to store (giving back to a full bucket)
                        await pipe.unwatch()
                        return results
                    pipe.multi()
                    pipe.hset(key, mapping={"tokens": repr(bucket.tokens), "at": repr(bucket.at)})
                    pipe.pexpire(key, math.ceil(window * 1000))
                    await pipe.execute()
                    return results
                except WatchError:               # another process wrote it meanwhile: again
                    await asyncio.sleep(random.random() * 0.002)
        return [None] * len(batch)

    async def close(self) -> None:
        await self.redis.aclose()

    def _away(self, exc: BaseException) -> None:
        if self.available:
            log.warning("rate limits: Redis unavailable, each process counts on its own",
                        extra={"fields": {"error": f"{type(exc).__name__}: {exc}"}})
        self.available = False

    def _back(self) -> None:
        if not self.available:
            log.warning("rate limits: Redis is back, shared again")
        self.available = True


def client(url: str, timeout: float = TIMEOUT):
    """A Redis client of its own: a sign-in waits at most `timeout` per round trip for an answer."""
    import redis.asyncio
    return redis.asyncio.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


def open_rate_store(redis_url: str | None, instance: str) -> RedisRateStore | MemoryRateStore:
    """Shared buckets when there is Redis; this process's own in embedded mode."""
    if redis_url is None:
        return MemoryRateStore()
    return RedisRateStore(client(redis_url), f"lessonserver:{instance}:rate:")
