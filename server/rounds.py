"""Calls that share a trip to a store: those that arrive while a key's round runs go
together in its next round, so a burst on one key (a classroom behind one address, a live
event's first runs) costs a few round trips instead of one each, in turn.

`run(key, items)` does one round and returns each item's outcome in order; an outcome
that is an exception is raised to that caller alone, and a round that raises fails all
of its callers. A caller that gives up leaves the round be.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

Round = Callable[[K, list[T]], Awaitable[list[Any]]]


class Rounds(Generic[K, T]):
    def __init__(self, run: Round) -> None:
        self._run = run
        self._waiting: dict[K, list[tuple[T, asyncio.Future]]] = {}   # key -> its next round
        self._tasks: dict[K, asyncio.Task] = {}                        # key -> running its rounds

    @property
    def idle(self) -> bool:
        """Nothing waits and nothing runs: no key is kept once its rounds are done."""
        return not self._waiting and not self._tasks

    async def submit(self, key: K, item: T) -> Any:
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append((item, future))
        if key not in self._tasks:
            self._tasks[key] = asyncio.create_task(self._rounds_of(key))
        return await asyncio.shield(future)

    async def _rounds_of(self, key: K) -> None:
        try:
            while self._waiting.get(key):
                batch = self._waiting.pop(key)
                try:
                    outcomes = await self._run(key, [item for item, _ in batch])
                except Exception as exc:  # the store is away: each caller hears why
                    outcomes = [exc] * len(batch)
                for (_, future), outcome in zip(batch, outcomes):
                    if future.done():
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            del self._tasks[key]
