"""The audit log of admin actions: one row per action, written before the action's answer."""
from __future__ import annotations

import dataclasses
import datetime as dt

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.models import AdminAudit

TOKEN_ACTOR = "API token"       # an admin who signed in with the token, not an account


@dataclasses.dataclass(frozen=True)
class Entry:
    at: dt.datetime
    actor: str
    action: str
    target: str
    detail: str
    ip: str


async def record(engine: AsyncEngine, actor: str, action: str, target: str = "",
                 detail: str = "", ip: str = "") -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.insert(AdminAudit).values(
            at=dt.datetime.now(dt.timezone.utc), actor=actor[:320], action=action[:64],
            target=target[:200], detail=detail, ip=ip[:64]))


async def recent(engine: AsyncEngine, limit: int = 50) -> list[Entry]:
    """Newest first."""
    columns = (AdminAudit.at, AdminAudit.actor, AdminAudit.action, AdminAudit.target,
               AdminAudit.detail, AdminAudit.ip)
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(*columns).order_by(AdminAudit.at.desc(),
                                                                AdminAudit.id.desc())
                                   .limit(limit))).all()
    return [Entry(*row) for row in rows]
