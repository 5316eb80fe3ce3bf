"""The one background repetition (flags, email metrics, the access watch, live-event pools)."""
from __future__ import annotations

import asyncio

from server.periodic import Every


async def test_a_failing_turn_is_logged_and_the_next_turn_comes(caplog):
    turns: list[int] = []

    async def action() -> None:
        turns.append(len(turns))
        if len(turns) == 1:
            raise RuntimeError("database away")

    every = Every(0.05, action, "test repetition", at_once=True)
    every.start()
    await asyncio.sleep(0.2)
    await every.close()
    assert turns[:3] == [0, 1, 2]
    assert "test repetition failed" in caplog.text


async def test_a_poke_brings_the_next_turn_forward_and_at_once_the_first():
    turns: list[float] = []
    loop = asyncio.get_running_loop()

    async def action() -> None:
        turns.append(loop.time())

    began = loop.time()
    every = Every(30.0, action, "slow repetition", at_once=True)
    every.start()
    await asyncio.sleep(0.05)
    assert len(turns) == 1 and turns[0] - began < 0.05       # at start, not 30 s after
    every.poke()
    await asyncio.sleep(0.05)
    await every.close()
    assert len(turns) == 2                                   # the poke, not the 30 s
    later = Every(30.0, action, "waits first")
    later.start()
    await asyncio.sleep(0.05)
    await later.close()
    assert len(turns) == 2
