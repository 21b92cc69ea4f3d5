"""A process hammering a shared Redis pool; test_redis_concurrency.py runs two of these."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import Counter

from redis.asyncio import Redis

from number_pool.redis import RedisPool


async def hammer(args: argparse.Namespace) -> Counter[str]:
    client = Redis.from_url(args.url)
    pool = RedisPool(client, args.prefix)
    rng = random.Random(args.name)
    held: dict[str, str] = {}  # visitor -> visit of a lease we were given
    seen: Counter[str] = Counter()
    try:
        # Start together, so the two processes really overlap.
        barrier = args.prefix + "barrier"
        await client.incr(barrier)
        deadline = time.time() + 10
        while int(await client.get(barrier) or 0) < args.workers:
            if time.time() > deadline:
                raise SystemExit("the other worker never showed up")
            await asyncio.sleep(0.001)
        # A logical clock shared through Redis: each operation moves time on by one step, so
        # how much the processes overlap does not depend on how busy the machine is.
        clock = args.prefix + "clock"
        for _ in range(args.ops):
            now = args.t0 + await client.incr(clock) * args.step
            roll = rng.random()
            if roll < 0.6:
                visitor = f"{args.name}-{rng.randrange(args.visitors)}"
                visit = f"{visitor}-{rng.randrange(2)}"
                outcome = await pool.lease(args.pool, visitor, visit, now)
                if outcome.lease is None:
                    seen["exhausted"] += 1
                else:
                    held[visitor] = visit
                    seen["reused" if outcome.reused else "new"] += 1
                    seen["shared"] += outcome.lease.shared
            elif roll < 0.95 and held:
                visitor = rng.choice(list(held))
                renewed = await pool.renew(args.pool, held[visitor], now)
                seen["renewed" if renewed else "gone"] += 1
            else:
                seen["expired"] += await pool.expire(now)
    finally:
        await client.aclose()
    return seen


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("url", "prefix", "pool", "name"):
        parser.add_argument(f"--{name}", required=True)
    for name in ("t0", "step"):
        parser.add_argument(f"--{name}", type=float, required=True)
    parser.add_argument("--ops", type=int, required=True)
    parser.add_argument("--visitors", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    print(json.dumps(asyncio.run(hammer(parser.parse_args()))))


if __name__ == "__main__":
    main()
