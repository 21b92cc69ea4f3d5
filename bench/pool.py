"""Number-pool throughput: lease()/renew() per second for the memory and Redis backends.

    python bench/pool.py [--numbers 500] [--visitors 2000] [--seconds 3] [--concurrency 16]
                         [--redis redis://127.0.0.1:6379/0] [--backend memory|redis|both]

Visitors outnumber numbers, so the mix covers sticky reuse, fresh picks, expiry and exhaustion.
The Redis run uses a throwaway key prefix and deletes its keys afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from collections import Counter

from redis.asyncio import Redis

from number_pool import PoolBackend, PoolConfig
from number_pool.memory import MemoryPool
from number_pool.redis import RedisPool


async def drive(
    pool: PoolBackend, args: argparse.Namespace, worker: int, stop: float, seen: Counter[str]
) -> None:
    rng = random.Random(worker)
    t0 = time.time()
    while (wall := time.time()) < stop:
        # Simulated time runs 60x faster so leases expire within the run.
        now = t0 + (wall - t0) * 60
        visitor = f"v{rng.randrange(args.visitors)}"
        outcome = await pool.lease("bench", visitor, f"{visitor}-visit", now)
        seen["lease"] += 1
        seen["exhausted"] += outcome.exhausted
        if outcome.lease is not None and rng.random() < 0.5:
            await pool.renew("bench", outcome.lease.visit_id, now)
            seen["renew"] += 1


async def run(name: str, pool: PoolBackend, args: argparse.Namespace) -> None:
    numbers = tuple(f"+4930{i:07d}" for i in range(args.numbers))
    await pool.configure(PoolConfig("bench", numbers, hold_seconds=120))
    seen: Counter[str] = Counter()
    started = time.perf_counter()
    stop = time.time() + args.seconds
    await asyncio.gather(*(drive(pool, args, w, stop, seen) for w in range(args.concurrency)))
    elapsed = time.perf_counter() - started
    print(
        f"{name:>6}: {seen['lease'] / elapsed:9.0f} leases/s  "
        f"{(seen['lease'] + seen['renew']) / elapsed:9.0f} ops/s  "
        f"exhausted {seen['exhausted'] / max(seen['lease'], 1):.0%}"
    )


async def main(args: argparse.Namespace) -> None:
    if args.backend in ("memory", "both"):
        memory = MemoryPool()
        await run("memory", memory, args)
        await memory.close()
    if args.backend in ("redis", "both"):
        client = Redis.from_url(args.redis)
        prefix = f"bench:pool:{uuid.uuid4().hex}:"
        try:
            await run("redis", RedisPool(client, prefix), args)
        finally:
            keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
            if keys:
                await client.delete(*keys)
            await client.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numbers", type=int, default=500)
    parser.add_argument("--visitors", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--backend", choices=["memory", "redis", "both"], default="both")
    asyncio.run(main(parser.parse_args()))
