"""Stripe's webhook payloads and subscription objects as plain values (pure parsing).

Called only on bodies whose signature was verified. Handles both shapes of
the subscription object: the current period on the subscription (older API
versions) or on its items (newer ones).
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from server.billing.machine import EventKind, Snapshot, Status

HANDLED = frozenset(kind.value for kind in EventKind if kind is not EventKind.RECONCILED)


class BadEvent(ValueError):
    """A verified body that is not a Stripe event we can read; the message says what is missing."""


@dataclasses.dataclass(frozen=True)
class WebhookEvent:
    id: str
    type: str
    created: int
    kind: EventKind | None           # None: an event type we do not act on
    subscription_id: str | None
    customer_id: str | None
    user_id: str | None              # checkout's client_reference_id or the subscription's metadata
    invoice_id: str | None


def _text(value: Any) -> str | None:
    """An id given inline or as an expanded object."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _invoice_subscription(invoice: Mapping[str, Any]) -> str | None:
    parent = invoice.get("parent") or {}
    details = parent.get("subscription_details") or {} if isinstance(parent, Mapping) else {}
    return _text(invoice.get("subscription")) or _text(details.get("subscription"))


def parse_event(body: bytes | str) -> WebhookEvent:
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadEvent(f"the body is not JSON: {exc}") from None
    return event_of(event)


def event_of(event: Any) -> WebhookEvent:
    """The event in a decoded payload, or in one listed from the API."""
    if not isinstance(event, dict) or event.get("object") != "event":
        raise BadEvent("the body is not a Stripe event object")
    event_id, event_type, created = event.get("id"), event.get("type"), event.get("created")
    obj = (event.get("data") or {}).get("object") if isinstance(event.get("data"), dict) else None
    if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str) \
            or not isinstance(created, int) or not isinstance(obj, dict):
        raise BadEvent("the event lacks an id, type, created time or data.object")
    kind = EventKind(event_type) if event_type in HANDLED else None
    subscription_id = invoice_id = user_id = None
    if obj.get("object") == "subscription":
        subscription_id = _text(obj.get("id"))
        user_id = _text((obj.get("metadata") or {}).get("user_id"))
    elif obj.get("object") == "invoice":
        subscription_id, invoice_id = _invoice_subscription(obj), _text(obj.get("id"))
    elif obj.get("object") == "checkout.session":
        subscription_id, user_id = _text(obj.get("subscription")), _text(obj.get("client_reference_id"))
    return WebhookEvent(event_id, event_type, created, kind, subscription_id,
                        _text(obj.get("customer")), user_id, invoice_id)


def _period(subscription: Mapping[str, Any], name: str) -> float | None:
    value = subscription.get(name)
    if value is None:
        items = (subscription.get("items") or {}).get("data") or []
        value = items[0].get(name) if items else None
    return float(value) if isinstance(value, (int, float)) else None


def snapshot_of(subscription: Mapping[str, Any], observed_at: float) -> Snapshot:
    """The machine's value for a subscription object read at `observed_at`."""
    try:
        status = Status(subscription["status"])
        return Snapshot(
            subscription_id=str(subscription["id"]),
            customer_id=_text(subscription.get("customer")) or "",
            user_id=_text((subscription.get("metadata") or {}).get("user_id")),
            status=status, observed_at=observed_at,
            created=float(subscription.get("created") or subscription.get("start_date") or 0),
            period_start=_period(subscription, "current_period_start"),
            period_end=_period(subscription, "current_period_end"))
    except (KeyError, ValueError, TypeError) as exc:
        raise BadEvent(f"not a subscription object: {exc!r}") from None
