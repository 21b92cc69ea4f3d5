"""Two OS processes leasing from one Redis pool never give one number to two visitors at once."""

from __future__ import annotations

import asyncio
import json
import math
import sys
from collections import Counter
from pathlib import Path

from redis.asyncio import Redis

from number_pool import LeaseRecord, PoolConfig
from number_pool.redis import RedisPool
from tests.number_pool.conftest import REDIS_URL

WORKER = Path(__file__).with_name("lease_worker.py")
NUMBERS = tuple(f"+494000000{i:03d}" for i in range(50))
T0, STEP, HOLD = 1_700_000_000.0, 0.01, 2  # each operation advances time 10 ms: a hold is 200 ops


async def run_workers(url: str, prefix: str, ops: int) -> tuple[list[Counter[str]], float]:
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            f"--url={url}",
            f"--prefix={prefix}",
            "--pool=shared",
            f"--name=w{i}",
            f"--t0={T0}",
            f"--step={STEP}",
            f"--ops={ops}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for i in (1, 2)
    ]
    results = []
    for proc in procs:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
        assert proc.returncode == 0, err.decode()
        results.append(Counter(json.loads(out)))
    client = Redis.from_url(url)
    ticks = int(await client.get(prefix + "clock") or 0)
    await client.aclose()
    return results, T0 + (ticks + 1) * STEP


def overlapping_pairs(records: list[LeaseRecord]) -> list[tuple[LeaseRecord, LeaseRecord]]:
    """Pairs of records on one number whose [started_at, ended_at) intersect."""
    clashes = []
    ordered = sorted(records, key=lambda r: (r.started_at, r.ended_at))
    for i, first in enumerate(ordered):
        for second in ordered[i + 1 :]:
            if second.started_at >= first.ended_at:
                break
            clashes.append((first, second))
    return clashes


async def test_two_processes_never_share_a_number_under_default_policy(
    redis_space: tuple[Redis, str],
) -> None:
    client, prefix = redis_space
    pool = RedisPool(client, prefix)
    await pool.configure(PoolConfig("shared", NUMBERS, HOLD))

    (first, second), end = await run_workers(REDIS_URL, prefix, ops=1500)

    for seen in (first, second):
        assert seen["new"] > 100 and seen["exhausted"] > 0 and seen["renewed"] > 0, seen
        assert seen["reused"] > 0 and seen["expired"] > 0 and seen["shared"] == 0, seen
    clashes: list[tuple[LeaseRecord, LeaseRecord]] = []
    numbers_used_by_both = 0
    for number in NUMBERS:
        records = list(await pool.history(number, -math.inf, math.inf))
        assert not any(r.shared for r in records)
        clashes += overlapping_pairs(records)
        numbers_used_by_both += len({r.visitor_id.split("-")[0] for r in records}) == 2
        assert len(await pool.holders_at(number, end)) <= 1
    assert clashes == []
    assert numbers_used_by_both > 25  # the processes really competed for the same numbers
    stats = await pool.stats("shared", end)
    assert stats.exhaustion_count == first["exhausted"] + second["exhausted"]
    # Running dry means all 50 were held at once; sharing nothing, never more than 50.
    assert stats.peak_concurrent == len(NUMBERS)


def test_overlap_check_catches_a_double_booking() -> None:
    a = LeaseRecord("p", "+1", "w1-1", "w1-1-0", 10.0, 10.0, 20.0)
    b = LeaseRecord("p", "+1", "w2-7", "w2-7-0", 19.5, 19.5, 30.0)
    c = LeaseRecord("p", "+1", "w1-3", "w1-3-1", 30.0, 30.0, 40.0)  # starts as b ends: fine
    assert overlapping_pairs([c, b, a]) == [(a, b)]
