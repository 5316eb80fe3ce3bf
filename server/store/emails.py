"""The email log, server side: one row per trigger (recorded before the job is queued), and the
admins' outbox. The worker's side of the same rows is workers/emails.py."""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.models import EmailLog, utcnow
from server.store import from_row, upsert


@dataclasses.dataclass(frozen=True)
class LoggedEmail:
    id: str
    user_id: str | None
    kind: str
    recipient: str
    subject: str
    status: str              # queued | sent | failed
    attempts: int
    created_at: dt.datetime
    sent_at: dt.datetime | None
    last_error: str | None
    outbox: str | None       # the plain-text body, in embedded mode only


COLUMNS = tuple(getattr(EmailLog, f.name) for f in dataclasses.fields(LoggedEmail))


def email_id(kind: str, trigger: str) -> str:
    """One id per (kind, trigger): the same trigger twice is the same email, sent once."""
    return hashlib.sha256(f"{kind}\0{trigger}".encode()).hexdigest()


async def record(engine: AsyncEngine, id: str, user_id: str | None, kind: str, recipient: str,
                 subject: str) -> bool:
    """Note an email as queued; False when this trigger already has one (send nothing)."""
    stmt = upsert(engine, EmailLog.__table__).values(
        id=id, user_id=user_id, kind=kind, recipient=recipient, subject=subject, status="queued",
        attempts=0, created_at=utcnow()).on_conflict_do_nothing(index_elements=["id"])
    async with engine.begin() as conn:
        return (await conn.execute(stmt)).rowcount == 1


async def forget(engine: AsyncEngine, id: str) -> None:
    """Undo `record` when the job could not be queued, so the trigger may be tried again."""
    async with engine.begin() as conn:
        await conn.execute(sa.delete(EmailLog).where(EmailLog.id == id, EmailLog.attempts == 0))


async def recent(engine: AsyncEngine, limit: int = 100) -> list[LoggedEmail]:
    query = sa.select(*COLUMNS).order_by(EmailLog.created_at.desc()).limit(limit)
    async with engine.connect() as conn:
        return [from_row(LoggedEmail, row) for row in (await conn.execute(query)).mappings()]
