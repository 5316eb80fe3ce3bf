"""The shell around ratelimit.py: where buckets live, and the guard every credential check asks.

`RateStore` is the two methods a store needs; `MemoryRateStore` keeps buckets in
this process (embedded mode); `redis_rates.RedisRateStore` shares them between
every `serve` process, with the same rule deciding.
"""
from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable
from typing import Protocol

from server.accounts.ratelimit import Bucket, Decision, Rule, give_back, is_full, take


class RateStore(Protocol):
    async def take(self, key: str, rule: Rule) -> Decision:
        """Spend one attempt of `key` under `rule`."""

    async def give_back(self, key: str, rule: Rule) -> None:
        """Return one attempt of `key`."""


class MemoryRateStore:
    """Buckets in a dict, least recently used first; at most `max_keys` of them."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: collections.OrderedDict[str, tuple[Bucket, Rule]] = collections.OrderedDict()

    async def take(self, key: str, rule: Rule) -> Decision:
        now = self.clock()
        old = self._buckets.pop(key, None)
        bucket, decision = take(old[0] if old else None, rule, now)
        self._buckets[key] = (bucket, rule)
        if len(self._buckets) > self.max_keys:
            self._forget(now)
        return decision

    async def give_back(self, key: str, rule: Rule) -> None:
        old = self._buckets.get(key)
        if old is not None:
            self._buckets[key] = (give_back(old[0], rule, self.clock()), rule)

    def _forget(self, now: float) -> None:
        """Drop full buckets (they equal no bucket), then the least recently used."""
        for key in [k for k, (b, r) in self._buckets.items() if is_full(b, r, now)]:
            del self._buckets[key]
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)

    async def close(self) -> None:
        """Nothing to close (RedisRateStore closes its connections)."""


@dataclasses.dataclass(frozen=True)
class CredentialRules:
    per_ip: Rule        # every credential check from one client address
    per_account: Rule   # every check naming one account, from anywhere


class CredentialLimiter:
    """Asked before every credential check (admin token, and later passwords, links, resets).

    `attempt` before checking, `succeeded` after a check that passed: only
    failures count in the end, yet a burst of concurrent guesses is paid for
    up front. The IP is charged first; an attempt refused there never reaches
    the account, so one noisy address cannot lock an account for everyone else.
    """

    def __init__(self, store: RateStore, rules: CredentialRules) -> None:
        self.store = store
        self.rules = rules

    async def attempt(self, ip: str, account: str) -> Decision:
        decision = await self.store.take(f"auth:ip:{ip}", self.rules.per_ip)
        if not decision.allowed:
            return decision
        return await self.store.take(f"auth:account:{account}", self.rules.per_account)

    async def succeeded(self, ip: str, account: str) -> None:
        await self.store.give_back(f"auth:ip:{ip}", self.rules.per_ip)
        await self.store.give_back(f"auth:account:{account}", self.rules.per_account)


class NewLearnerLimiter:
    """Anonymous learners cost nothing to mint, so each address may create only so many
    (a classroom behind one address still fits: the rule is a burst, then a steady rate)."""

    def __init__(self, store: RateStore, rule: Rule) -> None:
        self.store = store
        self.rule = rule

    async def admit(self, ip: str) -> Decision:
        return await self.store.take(f"new-learner:ip:{ip}", self.rule)

