"""The AMI leader election on a real Redis: one leader, takeover on death, no overlap."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from calltracker.telephony.leader import LeaderElection, RedisLock

TTL = 1.0  # seconds; production uses 5, the timings scale with it
KEY = "test:ami:leader"
# How late the loop may wake on a loaded CI machine; under the TTL, so a standby that
# waited a whole extra TTL still fails these tests.
SCHEDULING_SLACK = 0.5


class Term:
    """Records when an election's hooks ran, and whether it leads now."""

    def __init__(self) -> None:
        self.leading = False
        self.elected_at: list[float] = []
        self.deposed_at: list[float] = []

    async def elected(self) -> None:
        self.leading = True
        self.elected_at.append(time.monotonic())

    async def deposed(self) -> None:
        self.leading = False
        self.deposed_at.append(time.monotonic())


class FrozenLock(RedisLock):
    """A leader whose renewals hang, like a process stopped in a debugger or swapped out."""

    frozen = False

    async def renew(self) -> bool:
        if self.frozen:
            await asyncio.sleep(3600)
        return await super().renew()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client: Redis = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def elections() -> AsyncIterator[list[LeaderElection]]:
    started: list[LeaderElection] = []
    yield started
    for election in started:
        await election.close()


async def start(
    elections: list[LeaderElection], lock: RedisLock | None
) -> tuple[LeaderElection, Term]:
    term = Term()
    election = LeaderElection(lock, term.elected, term.deposed, ttl=TTL)
    await election.start()
    elections.append(election)
    return election, term


async def watch(terms: list[Term], seconds: float, until: Callable[[], bool]) -> int:
    """Sample every 10 ms; fail on two leaders at once; return the samples with none."""
    leaderless = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not until():
        leaders = sum(t.leading for t in terms)
        assert leaders <= 1, "two leaders at once"
        leaderless += leaders == 0
        await asyncio.sleep(0.01)
    return leaderless


async def test_first_process_leads_at_start_and_the_second_stands_by(
    redis: Redis, elections: list[LeaderElection]
) -> None:
    a, term_a = await start(elections, RedisLock(redis, KEY, "a", TTL))
    b, term_b = await start(elections, RedisLock(redis, KEY, "b", TTL))
    assert a.is_leader and term_a.leading  # inline: before start() returned
    assert not b.is_leader
    # Several renewal periods: the leader keeps the lock, the standby never gets it.
    await watch([term_a, term_b], 2 * TTL, lambda: False)
    assert a.is_leader and not b.is_leader and term_b.elected_at == []
    assert await a.holder() == "a" == await b.holder()
    assert (a.status().leader, b.status().leader, b.status().election) == (True, False, "redis")


async def test_a_standby_takes_over_within_ttl_and_a_fifth_when_the_leader_freezes(
    redis: Redis, elections: list[LeaderElection]
) -> None:
    frozen = FrozenLock(redis, KEY, "a", TTL)
    a, term_a = await start(elections, frozen)
    b, term_b = await start(elections, RedisLock(redis, KEY, "b", TTL))
    frozen.frozen = True
    since = time.monotonic()
    await watch([term_a, term_b], 3 * TTL, lambda: term_b.leading)
    assert term_b.leading and b.is_leader
    assert time.monotonic() - since <= TTL + TTL / 5 + SCHEDULING_SLACK
    # The frozen leader stepped down before its lock could lapse: no overlap.
    assert term_a.deposed_at and term_a.deposed_at[0] <= term_b.elected_at[0]
    assert await b.holder() == "b"


async def test_a_clean_stop_hands_over_at_the_standbys_next_try(
    redis: Redis, elections: list[LeaderElection]
) -> None:
    a, term_a = await start(elections, RedisLock(redis, KEY, "a", TTL))
    b, term_b = await start(elections, RedisLock(redis, KEY, "b", TTL))
    stopped = time.monotonic()
    await a.close()
    assert term_a.deposed_at and not term_a.leading
    await watch([term_a, term_b], 2 * TTL, lambda: term_b.leading)
    assert term_b.leading
    assert term_b.elected_at[0] - stopped <= TTL / 5 + SCHEDULING_SLACK  # not a whole TTL


async def test_a_leader_whose_lock_was_taken_steps_down_at_its_next_renewal(
    redis: Redis, elections: list[LeaderElection]
) -> None:
    a, term_a = await start(elections, RedisLock(redis, KEY, "a", TTL))
    await redis.set(KEY, "intruder", px=10_000)  # e.g. after a Redis failover
    await watch([term_a], TTL, lambda: not term_a.leading)
    assert not a.is_leader
    assert await redis.get(KEY) == b"intruder"  # never renewed, nor deleted, by the loser
    await a.close()
    assert await redis.get(KEY) == b"intruder"


async def test_without_redis_the_one_process_always_leads(elections: list[LeaderElection]) -> None:
    single, term = await start(elections, None)
    assert single.is_leader and term.leading
    assert single.status().election == "single"
    assert await single.holder() == single.status().identity
    await single.close()
    assert not term.leading and len(term.deposed_at) == 1
