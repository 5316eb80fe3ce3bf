"""The subscription state machine on plain values, and its property test over shuffled deliveries."""
from __future__ import annotations

import dataclasses
import random

from server.billing.machine import (AccessEnded, AccessStarted, EventKind, PaymentFailed,
                                    PaymentReceived, Snapshot, Status, SubscriptionEvent, apply,
                                    has_access)

GRACE = 3.0
DAY = 86400.0
K = EventKind


def snap(status: Status, at: float, sub: str = "sub_1", **kw) -> Snapshot:
    kw.setdefault("created", {"sub_1": 0.0, "sub_old": 10.0, "sub_new": 150.0}[sub])
    return Snapshot(sub, "cus_1", "u1", status, at, **kw)


def ev(kind: EventKind, status: Status, at: float, sub: str = "sub_1", invoice: str | None = None,
       **kw) -> SubscriptionEvent:
    return SubscriptionEvent(kind, snap(status, at, sub, **kw), invoice)


def run(events, now=1e6, state=None):
    effects = []
    for event in events:
        state, produced = apply(state, event, now, GRACE)
        effects.extend(produced)
    return state, effects


def test_updated_after_deleted_never_reopens_access():
    deleted = ev(K.DELETED, Status.CANCELED, 200)
    updated = ev(K.UPDATED, Status.ACTIVE, 100)
    state, effects = run([ev(K.CREATED, Status.ACTIVE, 50), deleted, updated])
    assert state.status is Status.CANCELED
    assert effects == [AccessStarted("u1"), AccessEnded("u1")]


def test_a_final_state_stays_even_when_a_later_snapshot_says_otherwise():
    """Clocks of the event and of a re-fetch may disagree; cancellation wins for that subscription."""
    state, _ = run([ev(K.DELETED, Status.CANCELED, 200), ev(K.UPDATED, Status.ACTIVE, 300)])
    assert state.status is Status.CANCELED


def test_a_new_subscription_replaces_a_canceled_one_but_the_old_ones_end_does_not_end_it():
    state, _ = run([ev(K.DELETED, Status.CANCELED, 100, "sub_old"),
                    ev(K.CREATED, Status.ACTIVE, 200, "sub_new"),
                    ev(K.DELETED, Status.CANCELED, 300, "sub_old")])
    assert (state.subscription_id, state.status) == ("sub_new", Status.ACTIVE)


def test_duplicates_and_stale_events_change_nothing():
    first = ev(K.UPDATED, Status.ACTIVE, 100)
    state, effects = run([first, first, ev(K.CREATED, Status.INCOMPLETE, 50)])
    assert state == first.snapshot
    assert effects == [AccessStarted("u1")]


def test_invoices_give_payment_effects():
    _, effects = run([ev(K.INVOICE_PAID, Status.ACTIVE, 100, invoice="in_1"),
                      ev(K.INVOICE_PAYMENT_FAILED, Status.PAST_DUE, 200, invoice="in_2",
                         period_start=200)], now=201)
    assert effects == [PaymentReceived("u1", "in_1"), AccessStarted("u1"), PaymentFailed("u1", "in_2")]


def test_past_due_keeps_access_for_the_grace_period_only():
    past_due = snap(Status.PAST_DUE, 1000, period_start=1000)
    assert has_access(past_due, 1000 + GRACE * DAY - 1, GRACE)
    assert not has_access(past_due, 1000 + GRACE * DAY, GRACE)


def test_statuses_that_end_access():
    for status in Status:
        expected = status in (Status.ACTIVE, Status.TRIALING)
        assert has_access(snap(status, 1, period_start=-1e9), 0, GRACE) is expected, status
    assert not has_access(None, 0, GRACE)


# --- property: shuffled, duplicated, stale deliveries end where the newest object says ---

