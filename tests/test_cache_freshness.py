"""Freshness, XFetch and fencing as plain values."""
from __future__ import annotations

import math

from server.cache import freshness
from server.cache.freshness import Entry, Policy, State

POLICY = Policy(ttl=10, grace=5, beta=1.0)


def entry(now=100.0, delta=0.5, fence=1, negative=False) -> Entry:
    return freshness.make_entry(b"x", 200, now=now, delta=delta, fence=fence, policy=POLICY,
                                negative=negative)


def test_fresh_then_stale_within_grace_then_expired():
    e = entry(now=100)
    assert (e.fresh_until, e.stale_until) == (110, 115)
    assert freshness.state_of(e, 105, beta=0, rand=0.5) is State.FRESH
    assert freshness.state_of(e, 110, beta=0, rand=0.5) is State.STALE
    assert freshness.state_of(e, 114.999, beta=0, rand=0.5) is State.STALE
    assert freshness.state_of(e, 115, beta=0, rand=0.5) is State.EXPIRED
    assert freshness.state_of(None, 0, beta=1, rand=0.5) is State.MISSING


def test_only_fresh_early_and_stale_are_served():
    assert [s for s in State if freshness.servable(s)] == [State.FRESH, State.EARLY, State.STALE]
    assert freshness.result_label(State.STALE) == "stale"
    assert freshness.result_label(State.EXPIRED) == "miss"
    assert freshness.result_label(State.EARLY) == "hit"


def test_xfetch_recomputes_early_more_often_near_expiry_and_for_slow_recomputes():
    e = entry(now=100, delta=1.0)
    # now - delta*beta*ln(rand) >= fresh_until  <=>  rand <= exp(-(fresh_until-now)/(delta*beta))
    threshold_at = lambda now: math.exp(-(e.fresh_until - now) / 1.0)
    assert freshness.state_of(e, 109, beta=1, rand=threshold_at(109) * 0.99) is State.EARLY
    assert freshness.state_of(e, 109, beta=1, rand=threshold_at(109) * 1.01) is State.FRESH
    assert freshness.state_of(e, 101, beta=1, rand=0.5) is State.FRESH   # far from expiry
    assert freshness.state_of(e, 109, beta=0, rand=1e-9) is State.FRESH  # beta 0: off
    fast = entry(now=100, delta=0.001)
    assert freshness.state_of(fast, 109, beta=1, rand=0.01) is State.FRESH


def test_negative_entries_live_at_most_negative_ttl():
    e = entry(now=100, negative=True)
    assert e.fresh_until == 100 + POLICY.negative_ttl and e.negative


def test_fencing_refuses_a_late_holder():
    newer = entry(fence=7)
    assert not freshness.may_store(newer, 6)
    assert not freshness.may_store(newer, 7)
    assert freshness.may_store(newer, 8)
    assert freshness.may_store(None, 1)


def test_etag_changes_with_each_write():
    assert entry(fence=1).etag != entry(fence=2).etag
    assert entry(fence=1).etag.startswith('"')


def test_local_copy_is_fresh_briefly_but_keeps_the_shared_grace():
    e = entry(now=100)
    copy = freshness.local_copy(e, now=101, local_ttl=1)
    assert copy.fresh_until == 102 and copy.stale_until == e.stale_until
