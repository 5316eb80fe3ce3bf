"""An action repeated in the background every few seconds until closed, or sooner when poked.

An action that raises is logged and tried again at the next turn: a database or Redis away
for a while must not end the repetition for the life of the process.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("lessonserver")


class Every:
    def __init__(self, seconds: float, action: Callable[[], Awaitable[object]], name: str, *,
                 at_once: bool = False) -> None:
        """`at_once`: the first turn comes at start, not `seconds` after it."""
        self.seconds = seconds
        self.action = action
        self.name = name
        self.at_once = at_once
        self._poked = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._forever(), name=self.name)

    def poke(self) -> None:
        """Take the next turn now (something it acts on changed)."""
        self._poked.set()

    async def _forever(self) -> None:
        if not self.at_once:
            await self._wait()
        while True:
            try:
                await self.action()
            except Exception:
                log.exception("%s failed; trying again in %g s", self.name, self.seconds)
            await self._wait()

    async def _wait(self) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._poked.wait(), self.seconds)
        self._poked.clear()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
