"""When a cached value is fresh, stale or expired, and who recomputes it: pure functions on values.

An entry is fresh until `fresh_until`, then stale (still served, while one
request recomputes it) until `stale_until`, then expired (never served).
XFetch (Vattani et al., "Optimal probabilistic cache stampede prevention")
recomputes a fresh entry early with a probability that grows as expiry nears
and with the measured recompute time `delta`, so a hot key is seldom seen
expired at all.
"""
from __future__ import annotations

import dataclasses
import enum
import math


class State(str, enum.Enum):
    MISSING = "missing"
    FRESH = "fresh"
    EARLY = "early"        # fresh, but XFetch picked this request to recompute ahead of expiry
    STALE = "stale"        # past its TTL, within grace: served while one request recomputes
    EXPIRED = "expired"    # past its grace: never served


@dataclasses.dataclass(frozen=True)
class Entry:
    """One cached answer: its bytes, HTTP status and times (epoch seconds)."""
    value: bytes
    status: int
    fresh_until: float
    stale_until: float
    delta: float           # seconds its last recompute took
    fence: int             # the lease's fencing token that wrote it; higher is newer
    negative: bool = False  # a cached "there is no such thing" (404)

    @property
    def etag(self) -> str:
        """A strong validator that changes with every write of the key."""
        return f'"{self.fence:x}-{len(self.value):x}-{int(self.fresh_until * 1000):x}"'


@dataclasses.dataclass(frozen=True)
class Policy:
    ttl: float             # LS_CACHE_TTL
    grace: float           # LS_CACHE_GRACE
    beta: float = 1.0      # XFetch eagerness; 0 turns early recompute off
    negative_ttl: float = 5.0  # a 404 is remembered at most this long (a lesson may appear)


def make_entry(value: bytes, status: int, *, now: float, delta: float, fence: int,
               policy: Policy, negative: bool = False) -> Entry:
    ttl = min(policy.ttl, policy.negative_ttl) if negative else policy.ttl
    return Entry(value, status, now + ttl, now + ttl + policy.grace, delta, fence, negative)


def state_of(entry: Entry | None, now: float, beta: float, rand: float) -> State:
    """The entry's state for one request; `rand` is uniform in (0, 1], drawn by the caller."""
    if entry is None:
        return State.MISSING
    if now >= entry.stale_until:
        return State.EXPIRED
    if now >= entry.fresh_until:
        return State.STALE
    early_by = -entry.delta * beta * math.log(max(rand, 1e-12))   # XFetch: >= 0, random
    if beta > 0 and now + early_by >= entry.fresh_until:
        return State.EARLY
    return State.FRESH


def servable(state: State) -> bool:
    """May this request be answered from the entry right away?"""
    return state in (State.FRESH, State.EARLY, State.STALE)


def wants_recompute(state: State) -> bool:
    return state is not State.FRESH


def result_label(state: State) -> str:
    """The `result` label of lessonserver_cache_requests_total for an answer from this state."""
    return {State.FRESH: "hit", State.EARLY: "hit", State.STALE: "stale"}.get(state, "miss")


def may_store(current: Entry | None, fence: int) -> bool:
    """Fencing: a holder whose lease expired (a newer holder has a higher token) must not
    overwrite what that newer holder wrote."""
    return current is None or fence > current.fence


def local_copy(entry: Entry, now: float, local_ttl: float) -> Entry:
    """The in-process copy of a shared entry: served here without asking Redis for at most
    `local_ttl`, so another process's recompute or invalidation is seen within that time."""
    return dataclasses.replace(entry, fresh_until=min(entry.fresh_until, now + local_ttl))
