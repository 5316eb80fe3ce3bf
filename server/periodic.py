"""An action repeated in the background every few seconds until closed (the action logs its own
failures: one that raises ends the repetition)."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


class Every:
    def __init__(self, seconds: float, action: Callable[[], Awaitable[None]], name: str) -> None:
        self.seconds = seconds
        self.action = action
        self.name = name
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._forever(), name=self.name)

    async def _forever(self) -> None:
        while True:
            await asyncio.sleep(self.seconds)
            await self.action()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
