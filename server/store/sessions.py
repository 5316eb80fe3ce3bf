"""Signed-in browsers: one row per session, keyed by the digest of the cookie's token."""
from __future__ import annotations

import dataclasses
import datetime as dt

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.accounts.tokens import digest, new_secret
from server.models import Session as SessionRow, User as UserRow, utcnow
from server.store import from_row
from server.store.users import COLUMNS as USER_COLUMNS, User

TOUCH_EVERY = dt.timedelta(minutes=5)   # last_seen_at is refreshed at most this often


@dataclasses.dataclass(frozen=True)
class Session:
    id: str                  # the token's digest; the token itself is only in the cookie
    user_id: str
    created_at: dt.datetime
    last_seen_at: dt.datetime
    user_agent: str
    ip: str


COLUMNS = tuple(getattr(SessionRow, f.name) for f in dataclasses.fields(Session))


async def start(engine: AsyncEngine, user_id: str, user_agent: str, ip: str) -> str:
    """A new session for `user_id`; returns the token for the cookie."""
    token = new_secret()
    now = utcnow()
    async with engine.begin() as conn:
        await conn.execute(sa.insert(SessionRow).values(
            id=digest(token), user_id=user_id, created_at=now, last_seen_at=now,
            user_agent=user_agent[:300], ip=ip[:64]))
    return token


async def user_of(engine: AsyncEngine, token: str, max_age: dt.timedelta) -> User | None:
    """The user a session token signs in, or None when it is unknown, ended or too old."""
    now = utcnow()
    query = (sa.select(*USER_COLUMNS, SessionRow.last_seen_at)
             .join(SessionRow, SessionRow.user_id == UserRow.id)
             .where(SessionRow.id == digest(token), SessionRow.created_at > now - max_age))
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    if row is None:
        return None
    *user, last_seen = row
    if now - last_seen > TOUCH_EVERY:
        async with engine.begin() as conn:
            await conn.execute(sa.update(SessionRow).where(SessionRow.id == digest(token))
                               .values(last_seen_at=now))
    return User(*user)


async def end(engine: AsyncEngine, token: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.delete(SessionRow).where(SessionRow.id == digest(token)))


async def end_others(engine: AsyncEngine, user_id: str, keep_token: str | None) -> int:
    """End every session of `user_id` but the one of `keep_token` (all of them when None)."""
    where = SessionRow.user_id == user_id
    if keep_token is not None:
        where = sa.and_(where, SessionRow.id != digest(keep_token))
    async with engine.begin() as conn:
        return (await conn.execute(sa.delete(SessionRow).where(where))).rowcount


async def of_user(engine: AsyncEngine, user_id: str) -> list[Session]:
    query = (sa.select(*COLUMNS).where(SessionRow.user_id == user_id)
             .order_by(SessionRow.last_seen_at.desc()))
    async with engine.connect() as conn:
        return [from_row(Session, row) for row in (await conn.execute(query)).mappings()]
