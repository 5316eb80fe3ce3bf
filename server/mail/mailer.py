"""What the server calls to send an email: render, record once per trigger, hand to a worker.

The server never talks SMTP: `send` returns as soon as the job is queued
(embedded mode: run on the job thread, which writes the outbox).
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from server.mail.messages import render
from server.store import emails

log = logging.getLogger("lessonserver.mail")

Enqueue = Callable[[str, dict[str, str]], Awaitable[None]]   # workers.queue Jobs.send_email


class Mailer:
    def __init__(self, engine: AsyncEngine, enqueue: Enqueue, site: str) -> None:
        self.engine = engine
        self.enqueue = enqueue
        self.site = site

    async def send(self, kind: str, to: str, *, trigger: str, user_id: str | None = None,
                   **context: Any) -> bool:
        """Send the email of `kind` for `trigger` (an event id, a token's id...) unless one was
        already sent for it; True when queued now. Raises when the queue is away."""
        message = render(kind, to, self.site, **context)
        email_id = emails.email_id(kind, trigger)
        if not await emails.record(self.engine, email_id, user_id, kind, to, message.subject):
            log.info("email already sent for this trigger", extra={"fields": {"kind": kind}})
            return False
        try:
            await self.enqueue(email_id, message.to_json())
        except BaseException:
            await emails.forget(self.engine, email_id)
            raise
        return True
