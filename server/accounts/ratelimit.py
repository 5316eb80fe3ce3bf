"""Rate-limit decisions as a token bucket over plain values (the clock is passed in).

A Rule allows `burst` attempts at once and refills them evenly over `window`
seconds, so `10/60` means ten tries straight away, then one every six
seconds. A Bucket is the state of one key (an IP, an account); `take` returns
the new bucket and whether the attempt may go ahead, with the wait otherwise.
An attempt is paid for before the credential is checked (so concurrent
guesses cannot slip past) and given back when it succeeds.
"""
from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class Rule:
    burst: int        # attempts allowed at once
    window: float     # seconds to refill all of them

    @property
    def rate(self) -> float:
        """Attempts regained per second."""
        return self.burst / self.window

    def __str__(self) -> str:
        return f"{self.burst}/{self.window:g}"


@dataclasses.dataclass(frozen=True)
class Bucket:
    tokens: float     # attempts left at `at`
    at: float         # clock reading of the last update


@dataclasses.dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float = 0.0    # seconds until one attempt is regained, when refused

    @property
    def retry_after_header(self) -> str:
        """Retry-After in whole seconds, never 0 for a refusal."""
        return str(max(1, math.ceil(self.retry_after)))


def parse_rule(raw: str) -> Rule:
    """`N/S`: N attempts per S seconds; ValueError with the reason otherwise."""
    count, sep, seconds = raw.strip().partition("/")
    try:
        burst, window = int(count), float(seconds)
    except ValueError:
        raise ValueError(f"{raw!r} is not attempts/seconds, e.g. 10/60") from None
    if not sep or burst < 1 or not window > 0 or math.isinf(window):
        raise ValueError(f"{raw!r} needs at least 1 attempt over a positive number of seconds")
    return Rule(burst, window)


def refill(bucket: Bucket | None, rule: Rule, now: float) -> Bucket:
    """The bucket as it stands at `now` (a new key starts full; a clock going back refills nothing)."""
    if bucket is None:
        return Bucket(float(rule.burst), now)
    elapsed = max(0.0, now - bucket.at)
    return Bucket(min(float(rule.burst), bucket.tokens + elapsed * rule.rate), max(now, bucket.at))


def take(bucket: Bucket | None, rule: Rule, now: float) -> tuple[Bucket, Decision]:
    """Spend one attempt if there is one; a refused attempt costs nothing."""
    current = refill(bucket, rule, now)
    if current.tokens >= 1.0:
        return Bucket(current.tokens - 1.0, current.at), Decision(True)
    return current, Decision(False, (1.0 - current.tokens) / rule.rate)


def give_back(bucket: Bucket | None, rule: Rule, now: float) -> Bucket:
    """Return one attempt (a check that succeeded does not count against anyone)."""
    current = refill(bucket, rule, now)
    return Bucket(min(float(rule.burst), current.tokens + 1.0), current.at)


def is_full(bucket: Bucket, rule: Rule, now: float) -> bool:
    """A full bucket is the same as no bucket: the store may forget it."""
    return refill(bucket, rule, now).tokens >= rule.burst
