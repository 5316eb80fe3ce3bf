"""The live-event planner on plain values: when pools grow, by how much, within the host."""
from __future__ import annotations

from kernels.live_plan import Capacity, Demand, expected, pool_sizes

T = 10_000.0                       # the event's start
EVENT = Demand("python", T, T + 3600, 30)
HOST = Capacity(normal=1, max_kernels=40, lead=300)
PLUGINS = ("python", "bash")


def sizes(now: float, demands=(EVENT,), capacity=HOST, in_use=None) -> dict[str, int]:
    return pool_sizes(demands, now, capacity, PLUGINS, in_use or {})


def test_pools_stay_normal_until_the_lead_time_before_the_start():
    assert sizes(T - 301) == {"python": 1, "bash": 1}
    assert sizes(T - 300) == {"python": 31, "bash": 1}
    assert sizes(T) == {"python": 31, "bash": 1}


def test_pools_go_back_to_normal_at_the_end():
    assert sizes(T + 3599) == {"python": 31, "bash": 1}
    assert sizes(T + 3600) == {"python": 1, "bash": 1}


def test_learners_who_have_a_kernel_need_no_warm_one():
    assert sizes(T + 10, in_use={"python": 12}) == {"python": 19, "bash": 1}
    assert sizes(T + 10, in_use={"python": 30}) == {"python": 1, "bash": 1}
    assert sizes(T + 10, in_use={"python": 35}) == {"python": 1, "bash": 1}


def test_the_host_bounds_the_pools():
    big = Demand("python", T, T + 60, 500)
    assert sizes(T, (big,)) == {"python": 39, "bash": 1}
    assert sizes(T, (big,), in_use={"bash": 10}) == {"python": 29, "bash": 1}


def test_an_overbooked_host_shares_the_extra_in_proportion():
    events = (Demand("python", T, T + 60, 60), Demand("bash", T, T + 60, 20))
    plan = sizes(T, events, Capacity(normal=1, max_kernels=42, lead=0))
    assert plan == {"python": 31, "bash": 11}          # 40 extra kernels split 3:1
    assert sum(plan.values()) == 42


def test_a_full_host_keeps_the_normal_pools_and_no_extra():
    # The normal pools are the configuration; their refills wait for room on the host anyway.
    assert sizes(T, in_use={"python": 39}) == {"python": 1, "bash": 1}
    assert sizes(T, in_use={"python": 40}) == {"python": 1, "bash": 1}


def test_overlapping_events_add_up_and_unknown_plugins_are_ignored():
    events = (EVENT, Demand("python", T + 60, T + 120, 5), Demand("cobol", T, T + 600, 99))
    assert expected(events, T + 60, 0) == {"python": 35, "cobol": 99}
    assert sizes(T + 60, events) == {"python": 36, "bash": 1}
