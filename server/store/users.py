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


def new_id() -> str:
    return secrets.token_hex(16)


async def create_anonymous(engine: AsyncEngine, user_id: str | None = None) -> User:
    """A row for an anonymous learner; `user_id` keeps the id its cookie already carries.
    Creating an id that another request created first returns that row."""
    user = User(id=user_id or new_id(), email=None, name="", is_admin=False, created_at=utcnow())
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.insert(UserRow).values(dataclasses.asdict(user)))
    except sa.exc.IntegrityError:
        existing = await get(engine, user.id)
        if existing is None:
            raise
        return existing
    return user
