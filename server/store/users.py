"""Users: anonymous until they claim an account; the id lives in a signed cookie."""
from __future__ import annotations

import dataclasses
import datetime as dt
import secrets

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.models import User as UserRow, utcnow


@dataclasses.dataclass(frozen=True)
class User:
    id: str
    email: str | None
    name: str
    is_admin: bool
    created_at: dt.datetime


COLUMNS = (UserRow.id, UserRow.email, UserRow.name, UserRow.is_admin, UserRow.created_at)


async def get(engine: AsyncEngine, user_id: str) -> User | None:
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(*COLUMNS).where(UserRow.id == user_id))).first()
    return None if row is None else User(*row)


async def create_anonymous(engine: AsyncEngine) -> User:
    user = User(id=secrets.token_hex(16), email=None, name="", is_admin=False, created_at=utcnow())
    async with engine.begin() as conn:
        await conn.execute(sa.insert(UserRow).values(dataclasses.asdict(user)))
    return user
