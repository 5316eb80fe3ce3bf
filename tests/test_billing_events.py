"""Stripe payloads as values: events of each handled kind, both shapes of the subscription object."""
from __future__ import annotations

import json

import pytest

from server.billing.events import BadEvent, parse_event, snapshot_of
from server.billing.machine import EventKind, Status


def body(type_: str, obj: dict, **extra) -> str:
    return json.dumps({"id": "evt_1", "object": "event", "type": type_, "created": 1700000000,
                       "data": {"object": obj}, **extra})


def test_subscription_event_names_subscription_customer_and_learner():
    event = parse_event(body("customer.subscription.deleted", {
        "object": "subscription", "id": "sub_1", "customer": "cus_1", "metadata": {"user_id": "u1"}}))
    assert (event.kind, event.subscription_id, event.customer_id, event.user_id) == \
        (EventKind.DELETED, "sub_1", "cus_1", "u1")


def test_invoice_event_in_old_and_new_api_shapes():
    old = parse_event(body("invoice.paid", {"object": "invoice", "id": "in_1", "customer": "cus_1",
                                            "subscription": "sub_1"}))
    new = parse_event(body("invoice.payment_failed", {
        "object": "invoice", "id": "in_2", "customer": {"id": "cus_1"},
        "parent": {"subscription_details": {"subscription": "sub_2"}}}))
    assert (old.kind, old.subscription_id, old.invoice_id) == (EventKind.INVOICE_PAID, "sub_1", "in_1")
    assert (new.kind, new.subscription_id, new.customer_id) == (EventKind.INVOICE_PAYMENT_FAILED, "sub_2", "cus_1")


def test_checkout_session_names_the_learner_by_client_reference():
    event = parse_event(body("checkout.session.completed", {
        "object": "checkout.session", "id": "cs_1", "customer": "cus_1", "subscription": "sub_1",
        "client_reference_id": "u1"}))
    assert (event.kind, event.subscription_id, event.user_id) == (EventKind.CHECKOUT_COMPLETED, "sub_1", "u1")


def test_other_event_types_are_read_but_not_acted_on():
    event = parse_event(body("customer.created", {"object": "customer", "id": "cus_1"}))
    assert event.kind is None and event.subscription_id is None


@pytest.mark.parametrize("raw, says", [
    (b"\xff\xfe", "not JSON"), ("[]", "not a Stripe event"), ('{"object": "event"}', "lacks an id"),
    (json.dumps({"object": "event", "id": "e", "type": "x", "created": "soon", "data": {"object": {}}}),
     "lacks an id, type, created"),
])
def test_bad_bodies_say_what_is_wrong(raw, says):
    with pytest.raises(BadEvent, match=says):
        parse_event(raw)


def test_snapshot_reads_the_period_from_the_subscription_or_its_items():
    old = snapshot_of({"id": "sub_1", "customer": "cus_1", "status": "past_due", "created": 10,
                       "current_period_start": 100, "current_period_end": 200,
                       "metadata": {"user_id": "u1"}}, 5.0)
    new = snapshot_of({"id": "sub_1", "customer": "cus_1", "status": "active", "created": 10,
                       "items": {"data": [{"current_period_start": 300, "current_period_end": 400}]}}, 6.0)
    assert (old.status, old.period_start, old.period_end, old.user_id, old.created) == \
        (Status.PAST_DUE, 100.0, 200.0, "u1", 10.0)
    assert (new.status, new.period_start, new.period_end, new.user_id) == (Status.ACTIVE, 300.0, 400.0, None)
    with pytest.raises(BadEvent):
        snapshot_of({"id": "sub_1", "status": "sleeping"}, 1.0)
