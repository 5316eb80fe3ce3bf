"""Who gets a reminder, as a pure rule on plain values.

A learner with a confirmed address, reminders on, and no activity for
LS_REMINDER_DAYS gets one email naming the unfinished lesson it touched last.
One per stretch of inactivity (the trigger is the time of the last activity,
so a job that runs twice, or twice as often, sends nothing more), and never
two within the same number of days.
"""
from __future__ import annotations

import dataclasses
import datetime as dt

import tornado.web

UNSUBSCRIBE = "unsubscribe"       # the signed value's name: it cannot pass for a cookie
UNSUBSCRIBE_DAYS = 3650           # an old email's link still works


@dataclasses.dataclass(frozen=True)
class LessonActivity:
    slug: str
    title: str
    passed: int               # exercises of the lesson passed by the learner
    total: int                # exercises the lesson has now
    last_at: dt.datetime      # the learner's last submission in it


@dataclasses.dataclass(frozen=True)
class Learner:
    user_id: str
    email: str
    lessons: tuple[LessonActivity, ...]
    last_reminder_at: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class Reminder:
    user_id: str
    email: str
    lesson_slug: str
    lesson_title: str
    trigger: str              # one reminder per trigger, ever


def reminder_for(learner: Learner, now: dt.datetime, days: int) -> Reminder | None:
    if days <= 0 or not learner.lessons:
        return None
    period = dt.timedelta(days=days)
    last_activity = max(lesson.last_at for lesson in learner.lessons)
    if now - last_activity < period:
        return None
    if learner.last_reminder_at is not None and now - learner.last_reminder_at < period:
        return None
    unfinished = [lesson for lesson in learner.lessons if lesson.passed < lesson.total]
    if not unfinished:
        return None
    lesson = max(unfinished, key=lambda l: (l.last_at, l.slug))
    return Reminder(learner.user_id, learner.email, lesson.slug, lesson.title,
                    f"{learner.user_id}:{last_activity.isoformat()}")


def unsubscribe_token(secret: str, user_id: str) -> str:
    """A link token that turns reminders off for `user_id`, signed with the cookie secret."""
    return tornado.web.create_signed_value(secret, UNSUBSCRIBE, user_id).decode()


def unsubscribed_user(secret: str, token: str) -> str | None:
    """The user a token names, or None when it was not signed by us."""
    value = tornado.web.decode_signed_value(secret, UNSUBSCRIBE, token or None,
                                            max_age_days=UNSUBSCRIBE_DAYS)
    return value.decode() if value else None
