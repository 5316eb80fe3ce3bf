"""Rate-limit decisions on plain values, the in-process store, and the credential guard."""
from __future__ import annotations

import pytest

from server.accounts.limiter import CredentialLimiter, CredentialRules, MemoryRateStore
from server.accounts.ratelimit import Bucket, Decision, Rule, give_back, is_full, parse_rule, take
from server.accounts.redis_rates import fold

RULE = Rule(burst=3, window=30.0)      # three at once, then one every 10 s


def spend(n: int, rule: Rule = RULE, now: float = 0.0, bucket: Bucket | None = None):
    decisions = []
    for _ in range(n):
        bucket, decision = take(bucket, rule, now)
        decisions.append(decision)
    return bucket, decisions


def test_a_new_key_gets_the_burst_then_is_refused_with_the_wait():
    bucket, decisions = spend(4)
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[-1].retry_after == pytest.approx(10.0)
    assert decisions[-1].retry_after_header == "10"


def test_attempts_come_back_evenly_and_refusals_cost_nothing():
    bucket, _ = spend(3)
    bucket, refused = take(bucket, RULE, 4.0)
    assert not refused.allowed and refused.retry_after == pytest.approx(6.0)
    bucket, again = take(bucket, RULE, 4.0)           # refused again: still 6 s, not more
    assert again.retry_after == pytest.approx(6.0)
    bucket, allowed = take(bucket, RULE, 10.0)
    assert allowed.allowed
    assert not take(bucket, RULE, 10.5)[1].allowed


def test_the_bucket_never_holds_more_than_the_burst_and_a_clock_going_back_refills_nothing():
    bucket, _ = spend(3)
    assert is_full(bucket, RULE, 1000.0) and not is_full(bucket, RULE, 29.0)
    _, decisions = spend(4, now=1000.0, bucket=bucket)
    assert [d.allowed for d in decisions] == [True, True, True, False]
    bucket, _ = spend(3, now=50.0)
    assert not take(bucket, RULE, 10.0)[1].allowed


def test_a_given_back_attempt_can_be_spent_again_but_never_past_the_burst():
    bucket, _ = spend(3)
    bucket = give_back(bucket, RULE, 0.0)
    bucket, decision = take(bucket, RULE, 0.0)
    assert decision.allowed and not take(bucket, RULE, 0.0)[1].allowed
    assert give_back(give_back(None, RULE, 0.0), RULE, 0.0).tokens == RULE.burst


def test_retry_after_header_is_never_zero():
    assert Decision(False, 0.2).retry_after_header == "1"
    assert Decision(False, 5.01).retry_after_header == "6"


@pytest.mark.parametrize("raw, rule", [("10/60", Rule(10, 60.0)), (" 5/0.5 ", Rule(5, 0.5))])
def test_rules_parse(raw, rule):
    assert parse_rule(raw) == rule


@pytest.mark.parametrize("raw", ["10", "0/60", "10/0", "ten/60", "10/-1", "10/inf", "/60", ""])
def test_bad_rules_say_how_to_write_one(raw):
    with pytest.raises(ValueError):
        parse_rule(raw)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_the_store_keeps_one_bucket_per_key_and_forgets_full_ones_first():
    clock = Clock()
    store = MemoryRateStore(clock, max_keys=2)
    assert (await store.take("a", RULE)).allowed
    for _ in range(3):
        await store.take("b", RULE)
    assert not (await store.take("b", RULE)).allowed
    clock.now = 100.0                        # a is full again, b too; c arrives: over the cap
    await store.take("c", RULE)
    assert len(store) <= 2
    clock.now = 100.0
    for _ in range(3):
        assert (await store.take("d", RULE)).allowed
    await store.take("e", RULE)              # d is recent and not full: it stays
    assert not (await store.take("d", RULE)).allowed


async def test_the_guard_charges_the_ip_first_and_the_account_from_every_ip():
    clock = Clock()
    limiter = CredentialLimiter(MemoryRateStore(clock),
                                CredentialRules(per_ip=Rule(2, 60.0), per_account=Rule(3, 60.0)))
    results = [(await limiter.attempt("10.0.0.1", "admin")).allowed for _ in range(10)]
    assert results == [True, True] + [False] * 8     # refused at the IP: the account kept 1
    assert (await limiter.attempt("10.0.0.2", "admin")).allowed
    refused = await limiter.attempt("10.0.0.3", "admin")   # the account is spent, from anywhere
    assert not refused.allowed and refused.retry_after == pytest.approx(20.0)
    assert (await limiter.attempt("10.0.0.3", "someone-else")).allowed


async def test_checks_that_succeed_do_not_count():
    limiter = CredentialLimiter(MemoryRateStore(Clock()),
                                CredentialRules(per_ip=Rule(2, 60.0), per_account=Rule(3, 60.0)))
    for _ in range(10):
        assert (await limiter.attempt("10.0.0.1", "admin")).allowed
        await limiter.succeeded("10.0.0.1", "admin")
    assert (await limiter.attempt("10.0.0.1", "admin")).allowed      # a failure: one left
    assert (await limiter.attempt("10.0.0.1", "admin")).allowed
    assert not (await limiter.attempt("10.0.0.1", "admin")).allowed


def test_the_settings_name_themselves():
    from server import config
    settings = config.load({"LS_AUTH_PER_IP": "5/30"})
    assert (settings.auth_per_ip, settings.auth_per_account) == (Rule(5, 30.0), Rule(30, 300.0))
    with pytest.raises(config.ConfigError, match="LS_AUTH_PER_ACCOUNT: '30'"):
        config.load({"LS_AUTH_PER_ACCOUNT": "30"})


def test_a_round_of_steps_folds_in_arrival_order_and_stores_only_a_change():
    rule = Rule(burst=2, window=60.0)
    def spend(bucket, now):
        return take(bucket, rule, now)

    def nothing(bucket, now):
        return None, True

    bucket, decisions = fold([spend, spend, spend], None, 100.0)
    assert [d.allowed for d in decisions] == [True, True, False]
    assert bucket == take(take(None, rule, 100.0)[0], rule, 100.0)[0]
    assert fold([nothing, nothing], None, 100.0) == (None, [True, True])
    assert fold([], None, 100.0) == (None, [])
