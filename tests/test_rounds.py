"""server/rounds.py: calls on one key that arrive while its round runs share the next round."""
from __future__ import annotations

import asyncio

import pytest

from server.rounds import Rounds


async def test_calls_during_a_round_go_together_in_the_next_and_each_gets_its_own_outcome():
    rounds_run: list[tuple[str, list[int]]] = []
    release = asyncio.Event()

    async def run(key: str, items: list[int]) -> list:
        rounds_run.append((key, items))
        await release.wait()
        return [ValueError(f"no {i}") if i < 0 else i * 10 for i in items]

    rounds: Rounds[str, int] = Rounds(run)
    first = asyncio.create_task(rounds.submit("a", 1))
    while not rounds_run:                                # the first round is under way
        await asyncio.sleep(0)
    later = [asyncio.create_task(rounds.submit("a", i)) for i in (2, 3, -4)]
    other = asyncio.create_task(rounds.submit("b", 5))  # another key has its own rounds
    await asyncio.sleep(0.01)
    release.set()
    assert await first == 10
    assert await later[0] == 20 and await later[1] == 30
    with pytest.raises(ValueError, match="no -4"):      # to its own caller alone
        await later[2]
    assert await other == 50
    assert sorted(rounds_run) == [("a", [1]), ("a", [2, 3, -4]), ("b", [5])]
    assert rounds.idle


async def test_a_round_that_fails_fails_its_callers_and_the_next_round_still_runs():
    async def run(key: str, items: list[str]) -> list:
        if "down" in items:
            raise ConnectionError("the store is away")
        return items

    rounds: Rounds[None, str] = Rounds(run)
    failed = await asyncio.gather(rounds.submit(None, "down"), rounds.submit(None, "x"),
                                  return_exceptions=True)
    assert [type(f) for f in failed] == [ConnectionError, ConnectionError]
    assert await rounds.submit(None, "back") == "back" and rounds.idle
