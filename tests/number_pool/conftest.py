"""Fixtures for the number-pool suites: a fake journal, a private Redis keyspace, both backends."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from number_pool import LeaseRecord, PoolBackend, PoolConfig
from number_pool.memory import MemoryPool
from number_pool.redis import RedisPool

# Database 0 under a fresh key prefix per test: the app suites flush their own database.
REDIS_URL = os.environ.get("NUMBER_POOL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
START_REDIS = "redis-server --daemonize yes --port 6379 --save '' --appendonly no"

Reopen = Callable[[Sequence[PoolConfig], float], Awaitable[PoolBackend]]
REOPEN = pytest.StashKey[Reopen]()


class FakeJournal:
    """LeaseJournal in memory, upserting on the same key as the SQL one."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str, str, float], LeaseRecord] = {}
        self.counters: dict[str, tuple[int, int]] = {}
        self.saves = 0
        self.fail_next_save = False

    async def save(self, records: Sequence[LeaseRecord]) -> None:
        if self.fail_next_save:
            self.fail_next_save = False
            raise ConnectionError("journal database is down")
        self.saves += 1
        for r in records:
            self.records[(r.pool_id, r.number, r.visit_id, r.started_at)] = r

    async def load(self, since: float) -> Sequence[LeaseRecord]:
        return [r for r in self.records.values() if r.ended_at >= since]

    async def save_counters(
        self, pool_id: str, peak_concurrent: int, exhaustion_count: int
    ) -> None:
        self.counters[pool_id] = (peak_concurrent, exhaustion_count)

    async def load_counters(self) -> dict[str, tuple[int, int]]:
        return dict(self.counters)


@pytest.fixture
def journal() -> FakeJournal:
    return FakeJournal()


@contextlib.asynccontextmanager
async def redis_keyspace(*, decode_responses: bool = False) -> AsyncIterator[tuple[Redis, str]]:
    """A client and a key prefix of our own; the keys are deleted afterwards."""
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=2, decode_responses=decode_responses)
    try:
        await client.ping()
    except (RedisError, OSError) as err:
        await client.aclose()
        pytest.fail(
            f"Redis is not reachable at {REDIS_URL} ({type(err).__name__}: {err}); "
            f"the number-pool tests need it. Start it with: {START_REDIS}",
            pytrace=False,
        )
    prefix = f"test:pool:{uuid.uuid4().hex}:"
    try:
        yield client, prefix
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
async def redis_space() -> AsyncIterator[tuple[Redis, str]]:
    async with redis_keyspace() as space:
        yield space


@pytest.fixture
async def decoded_redis_space() -> AsyncIterator[tuple[Redis, str]]:
    async with redis_keyspace(decode_responses=True) as space:
        yield space


@pytest.fixture(params=["memory", "redis"])
async def backend(
    request: pytest.FixtureRequest, journal: FakeJournal
) -> AsyncIterator[PoolBackend]:
    """One backend of each kind; `reopen` gives a new instance on the same storage."""
    opened: list[PoolBackend] = []
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "memory":

            async def reopen(configs: Sequence[PoolConfig], now: float) -> PoolBackend:
                pool = await MemoryPool.open(journal, configs, now)
                opened.append(pool)
                return pool

            opened.append(MemoryPool(journal))
        else:
            client, prefix = await stack.enter_async_context(redis_keyspace())

            async def reopen(configs: Sequence[PoolConfig], now: float) -> PoolBackend:
                pool = RedisPool(client, prefix)
                for config in configs:  # as the server does at startup
                    await pool.configure(config)
                opened.append(pool)
                return pool

            opened.append(RedisPool(client, prefix))
        request.node.stash[REOPEN] = reopen
        try:
            yield opened[0]
        finally:
            for pool in opened:
                await pool.close()


@pytest.fixture
def reopen(request: pytest.FixtureRequest, backend: PoolBackend) -> Reopen:
    """Open a new backend on the storage of `backend`, as after a server restart."""
    opener: Reopen = request.node.stash[REOPEN]
    return opener
