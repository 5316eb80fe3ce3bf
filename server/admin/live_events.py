"""Scheduled live events: the admins' form (parsed here, pure), their rows, and the shell that
sizes the kernel pools for them (kernels/live_plan.py decides; this applies it periodically)."""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from kernels.live_plan import Capacity, Demand, pool_sizes
from server.models import LiveEvent
from server.periodic import Every

log = logging.getLogger("lessonserver.live")

MAX_MINUTES = 24 * 60         # an event lasts at most a day (and is looked up that far back)
MAX_LEARNERS = 100_000


class BadEvent(ValueError):
    """A form field that does not make an event; the message names the field."""


@dataclasses.dataclass(frozen=True)
class NewEvent:
    starts_at: dt.datetime     # aware, UTC
    minutes: int
    lesson_slug: str
    learners: int


@dataclasses.dataclass(frozen=True)
class Event(NewEvent):
    id: int
    created_by: str

    @property
    def ends_at(self) -> dt.datetime:
        return self.starts_at + dt.timedelta(minutes=self.minutes)


def parse(form: Mapping[str, str], lessons: Callable[[str], bool], now: dt.datetime) -> NewEvent:
    """The admin form (`starts_at` as YYYY-MM-DDTHH:MM in UTC, `minutes`, `lesson`, `learners`)."""
    raw = form.get("starts_at", "").strip()
    try:
        starts_at = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise BadEvent(f"starts_at: {raw!r} is not a date and time like 2026-12-01T18:00") from None
    starts_at = (starts_at.replace(tzinfo=dt.timezone.utc) if starts_at.tzinfo is None
                 else starts_at.astimezone(dt.timezone.utc))
    minutes = _count(form, "minutes", 1, MAX_MINUTES)
    if starts_at + dt.timedelta(minutes=minutes) <= now:
        raise BadEvent(f"starts_at: an event at {raw} for {minutes} minutes is already over")
    slug = form.get("lesson", "").strip()
    if not lessons(slug):
        raise BadEvent(f"lesson: there is no lesson called {slug!r}")
    return NewEvent(starts_at, minutes, slug, _count(form, "learners", 1, MAX_LEARNERS))


def _count(form: Mapping[str, str], name: str, least: int, most: int) -> int:
    raw = form.get(name, "").strip()
    try:
        value = int(raw)
    except ValueError:
        raise BadEvent(f"{name}: {raw!r} is not a whole number") from None
    if not least <= value <= most:
        raise BadEvent(f"{name}: {value} is not between {least} and {most}")
    return value


# --- rows -------------------------------------------------------------------

async def schedule(engine: AsyncEngine, event: NewEvent, actor: str) -> int:
    async with engine.begin() as conn:
        result = await conn.execute(sa.insert(LiveEvent).values(
            starts_at=event.starts_at, minutes=event.minutes, lesson_slug=event.lesson_slug,
            learners=event.learners, created_by=actor[:320]).returning(LiveEvent.id))
        return result.scalar_one()


async def cancel(engine: AsyncEngine, event_id: int) -> Event | None:
    """Remove an event; the removed event, or None when there was none with that id."""
    async with engine.begin() as conn:
        found = await _select(conn, LiveEvent.id == event_id)
        if found:
            await conn.execute(sa.delete(LiveEvent).where(LiveEvent.id == event_id))
    return found[0] if found else None


async def not_over(engine: AsyncEngine, now: dt.datetime) -> list[Event]:
    """Events that may still be running or are to come, soonest first."""
    async with engine.connect() as conn:
        events = await _select(conn, LiveEvent.starts_at > now - dt.timedelta(minutes=MAX_MINUTES))
    return [e for e in events if e.ends_at > now]


async def _select(conn, where) -> list[Event]:
    rows = (await conn.execute(sa.select(
        LiveEvent.starts_at, LiveEvent.minutes, LiveEvent.lesson_slug, LiveEvent.learners,
        LiveEvent.id, LiveEvent.created_by).where(where).order_by(LiveEvent.starts_at))).all()
    return [Event(*row) for row in rows]


# --- the shell that applies the plan ------------------------------------------

class LivePools:
    """Every `every` seconds (and at once when poked): events in, pool sizes out, applied.

    `manager` is the KernelManager: its `pools` (resized), `list()` (kernels in use) and
    `settings` (LS_POOL_SIZE, LS_MAX_KERNELS). `kernel_of` maps a lesson to its plugin."""

    def __init__(self, engine: AsyncEngine, manager, kernel_of: Callable[[str], str | None],
                 lead: float, every: float, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.manager = manager
        self.kernel_of = kernel_of
        self.lead = lead
        self.clock = clock
        self.plan: dict[str, int] = {}
        # The database away: the pools stay as they are, and the next turn tries again.
        self._turns = Every(every, self.apply, "live events: planning the pools", at_once=True)

    def start(self) -> None:
        self._turns.start()

    def poke(self) -> None:
        """Plan again now (an event was scheduled or cancelled)."""
        self._turns.poke()

    async def close(self) -> None:
        await self._turns.close()

    async def apply(self) -> dict[str, int]:
        now = self.clock()
        events = await not_over(self.engine, dt.datetime.fromtimestamp(now, dt.timezone.utc))
        demands = [Demand(plugin, e.starts_at.timestamp(), e.ends_at.timestamp(), e.learners)
                   for e in events if (plugin := self.kernel_of(e.lesson_slug)) is not None]
        in_use: dict[str, int] = {}
        for kernel in self.manager.list():
            in_use[kernel.plugin] = in_use.get(kernel.plugin, 0) + 1
        settings = self.manager.settings
        plan = pool_sizes(demands, now, Capacity(settings.pool_size, settings.max_kernels,
                                                 self.lead), self.manager.pools, in_use)
        for plugin, size in plan.items():
            pool = self.manager.pools[plugin]
            if pool.size != size:
                log.info("live events: pool resized", extra={"fields": {
                    "plugin": plugin, "from": pool.size, "to": size}})
                pool.resize(size)
        self.plan = plan
        return plan