def timeline(rng: random.Random, sub: str, start: float) -> list[SubscriptionEvent]:
    """A realistic life of one subscription: each event carries the object as of its moment."""
    t = start
    events: list[SubscriptionEvent] = []
    invoices = iter(range(10 ** 6))

    def add(kind: EventKind, status: Status, invoice: bool = False) -> None:
        nonlocal t
        t += rng.choice([1, 1, 2, 60, 3600, 30 * DAY])   # some in the same second
        events.append(SubscriptionEvent(kind, Snapshot(sub, "cus_1", "u1", status, t, start, period_start=t),
                                        f"in_{sub}_{next(invoices)}" if invoice else None))

    if rng.random() < 0.15:
        add(K.CREATED, Status.INCOMPLETE)
        add(K.UPDATED, Status.INCOMPLETE_EXPIRED)
        return events
    add(K.CREATED, rng.choice([Status.ACTIVE, Status.TRIALING, Status.INCOMPLETE]))
    add(K.INVOICE_PAID, Status.ACTIVE, invoice=True)
    status = Status.ACTIVE
    for _ in range(rng.randint(0, 8)):
        if status is Status.ACTIVE:
            step = rng.choice(["renew", "fail", "pause", "update"])
        elif status is Status.PAST_DUE:
            step = rng.choice(["pay", "fail", "unpaid"])
        elif status is Status.PAUSED:
            step = "resume"
        else:                                              # unpaid: paid at last, or nothing
            step = rng.choice(["pay", "stay"])
        if step == "renew":
            add(K.INVOICE_PAID, Status.ACTIVE, invoice=True)
        elif step == "update":
            add(K.UPDATED, Status.ACTIVE)
        elif step == "fail":
            status = Status.PAST_DUE
            add(K.INVOICE_PAYMENT_FAILED, status, invoice=True)
        elif step == "pay":
            status = Status.ACTIVE
            add(K.INVOICE_PAID, status, invoice=True)
        elif step == "unpaid":
            status = Status.UNPAID
            add(K.UPDATED, status)
        elif step == "pause":
            status = Status.PAUSED
            add(K.PAUSED, status)
        elif step == "resume":
            status = Status.ACTIVE
            add(K.RESUMED, status)
    if rng.random() < 0.6:
        add(K.DELETED, Status.CANCELED)
    return events


def deliveries(rng: random.Random, events: list[SubscriptionEvent]) -> tuple[list[SubscriptionEvent], int, int]:
    """At least once, in any order: duplicates anywhere, and stale copies redelivered at the end."""
    delivered = list(events)
    duplicates = rng.randint(0, len(events))
    delivered += [rng.choice(events) for _ in range(duplicates)]
    rng.shuffle(delivered)
    stale = rng.randint(0, 3)
    delivered += [rng.choice(events[:-1] or events) for _ in range(stale)]
    return delivered, duplicates, stale


def test_property_any_delivery_order_ends_in_the_newest_objects_state():
    rng = random.Random(20261129)
    totals = {"sequences": 0, "events": 0, "duplicates": 0, "stale": 0, "mismatches": 0,
              "access_mismatches": 0, "resubscribed": 0}
    for _ in range(1000):
        events = timeline(rng, "sub_a", 0.0)
        if events[-1].snapshot.status in (Status.CANCELED, Status.INCOMPLETE_EXPIRED) and rng.random() < 0.3:
            events += timeline(rng, "sub_b", events[-1].snapshot.observed_at)   # subscribes again
            totals["resubscribed"] += 1
        newest = max((e.snapshot for e in events), key=lambda s: s.observed_at)
        delivered, duplicates, stale = deliveries(rng, events)
        for now in (newest.observed_at + 1, newest.observed_at + (GRACE + 1) * DAY):
            state, effects = run(delivered, now=now)
            totals["mismatches"] += state != newest
            totals["access_mismatches"] += has_access(state, now, GRACE) != has_access(newest, now, GRACE)
            # access effects alternate, starting with a start, and end where access is
            changes = [e for e in effects if isinstance(e, (AccessStarted, AccessEnded))]
            assert all(isinstance(c, AccessStarted if i % 2 == 0 else AccessEnded)
                       for i, c in enumerate(changes)), changes
            assert (len(changes) % 2 == 1) == has_access(state, now, GRACE)
        totals["sequences"] += 1
        totals["events"] += len(delivered)
        totals["duplicates"] += duplicates
        totals["stale"] += stale
    print(f"\nproperty test: {totals}")
    assert totals["sequences"] == 1000
    assert totals["mismatches"] == 0
    assert totals["access_mismatches"] == 0


def test_the_property_test_can_fail():
    """Without the rules (last delivery wins), shuffled deliveries end in the wrong state."""
    rng = random.Random(7)
    wrong = 0
    for _ in range(200):
        events = timeline(rng, "sub_a", 0.0)
        newest = max((e.snapshot for e in events), key=lambda s: s.observed_at)
        delivered, _, _ = deliveries(rng, events)
        wrong += delivered[-1].snapshot != newest
    assert wrong > 50
