"""Users: anonymous until they claim an account; the id lives in a signed cookie."""
from __future__ import annotations

import dataclasses
import datetime as dt
import secrets

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.models import User as UserRow, utcnow
from server.rounds import Rounds


@dataclasses.dataclass(frozen=True)
class User:
    id: str
    email: str | None
    name: str
    is_admin: bool
    created_at: dt.datetime


COLUMNS = (UserRow.id, UserRow.email, UserRow.name, UserRow.is_admin, UserRow.created_at)


# Built once: every page of a visitor with a cookie looks its row up, and building the
# statement each time held such a page to 375 req/s on Postgres (510 built once).
_BY_ID = sa.select(*COLUMNS).where(UserRow.id == sa.bindparam("user_id"))


async def get(engine: AsyncEngine, user_id: str) -> User | None:
    async with engine.connect() as conn:
        row = (await conn.execute(_BY_ID, {"user_id": user_id})).first()
    return None if row is None else User(*row)


def new_id() -> str:
    return secrets.token_hex(16)


def anonymous(user_id: str | None = None) -> User:
    """An anonymous learner as its cookie names it (a new id when none): a row's values, or
    a visitor's before it has one."""
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
        self._rounds: Rounds[None, str] = Rounds(lambda _, ids: self._insert(ids))

    async def create(self, user_id: str) -> User:
        """The row of `user_id` (the id its cookie carries), made now or by someone before."""
        return await self._rounds.submit(None, user_id)

    async def _insert(self, ids: list[str]) -> list[User | Exception]:
        """Each id's row (an id asked for twice is made once), or why it could not be had."""
        rows = [anonymous(user_id) for user_id in dict.fromkeys(ids)]
        try:
            async with self.engine.begin() as conn:
                await conn.execute(sa.insert(UserRow), [dataclasses.asdict(u) for u in rows])
            made: dict[str, User | Exception] = {u.id: u for u in rows}
            return [made[user_id] for user_id in ids]
        except sa.exc.IntegrityError:   # one existed already (a second tab): each on its own
            pass
        outcomes: dict[str, User | Exception] = {}
        for user in rows:
            try:
                outcomes[user.id] = await create_anonymous(self.engine, user.id)
            except Exception as exc:
                outcomes[user.id] = exc
        return [outcomes[user_id] for user_id in ids]
