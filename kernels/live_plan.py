"""How many warm kernels each plugin's pool should hold now, given the scheduled live events.

Pure: events, the time, the host's capacity and the kernels in use in; sizes out.
A pool grows `lead` seconds before an event starts, so its expected learners find
warm kernels when they press Run; learners who took one already need no other,
so the extra shrinks as the kernels in use grow. Nothing exceeds the host:
the warm kernels of all pools and the kernels in use stay within `max_kernels`,
an overbooked host shares what is left in proportion to each plugin's wish
(never below the normal size: the pools' own refills wait for room on the host).
After an event's end, its pool goes back to the normal size.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping


@dataclasses.dataclass(frozen=True)
class Demand:
    """One scheduled event, as the kernel layer sees it: a plugin, a window, a head count."""
    plugin: str
    starts_at: float       # epoch seconds
    ends_at: float
    learners: int


@dataclasses.dataclass(frozen=True)
class Capacity:
    normal: int            # warm kernels per plugin outside events (LS_POOL_SIZE)
    max_kernels: int       # kernels alive at once on this host (LS_MAX_KERNELS)
    lead: float            # seconds before a start when its pool grows (LS_LIVE_LEAD)


def expected(demands: Iterable[Demand], now: float, lead: float) -> dict[str, int]:
    """Learners expected now per plugin: events within [start - lead, end)."""
    wanted: dict[str, int] = {}
    for d in demands:
        if d.starts_at - lead <= now < d.ends_at:
            wanted[d.plugin] = wanted.get(d.plugin, 0) + d.learners
    return wanted


def pool_sizes(demands: Iterable[Demand], now: float, capacity: Capacity,
               plugins: Iterable[str], in_use: Mapping[str, int]) -> dict[str, int]:
    """The pool size per plugin now. `in_use`: kernels assigned to learners, per plugin."""
    plugins = list(plugins)
    learners = expected(demands, now, capacity.lead)
    wish = {p: capacity.normal + max(0, learners.get(p, 0) - in_use.get(p, 0)) for p in plugins}
    room = max(0, capacity.max_kernels - sum(in_use.get(p, 0) for p in plugins))
    if sum(wish.values()) <= room:
        return wish
    # Overbooked: the normal pools first (as without events), then the extras in proportion.
    base = {p: min(capacity.normal, wish[p]) for p in plugins}
    if sum(base.values()) >= room:
        return base
    extra = {p: wish[p] - base[p] for p in plugins}
    left = room - sum(base.values())
    total = sum(extra.values())
    share = {p: extra[p] * left // total for p in plugins}
    # Whole kernels: the remainder goes to the largest wishes, one each.
    for p in sorted(plugins, key=lambda p: -extra[p])[:left - sum(share.values())]:
        share[p] += 1
    return {p: base[p] + share[p] for p in plugins}
