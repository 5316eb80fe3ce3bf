"""The per-owner quota decisions, pure: the window, the order, the wait."""
from kernels.quotas import WINDOW, Quota, may_run, may_start, recent

ONE_A_MINUTE = Quota(kernels=1, starts_per_minute=2, runs_per_minute=3)


def test_recent_keeps_the_moments_inside_the_window_oldest_first():
    now = 1000.0
    assert recent([now - WINDOW, now - WINDOW + 0.5, now - 1, now], now) == \
        (now - WINDOW + 0.5, now - 1, now)
    assert recent([now - 2, now - 30, now - 90, now - 1], now) == (now - 30, now - 2, now - 1)
    assert recent([], now) == ()
    assert recent([now + 5], now) == (now + 5,)    # a clock set back: still counted


def test_a_full_minute_refuses_until_the_oldest_run_leaves_it():
    now = 1000.0
    runs = (now - 50, now - 20, now - 10)
    refusal = may_run(ONE_A_MINUTE, runs, now)
    assert refusal.reason == "owner_runs" and refusal.retry_after == 10.0
    assert "at most 3 a minute" in refusal.message
    assert may_run(ONE_A_MINUTE, (now - 61, now - 20, now - 10), now) is None
    assert may_run(None, runs * 100, now) is None     # exempt


def test_starts_are_counted_in_the_same_window():
    now = 1000.0
    assert may_start(ONE_A_MINUTE, 0, (now - 59, now - 1), now).retry_after == 1.0
    assert may_start(ONE_A_MINUTE, 0, (now - 61, now - 1), now) is None
    assert may_start(ONE_A_MINUTE, 1, (), now).reason == "owner_kernels"
