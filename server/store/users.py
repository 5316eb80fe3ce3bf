"""Users: anonymous until they claim an account; the id lives in a signed cookie."""
from __future__ import annotations

import asyncio
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


def anonymous(user_id: str | None = None) -> User:
    return User(id=user_id or new_id(), email=None, name="", is_admin=False, created_at=utcnow())


async def create_anonymous(engine: AsyncEngine, user_id: str | None = None) -> User:
    """A row for an anonymous learner; `user_id` keeps the id its cookie already carries.
    Creating an id that another request created first returns that row."""
    user = anonymous(user_id)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.insert(UserRow).values(dataclasses.asdict(user)))
    except sa.exc.IntegrityError:
        existing = await get(engine, user.id)
        if existing is None:
            raise
        return existing
    return user


class AnonymousRows:
    """Rows for first-time learners, written together.

    At a live event hundreds of new learners press Run in the same second, and an INSERT
    each queued them behind the connection pool: some waited past its timeout and their
    run never started. Ids asked for while a write runs go in the next one, one statement.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._waiting: dict[str, list[asyncio.Future]] = {}
        self._writer: asyncio.Task | None = None

    async def create(self, user_id: str) -> User:
        """The row of `user_id` (the id its cookie carries), made now or by someone before."""
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(user_id, []).append(future)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await asyncio.shield(future)     # a caller that leaves does not undo the others

    async def _write(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, {}
            for user_id, outcome in (await self._insert(list(batch))).items():
                for future in batch[user_id]:
                    if future.done():
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)

    async def _insert(self, ids: list[str]) -> dict[str, User | BaseException]:
        rows = [anonymous(user_id) for user_id in ids]
        try:
            async with self.engine.begin() as conn:
                await conn.execute(sa.insert(UserRow), [dataclasses.asdict(u) for u in rows])
            return {u.id: u for u in rows}
        except sa.exc.IntegrityError:   # one existed already (a second tab): each on its own
            pass
        except Exception as exc:        # the database is away: each caller hears why
            return {user_id: exc for user_id in ids}
        outcomes: dict[str, User | BaseException] = {}
        for user_id in ids:
            try:
                outcomes[user_id] = await create_anonymous(self.engine, user_id)
            except Exception as exc:
                outcomes[user_id] = exc
        return outcomes
