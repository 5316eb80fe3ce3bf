"""Which emails a billing change sends, as a pure rule on the machine's effects.

Each email names its trigger, and the mailer sends at most one per (kind,
trigger): a payment email is keyed by its invoice, so two events about the
same invoice (a redelivery, or `invoice.paid` then a reconciliation) send
one; the end of access is keyed by what reported it (a webhook event's id,
or the snapshot a reconciliation read).
"""
from __future__ import annotations

import dataclasses

from server.billing.machine import AccessEnded, Effect, PaymentFailed, PaymentReceived


@dataclasses.dataclass(frozen=True)
class Notice:
    kind: str                # a kind of server/mail/messages.KINDS
    user_id: str
    trigger: str


def notices_of(effects: tuple[Effect, ...], reported_by: str) -> tuple[Notice, ...]:
    """The emails to send for `effects`; `reported_by` is the event id (or the reconciliation's
    key) that caused them."""
    notices = []
    for effect in effects:
        if isinstance(effect, PaymentReceived):
            notices.append(Notice("payment_received", effect.user_id, f"invoice:{effect.invoice_id}"))
        elif isinstance(effect, PaymentFailed):
            notices.append(Notice("payment_failed", effect.user_id, f"invoice:{effect.invoice_id}"))
        elif isinstance(effect, AccessEnded):
            notices.append(Notice("subscription_ended", effect.user_id, f"ended:{reported_by}"))
    return tuple(notices)
