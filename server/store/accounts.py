"""Accounts: users with an address and a password, carrying over anonymous progress, and deletion.

The credential columns stay in here: other modules see `users.User`, never a hash.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import secrets

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.accounts.rules import ExerciseProgress, merge_progress
from server.models import (AccountToken, EmailLog, Progress, Run, Session, TraceEvent,
                           User as UserRow, utcnow)
from server.store import from_row, upsert


class AddressTaken(Exception):
    """Another account has this address (two sign-ups raced)."""


@dataclasses.dataclass(frozen=True)
class Account:
    id: str
    email: str
    is_admin: bool
    password_hash: str | None
    email_verified_at: dt.datetime | None

    @property
    def verified(self) -> bool:
        return self.email_verified_at is not None


COLUMNS = tuple(getattr(UserRow, f.name) for f in dataclasses.fields(Account))


async def _one(engine: AsyncEngine, where: sa.ColumnElement[bool]) -> Account | None:
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(*COLUMNS).where(where))).mappings().first()
    return None if row is None else from_row(Account, row)


async def by_email(engine: AsyncEngine, email: str) -> Account | None:
    return await _one(engine, UserRow.email == email)


async def by_id(engine: AsyncEngine, user_id: str) -> Account | None:
    return await _one(engine, sa.and_(UserRow.id == user_id, UserRow.email.is_not(None)))


async def create(engine: AsyncEngine, email: str, password_hash: str | None, *,
                 verified: bool = False, is_admin: bool = False) -> Account:
    account = Account(secrets.token_hex(16), email, is_admin, password_hash,
                      utcnow() if verified else None)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.insert(UserRow).values(dataclasses.asdict(account)))
    except sa.exc.IntegrityError:
        raise AddressTaken(email) from None
    return account


async def set_password(engine: AsyncEngine, user_id: str, password_hash: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.update(UserRow).where(UserRow.id == user_id)
                           .values(password_hash=password_hash))


async def change_email(engine: AsyncEngine, user_id: str, email: str) -> None:
    """A confirmed new address; AddressTaken when another account took it meanwhile."""
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.update(UserRow).where(UserRow.id == user_id)
                               .values(email=email, email_verified_at=utcnow()))
    except sa.exc.IntegrityError:
        raise AddressTaken(email) from None


async def mark_verified(engine: AsyncEngine, user_id: str) -> bool:
    """True when this call confirmed the address (False: it already was)."""
    async with engine.begin() as conn:
        result = await conn.execute(
            sa.update(UserRow).where(UserRow.id == user_id, UserRow.email_verified_at.is_(None))
            .values(email_verified_at=utcnow()))
    return result.rowcount == 1


async def make_admin(engine: AsyncEngine, email: str) -> Account:
    """The account of `email` made admin; created (confirmed, no password yet) when missing."""
    account = await by_email(engine, email)
    if account is None:
        return await create(engine, email, None, verified=True, is_admin=True)
    async with engine.begin() as conn:
        await conn.execute(sa.update(UserRow).where(UserRow.id == account.id).values(is_admin=True))
    return dataclasses.replace(account, is_admin=True)


async def carry_over(engine: AsyncEngine, anonymous_id: str, user_id: str) -> int:
    """Move an anonymous learner's progress and runs to an account; the anonymous user goes.

    Only an anonymous user (no address) is ever taken in, so a forged id cannot
    pull another account's progress. Returns the number of exercises moved.
    """
    if not anonymous_id or anonymous_id == user_id:
        return 0
    async with engine.begin() as conn:
        owner = (await conn.execute(sa.select(UserRow.email).where(UserRow.id == anonymous_id))).first()
        if owner is not None and owner.email is not None:
            return 0
        rows = {uid: await _progress(conn, uid) for uid in (user_id, anonymous_id)}
        merged = merge_progress(rows[user_id], rows[anonymous_id])
        if merged:
            stmt = upsert(engine, Progress.__table__)
            stmt = stmt.on_conflict_do_update(
                index_elements=["user_id", "lesson_slug", "exercise_id"],
                set_={name: stmt.excluded[name] for name in ("status", "attempts", "code", "updated_at",
                                                             "last_run", "solution_shown_at")})
            await conn.execute(stmt, [{"user_id": user_id, **dataclasses.asdict(row)} for row in merged])
        await conn.execute(sa.update(Run).where(Run.user_id == anonymous_id).values(user_id=user_id))
        await conn.execute(sa.delete(Progress).where(Progress.user_id == anonymous_id))
        await conn.execute(sa.delete(UserRow).where(UserRow.id == anonymous_id,
                                                    UserRow.email.is_(None)))
    return len(merged)


async def _progress(conn: AsyncConnection, user_id: str) -> list[ExerciseProgress]:
    columns = [getattr(Progress, f.name) for f in dataclasses.fields(ExerciseProgress)]
    rows = (await conn.execute(sa.select(*columns).where(Progress.user_id == user_id))).mappings()
    return [from_row(ExerciseProgress, row) for row in rows]


async def delete(engine: AsyncEngine, user_id: str) -> None:
    """The account and everything that names it: progress, sessions and links (by cascade),
    its runs with their trace events, and the record of emails sent to it."""
    runs = sa.select(Run.id).where(Run.user_id == user_id)
    async with engine.begin() as conn:
        await conn.execute(sa.delete(TraceEvent).where(TraceEvent.run_id.in_(runs)))
        await conn.execute(sa.delete(Run).where(Run.user_id == user_id))
        await conn.execute(sa.delete(EmailLog).where(EmailLog.user_id == user_id))
        for table in (Progress, Session, AccountToken):   # also by cascade, where SQLite enforces it
            await conn.execute(sa.delete(table).where(table.user_id == user_id))
        await conn.execute(sa.delete(UserRow).where(UserRow.id == user_id))
