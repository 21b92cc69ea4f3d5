"""Background upkeep (rollups, gauges) outlives a failing round and stops with its block."""

from __future__ import annotations

import asyncio

from calltracker.periodic import running_every


async def test_a_failing_round_is_followed_by_the_next_and_the_block_stops_it() -> None:
    rounds: list[int] = []

    async def work() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 1:
            raise ConnectionError("the database went away")

    async with running_every(0.01, work, "test-upkeep"):
        for _ in range(200):
            if len(rounds) >= 3:
                break
            await asyncio.sleep(0.01)
    assert rounds[:3] == [0, 1, 2]
    stopped_at = len(rounds)
    await asyncio.sleep(0.05)
    assert len(rounds) == stopped_at


async def test_the_first_round_can_wait_and_a_block_that_ends_first_runs_none() -> None:
    rounds: list[float] = []

    async def work() -> None:
        rounds.append(asyncio.get_running_loop().time())

    async with running_every(0.01, work, "test-upkeep", first_after=5.0):
        await asyncio.sleep(0.05)
    assert rounds == []
    started = asyncio.get_running_loop().time()
    async with running_every(10.0, work, "test-upkeep", first_after=0.02):
        while not rounds:
            await asyncio.sleep(0.01)
    assert rounds[0] - started >= 0.02
