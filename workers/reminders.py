"""RQ job: email a reminder to each learner the pure rule picks (server/mail/reminders.py).

Scheduled every REMINDER_EVERY seconds by the workers (embedded mode: by the
server's job thread). Safe to run twice, or in two workers at once: each
reminder is recorded under its trigger before it is queued, and a trigger
already recorded sends nothing.
"""
from __future__ import annotations

import asyncio
import logging
from urllib.parse import quote

from server import db
from server.config import Settings
from server.mail.reminders import reminder_for, unsubscribe_token
from server.models import utcnow
from server.secrets import load_secrets
from server.store import reminders as store
from workers import deps, emails

log = logging.getLogger("lessonserver.mail")


def send_reminders() -> int:
    """Queue every reminder that is due; returns how many were queued now."""
    settings = deps.current().settings
    if settings.reminder_days <= 0:
        return 0
    return asyncio.run(_send_reminders(settings))


async def _send_reminders(settings: Settings) -> int:
    engine = db.create_engine(settings)
    try:
        secret = load_secrets(settings).cookie_secret
        site = settings.public_url.rstrip("/")
        now, sent = utcnow(), 0
        async with emails.job_mailer(settings, engine) as mailer:
            for learner in await store.learners(engine):
                due = reminder_for(learner, now, settings.reminder_days)
                if due is None:
                    continue
                sent += await mailer.send(
                    store.KIND, due.email, trigger=due.trigger, user_id=due.user_id,
                    lesson_title=due.lesson_title, lesson_url=f"{site}/lessons/{due.lesson_slug}",
                    unsubscribe_url=f"{site}/unsubscribe?token="
                                    f"{quote(unsubscribe_token(secret, due.user_id), safe='')}")
        log.info("reminders queued", extra={"fields": {"emails": sent}})
        return sent
    finally:
        await engine.dispose()
