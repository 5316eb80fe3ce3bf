"""The subscription state machine: a pure function (state, event) -> (state, effects).

Stripe delivers webhooks at least once, out of order, for days. So the state
is never built from a sequence of deltas: every event carries a snapshot of
the whole subscription as Stripe reported it at `observed_at`, and the
machine keeps the newest snapshot it has seen. Rules, in order:
- a canceled (or expired) subscription is final: no later snapshot of the
  same subscription reopens it, whatever its timestamp says;
- an older snapshot, or one of the same age, changes nothing (duplicates, stale redeliveries);
- of two subscriptions, the one created later is the learner's current one, so the
  end of an older one never ends a newer one.
Effects say what the shell must do because access changed or money moved.
"""
from __future__ import annotations

import dataclasses
import enum

DAY = 86400.0


class Status(str, enum.Enum):
    """Stripe's subscription statuses."""
    INCOMPLETE = "incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired"
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    CANCELED = "canceled"
    UNPAID = "unpaid"
    PAUSED = "paused"


FINAL = frozenset({Status.CANCELED, Status.INCOMPLETE_EXPIRED})
PAYING = frozenset({Status.ACTIVE, Status.TRIALING})


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """One subscription as Stripe reported it at `observed_at` (epoch seconds)."""
    subscription_id: str
    customer_id: str
    user_id: str | None            # from the subscription's metadata, set at checkout
    status: Status
    observed_at: float
    created: float = 0.0                # when the subscription was created (Stripe's `created`)
    period_start: float | None = None   # the current period's start: a failed renewal's grace runs from here
    period_end: float | None = None


class EventKind(str, enum.Enum):
    CREATED = "customer.subscription.created"
    UPDATED = "customer.subscription.updated"
    DELETED = "customer.subscription.deleted"
    PAUSED = "customer.subscription.paused"
    RESUMED = "customer.subscription.resumed"
    CHECKOUT_COMPLETED = "checkout.session.completed"
    INVOICE_PAID = "invoice.paid"
    INVOICE_PAYMENT_FAILED = "invoice.payment_failed"
    RECONCILED = "reconciled"            # the daily job read the subscription from the API


@dataclasses.dataclass(frozen=True)
class SubscriptionEvent:
    kind: EventKind
    snapshot: Snapshot
    invoice_id: str | None = None        # for the invoice kinds


# --- effects: what the shell does after storing the new state ---------------

@dataclasses.dataclass(frozen=True)
class AccessStarted:
    user_id: str


@dataclasses.dataclass(frozen=True)
class AccessEnded:
    """Close the learner's kernels on paid lessons; tell them the subscription ended."""
    user_id: str


@dataclasses.dataclass(frozen=True)
class PaymentReceived:
    user_id: str
    invoice_id: str


@dataclasses.dataclass(frozen=True)
class PaymentFailed:
    user_id: str
    invoice_id: str


Effect = AccessStarted | AccessEnded | PaymentReceived | PaymentFailed


def status_grants_access(status: Status, past_due_since: float | None, now: float,
                         grace_days: float) -> bool:
    """Active and trialing subscriptions give access; past_due keeps it for the grace period
    counted from `past_due_since`; everything else (canceled, unpaid, paused, incomplete,
    incomplete_expired) does not."""
    if status in PAYING:
        return True
    if status is Status.PAST_DUE and past_due_since is not None:
        return now < past_due_since + grace_days * DAY
    return False


def has_access(snapshot: Snapshot | None, now: float, grace_days: float) -> bool:
    """The rule above for a snapshot; a failed renewal's grace runs from the unpaid period's start."""
    if snapshot is None:
        return False
    since = snapshot.period_start if snapshot.period_start is not None else snapshot.observed_at
    return status_grants_access(snapshot.status, since, now, grace_days)


def supersedes(new: Snapshot, old: Snapshot | None) -> bool:
    """Whether `new` replaces the stored `old` (see the module's rules)."""
    if old is None:
        return True
    if new.subscription_id == old.subscription_id:
        if old.status in FINAL:
            return False
        if new.status in FINAL:
            return True        # cancellation is final even when clocks disagree
        return new.observed_at > old.observed_at
    return (new.created, new.observed_at) > (old.created, old.observed_at)


def apply(state: Snapshot | None, event: SubscriptionEvent, now: float,
          grace_days: float) -> tuple[Snapshot | None, tuple[Effect, ...]]:
    """The state after `event`, and the effects to carry out."""
    new = event.snapshot
    next_state = new if supersedes(new, state) else state
    user_id = (next_state or new).user_id or new.user_id
    effects: list[Effect] = []
    if user_id is not None:
        if event.invoice_id is not None and event.kind is EventKind.INVOICE_PAID:
            effects.append(PaymentReceived(user_id, event.invoice_id))
        elif event.invoice_id is not None and event.kind is EventKind.INVOICE_PAYMENT_FAILED:
            effects.append(PaymentFailed(user_id, event.invoice_id))
        before = has_access(state, now, grace_days)
        after = has_access(next_state, now, grace_days)
        if after and not before:
            effects.append(AccessStarted(user_id))
        elif before and not after:
            effects.append(AccessEnded(user_id))
    return next_state, tuple(effects)
