"""What the reminder rule needs to know about every learner who may get one, in three queries."""
from __future__ import annotations

import collections
import datetime as dt

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.mail.reminders import LessonActivity, Learner
from server.models import EmailLog, Exercise, Lesson, Progress, User, utcnow

KIND = "reminder"


async def learners(engine: AsyncEngine) -> list[Learner]:
    """Confirmed accounts with reminders on and some progress, with their lessons' progress."""
    per_lesson = (
        sa.select(User.id, User.email, Progress.lesson_slug,
                  sa.func.count().filter(Progress.status == "passed").label("passed"),
                  sa.func.max(Progress.updated_at).label("last_at"))
        .join(Progress, Progress.user_id == User.id)
        .where(User.email.is_not(None), User.email_verified_at.is_not(None),
               User.reminders_off_at.is_(None))
        .group_by(User.id, User.email, Progress.lesson_slug))
    lessons = (sa.select(Lesson.slug, Lesson.title, sa.func.count(Exercise.id).label("total"))
               .outerjoin(Exercise, Exercise.lesson_slug == Lesson.slug)
               .group_by(Lesson.slug, Lesson.title))
    reminded = (sa.select(EmailLog.user_id, sa.func.max(EmailLog.created_at).label("at"))
                .where(EmailLog.kind == KIND).group_by(EmailLog.user_id))
    async with engine.connect() as conn:
        rows = (await conn.execute(per_lesson)).all()
        catalog = {row.slug: row for row in await conn.execute(lessons)}
        last_reminder = {row.user_id: row.at for row in await conn.execute(reminded)}
    by_user: dict[tuple[str, str], list[LessonActivity]] = collections.defaultdict(list)
    for row in rows:
        lesson = catalog.get(row.lesson_slug)
        if lesson is not None:                 # a lesson withdrawn from the course is not named
            last_at = _aware(row.last_at)
            by_user[(row.id, row.email)].append(
                LessonActivity(row.lesson_slug, lesson.title, row.passed, lesson.total, last_at))
    return [Learner(user_id, email, tuple(activity), _aware(last_reminder.get(user_id)))
            for (user_id, email), activity in sorted(by_user.items())]


def _aware(value: dt.datetime | str | None) -> dt.datetime | None:
    """max() over SQLite's text times comes back as text: the column's type is not applied."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value


async def unsubscribe(engine: AsyncEngine, user_id: str) -> bool:
    """Reminders off for `user_id` (the first time counts); False when the user is gone."""
    async with engine.begin() as conn:
        if (await conn.execute(sa.select(User.id).where(User.id == user_id))).first() is None:
            return False
        await conn.execute(sa.update(User).where(User.id == user_id, User.reminders_off_at.is_(None))
                           .values(reminders_off_at=utcnow()))
    return True
