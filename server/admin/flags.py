"""Feature flags: declared here with their defaults; a flag an admin set has a row in
`feature_flags`. Every server process reads them from an in-process snapshot that it reloads
from the database every REFRESH seconds, so a toggle on one process is seen by all of them
within REFRESH, in embedded mode too (no Redis needed: the database is the one shared truth).
Readers are synchronous (`on(flag)`): a WebSocket frame handler can ask without awaiting.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Iterable, Mapping

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.models import FeatureFlag
from server.periodic import Every
from server.store import upsert

log = logging.getLogger("lessonserver.flags")

REFRESH = 2.0      # seconds between reloads of the snapshot: the most a toggle takes to spread


@dataclasses.dataclass(frozen=True)
class Flag:
    name: str
    default: bool
    description: str


SIGNUPS_OPEN = Flag("signups_open", True,
                    "New visitors can create an account at /signup. Off: the page says sign-ups "
                    "are closed for now; existing accounts sign in as usual.")
RUNS_PAUSED = Flag("runs_paused", False,
                   "Lesson pages answer each run with a short notice instead of starting kernels "
                   "(maintenance, an incident). Pages and progress stay readable.")
FLAGS: Mapping[str, Flag] = {flag.name: flag for flag in (SIGNUPS_OPEN, RUNS_PAUSED)}


class UnknownFlag(KeyError):
    pass


@dataclasses.dataclass(frozen=True)
class FlagState:
    flag: Flag
    enabled: bool
    updated_at: dt.datetime | None      # None: never set, the default holds
    updated_by: str


def states_of(rows: Iterable[tuple[str, bool, dt.datetime, str]]) -> dict[str, FlagState]:
    """Every declared flag's state: its row, or its default. Rows of retired flags are ignored."""
    stored = {name: (enabled, at, by) for name, enabled, at, by in rows if name in FLAGS}
    return {name: (FlagState(flag, *stored[name]) if name in stored
                   else FlagState(flag, flag.default, None, ""))
            for name, flag in FLAGS.items()}


def parse_toggle(name: str, value: str) -> tuple[Flag, bool]:
    """A flag name and "on"/"off" from a form, or UnknownFlag / ValueError naming the input."""
    if name not in FLAGS:
        raise UnknownFlag(f"there is no feature flag called {name!r}")
    if value not in ("on", "off"):
        raise ValueError(f"flag value {value!r}: use on or off")
    return FLAGS[name], value == "on"


class FeatureFlags:
    def __init__(self, engine: AsyncEngine, refresh: float = REFRESH) -> None:
        self.engine = engine
        self.refresh = refresh
        self._states = states_of(())
        self._reloads = Every(refresh, self.reload, "feature-flags")

    def on(self, flag: Flag) -> bool:
        return self._states[flag.name].enabled

    def states(self) -> list[FlagState]:
        return list(self._states.values())

    async def start(self) -> None:
        await self.reload()
        self._reloads.start()

    async def reload(self) -> None:
        """Read the rows; when the database is away the last snapshot stands."""
        columns = (FeatureFlag.name, FeatureFlag.enabled, FeatureFlag.updated_at,
                   FeatureFlag.updated_by)
        try:
            async with self.engine.connect() as conn:
                rows = (await conn.execute(sa.select(*columns))).all()
        except Exception as exc:
            log.warning("feature flags not reloaded; keeping the last ones",
                        extra={"fields": {"error": str(exc)}})
            return
        self._states = states_of(rows)

    async def set(self, flag: Flag, enabled: bool, actor: str) -> None:
        values = {"name": flag.name, "enabled": enabled,
                  "updated_at": dt.datetime.now(dt.timezone.utc), "updated_by": actor[:320]}
        stmt = upsert(self.engine, FeatureFlag.__table__).values(**values)
        stmt = stmt.on_conflict_do_update(index_elements=["name"],
                                          set_={k: v for k, v in values.items() if k != "name"})
        async with self.engine.begin() as conn:
            await conn.execute(stmt)
        await self.reload()              # this process sees it at once; the others within REFRESH

    async def close(self) -> None:
        await self._reloads.close()
