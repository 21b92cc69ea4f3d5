"""RedisPool specifics: the key layout, decoding clients, history retention."""

from __future__ import annotations

import math

import pytest
from redis.asyncio import Redis

from number_pool import PoolConfig, UnknownPool, constants
from number_pool.redis import RedisPool

T0 = 1_700_000_000.0
A, B = "+493033330001", "+493033330002"
CONFIG = PoolConfig("p1", (A, B), 100)


async def test_keys_follow_the_layout_in_constants(redis_space: tuple[Redis, str]) -> None:
    client, prefix = redis_space
    pool = RedisPool(client, prefix)
    await pool.configure(CONFIG)
    await pool.lease("p1", "alice", "a1", T0)

    keys = {key.decode() async for key in client.scan_iter(match=f"{prefix}*")}
    per_pool = {constants.CONFIG, constants.ORDER, constants.LEASE, constants.EXPIRY}
    assert {prefix + kind + "p1" for kind in per_pool} <= keys
    assert {prefix + constants.HISTORY + A, prefix + constants.RECORD + A} <= keys
    kinds = set(constants.KINDS.values())
    assert all(any(key.removeprefix(prefix).startswith(k) for k in kinds) for key in keys)


async def test_pools_under_another_prefix_are_invisible(redis_space: tuple[Redis, str]) -> None:
    client, prefix = redis_space
    await RedisPool(client, prefix).configure(CONFIG)
    await RedisPool(client, prefix).lease("p1", "alice", "a1", T0)

    other = RedisPool(client, prefix + "other:")
    with pytest.raises(UnknownPool):
        await other.lease("p1", "alice", "a1", T0)
    assert await other.history(A, -math.inf, math.inf) == []


async def test_a_client_decoding_responses_works_the_same(
    decoded_redis_space: tuple[Redis, str],
) -> None:
    client, prefix = decoded_redis_space
    pool = RedisPool(client, prefix)
    await pool.configure(CONFIG)
    first = await pool.lease("p1", "alice", "a1", T0)
    again = await pool.lease("p1", "alice", "a1", T0 + 1)

    assert first.lease is not None and again.lease is not None and again.reused
    assert again.lease.number == first.lease.number == A
    assert [r.visitor_id for r in await pool.holders_at(A, T0 + 2)] == ["alice"]
    assert (await pool.stats("p1", T0 + 2)).leased == 1


async def test_history_past_retention_is_trimmed(redis_space: tuple[Redis, str]) -> None:
    client, prefix = redis_space
    pool = RedisPool(client, prefix, history_retention_seconds=1000)
    await pool.configure(PoolConfig("p1", (A,), 100))
    await pool.lease("p1", "alice", "a1", T0)
    await pool.lease("p1", "bob", "b1", T0 + 5000)

    assert [r.visitor_id for r in await pool.history(A, 0, T0 + 9000)] == ["bob"]
    assert await client.zcard(prefix + constants.HISTORY + A) == 1
    assert await client.hlen(prefix + constants.RECORD + A) == 1


async def test_leasing_goes_on_after_redis_forgets_its_scripts(
    redis_space: tuple[Redis, str],
) -> None:
    # A Redis restart (or SCRIPT FLUSH) empties the script cache under a running server.
    client, prefix = redis_space
    pool = RedisPool(client, prefix)
    await pool.configure(CONFIG)
    await pool.lease("p1", "alice", "a1", T0)
    await client.script_flush()

    outcome = await pool.lease("p1", "bob", "b1", T0 + 1)

    assert outcome.lease is not None and outcome.lease.number == B
    assert [r.visitor_id for r in await pool.holders_at(B, T0 + 2)] == ["bob"]
