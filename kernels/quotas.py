"""Per-owner quotas on kernels: pure decisions on values, with the clock passed in.

A cookie costs nothing to mint, so one owner may hold only a few kernels, start
only so many per minute and run only so many times per minute; anonymous
visitors get less than signed-in learners, and admins (and the API token) are
exempt. The manager keeps the counts; these functions say yes, or why not and
for how long.
"""
from __future__ import annotations

import bisect
import dataclasses
import enum
import math
from collections.abc import Iterable

WINDOW = 60.0          # seconds the per-minute counts look back


class Tier(str, enum.Enum):
    ANONYMOUS = "anonymous"
    MEMBER = "member"        # a signed-in learner
    EXEMPT = "exempt"        # admins and the API token


@dataclasses.dataclass(frozen=True)
class Quota:
    kernels: int             # held at once
    starts_per_minute: int
    runs_per_minute: int


@dataclasses.dataclass(frozen=True)
class Quotas:
    anonymous: Quota         # from LS_ANON_* settings
    member: Quota            # from LS_MEMBER_* settings

    def of(self, tier: Tier) -> Quota | None:
        if tier is Tier.EXEMPT:
            return None
        return self.anonymous if tier is Tier.ANONYMOUS else self.member


@dataclasses.dataclass(frozen=True)
class Refusal:
    reason: str              # owner_kernels | owner_starts | owner_runs (a metrics label)
    message: str             # plain words for the learner
    retry_after: float       # seconds


def recent(times: Iterable[float], now: float) -> tuple[float, ...]:
    """The moments still inside the window, oldest first. Counted moments come in order, so
    sorting is one pass in C and the cut a bisection: a loop in Python over a busy learner's
    runs took 70 us of every run."""
    ordered = sorted(times)
    return tuple(ordered[bisect.bisect_right(ordered, now - WINDOW):])


def _wait(times: tuple[float, ...], now: float, limit: int) -> float:
    """Seconds until one more fits: when the oldest counted moment leaves the window."""
    oldest = times[len(times) - limit] if len(times) >= limit else now
    return float(max(1, math.ceil(oldest + WINDOW - now)))


def may_start(quota: Quota | None, held: int, starts: tuple[float, ...],
              now: float) -> Refusal | None:
    if quota is None:
        return None
    if held >= quota.kernels:
        word = "kernel" if quota.kernels == 1 else "kernels"
        return Refusal("owner_kernels", f"You already have {quota.kernels} {word} running; close a "
                                        "lesson or shut one down first.", 30.0)
    starts = recent(starts, now)
    if len(starts) >= quota.starts_per_minute:
        return Refusal("owner_starts", f"Too many kernel starts: at most "
                                       f"{quota.starts_per_minute} a minute.",
                       _wait(starts, now, quota.starts_per_minute))
    return None


def may_run(quota: Quota | None, runs: tuple[float, ...], now: float) -> Refusal | None:
    if quota is None:
        return None
    runs = recent(runs, now)
    if len(runs) >= quota.runs_per_minute:
        wait = _wait(runs, now, quota.runs_per_minute)
        return Refusal("owner_runs", f"Too many runs: at most {quota.runs_per_minute} a minute; "
                                     f"try again in {wait:.0f} s.", wait)
    return None
