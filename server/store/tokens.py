"""Single-use emailed tokens (verify, magic link, reset): issued, then consumed at most once."""
from __future__ import annotations

import dataclasses
import datetime as dt

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.accounts.tokens import Purpose, digest, new_secret
from server.models import AccountToken, utcnow


@dataclasses.dataclass(frozen=True)
class Issued:
    id: str                  # the digest: also names the email that carries the token
    secret: str              # goes into the email's link, and nowhere else


@dataclasses.dataclass(frozen=True)
class Redeemed:
    user_id: str
    anonymous_id: str | None
    new_email: str | None = None


async def issue(engine: AsyncEngine, purpose: Purpose, user_id: str, lifetime: dt.timedelta,
                anonymous_id: str | None = None, new_email: str | None = None) -> Issued:
    secret = new_secret()
    now = utcnow()
    issued = Issued(digest(secret), secret)
    async with engine.begin() as conn:
        await conn.execute(sa.insert(AccountToken).values(
            id=issued.id, purpose=purpose.value, user_id=user_id, anonymous_id=anonymous_id,
            new_email=new_email, created_at=now, expires_at=now + lifetime))
    return issued


async def peek(engine: AsyncEngine, secret: str, purpose: Purpose) -> bool:
    """Whether the token could be redeemed now (for the page that asks to confirm)."""
    query = sa.select(AccountToken.id).where(*_redeemable(secret, purpose, utcnow()))
    async with engine.connect() as conn:
        return (await conn.execute(query)).first() is not None


async def redeem(engine: AsyncEngine, secret: str, purpose: Purpose) -> Redeemed | None:
    """Use the token once: a single UPDATE ... WHERE unused, so two clicks cannot both succeed.
    The user's other unused tokens of the same purpose stop working too."""
    now = utcnow()
    async with engine.begin() as conn:
        row = (await conn.execute(
            sa.update(AccountToken).where(*_redeemable(secret, purpose, now)).values(used_at=now)
            .returning(AccountToken.user_id, AccountToken.anonymous_id,
                       AccountToken.new_email))).first()
        if row is None:
            return None
        await conn.execute(sa.update(AccountToken).where(
            AccountToken.user_id == row.user_id, AccountToken.purpose == purpose.value,
            AccountToken.used_at.is_(None)).values(used_at=now))
    return Redeemed(row.user_id, row.anonymous_id, row.new_email)


def _redeemable(secret: str, purpose: Purpose, now: dt.datetime) -> tuple:
    return (AccountToken.id == digest(secret), AccountToken.purpose == purpose.value,
            AccountToken.used_at.is_(None), AccountToken.expires_at > now)
