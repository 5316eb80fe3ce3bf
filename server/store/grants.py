"""Paid access an admin gave by hand, until a time: one row per user, deleted on revoke.

Who granted and revoked what is in the audit log (server/admin/audit.py); whether a grant opens
a lesson now is server/learning/access.paid_access, a pure rule."""
from __future__ import annotations

import dataclasses
import datetime as dt

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.models import AccessGrant as GrantRow, utcnow
from server.store import from_row, upsert


@dataclasses.dataclass(frozen=True)
class Grant:
    user_id: str
    until: dt.datetime
    granted_by: str
    granted_at: dt.datetime
    reason: str = ""


COLUMNS = tuple(getattr(GrantRow, f.name) for f in dataclasses.fields(Grant))


async def get(engine: AsyncEngine, user_id: str) -> Grant | None:
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(*COLUMNS).where(GrantRow.user_id == user_id))
               ).mappings().first()
    return None if row is None else from_row(Grant, row)


async def put(engine: AsyncEngine, user_id: str, until: dt.datetime, granted_by: str,
              reason: str = "") -> Grant:
    """Grant (or move the end of) access for `user_id`; the newest grant replaces the last."""
    grant = Grant(user_id, until, granted_by[:320], utcnow(), reason)
    values = dataclasses.asdict(grant)
    stmt = upsert(engine, GrantRow.__table__).values(values)
    stmt = stmt.on_conflict_do_update(index_elements=[GrantRow.user_id],
                                      set_={k: v for k, v in values.items() if k != "user_id"})
    async with engine.begin() as conn:
        await conn.execute(stmt)
    return grant


async def delete(engine: AsyncEngine, user_id: str) -> bool:
    """Revoke; whether there was a grant."""
    async with engine.begin() as conn:
        result = await conn.execute(sa.delete(GrantRow).where(GrantRow.user_id == user_id))
    return result.rowcount > 0
