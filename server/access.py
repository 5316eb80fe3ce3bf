"""Who may open which lesson: a pure rule on values, used by pages and the API."""
from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable


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
