"""Who may open which lesson: a pure rule on values, used by pages and the API."""
from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Iterable

from server.billing.machine import Status, status_grants_access


class Lock(str, enum.Enum):
    OPEN = "open"
    PAID = "paid"                    # needs an active subscription
    PREREQUISITES = "prerequisites"  # earlier lessons are not completed yet


@dataclasses.dataclass(frozen=True)
class LessonAccess:
    lock: Lock
    missing: tuple[str, ...] = ()    # prerequisite slugs still to complete

    @property
    def open(self) -> bool:
        return self.lock is Lock.OPEN


def lesson_access(*, paid: bool, prerequisites: Iterable[str], completed: frozenset[str],
                  subscribed: bool, is_admin: bool = False) -> LessonAccess:
    """Admins see everything; otherwise a paid lesson needs a subscription first,
    then every prerequisite must be completed."""
    if is_admin:
        return LessonAccess(Lock.OPEN)
    if paid and not subscribed:
        return LessonAccess(Lock.PAID)
    missing = tuple(slug for slug in prerequisites if slug not in completed)
    if missing:
        return LessonAccess(Lock.PREREQUISITES, missing)
    return LessonAccess(Lock.OPEN)


def paid_access(subscribed: bool, granted_until: dt.datetime | None, now: float) -> bool:
    """Whether paid lessons are open: a subscription that grants access, or access an admin
    granted by hand that has not run out (a grant ends at its time, not a day later)."""
    return subscribed or (granted_until is not None and now < granted_until.timestamp())


def subscribed(status: str | None, period_start: dt.datetime | None, updated_at: dt.datetime | None,
               now: float, grace_days: float) -> bool:
    """Whether the learner's stored subscription opens paid lessons now (the billing machine's
    rule: active or trialing, or past_due within the grace period); an unknown status does not."""
    try:
        known = Status(status)
    except ValueError:
        return False
    since = period_start or updated_at
    return status_grants_access(known, since.timestamp() if since else None, now, grace_days)
