"""Redis pool backend: each operation is one atomic Lua script, so many processes can share it."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from number_pool import constants, policy
from number_pool.core import (
    Lease,
    LeaseOutcome,
    LeaseRecord,
    PoolConfig,
    PoolStats,
    UnknownPool,
)

DEFAULT_HISTORY_RETENTION_SECONDS = 30 * 86400
_SCRIPTS = ("configure", "lease", "renew", "expire", "stats", "history")


@cache
def script_source(name: str) -> str:
    """The Lua of one operation: the KIND table from constants.py, common.lua, then its own file."""
    kinds = ", ".join(
        f"{lua_name}={json.dumps(kind)}" for lua_name, kind in constants.KINDS.items()
    )
    package = resources.files("number_pool")
    common = package.joinpath("common.lua").read_text(encoding="utf-8")
    body = package.joinpath(f"{name}.lua").read_text(encoding="utf-8")
    return f"local KIND = {{{kinds}}}\n{common}\n{body}"


class RedisPool:
    """Pool state in Redis under `prefix`; the caller owns (and closes) the client.

    Expiry is lazy inside every pool script and also available as ``expire()``. Times are the
    callers' `now`; a pool's clock never runs backwards (see ``policy.clamp_now``). The client may
    or may not decode responses.
    """

    def __init__(
        self,
        redis: Redis,
        prefix: str = constants.DEFAULT_PREFIX,
        history_retention_seconds: float = DEFAULT_HISTORY_RETENTION_SECONDS,
    ) -> None:
        self._prefix = prefix
        self._redis = redis
        self._pending: list[tuple[str, list[str], asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._retention = float(history_retention_seconds)
        self._shas: dict[str, str] = {}  # script name -> SHA1, once loaded into this Redis

    async def start(self) -> None:
        """Nothing to start; here so both backends share a lifecycle."""

    async def flush(self) -> None:
        """Nothing is buffered: every operation is already in Redis."""

    async def close(self) -> None:
        """Let calls in flight finish; the Redis client itself belongs to the caller."""
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)

    async def configure(self, config: PoolConfig) -> None:
        policy.validate_config(config)
        await self._run(
            "configure",
            config.pool_id,
            str(config.hold_seconds),
            str(config.policy),
            *config.numbers,
        )

    async def lease(self, pool_id: str, visitor_id: str, visit_id: str, now: float) -> LeaseOutcome:
        reply = await self._run(
            "lease", pool_id, visitor_id, visit_id, _score(now), _score(self._retention)
        )
        status = self._status(reply, pool_id)
        if status == "exhausted":
            return LeaseOutcome(None, exhausted=True)
        lease = _lease(reply[1])
        return LeaseOutcome(lease, exhausted=status == "shared", reused=status == "reused")

    async def renew(self, pool_id: str, visit_id: str, now: float) -> Lease | None:
        reply = await self._run("renew", pool_id, visit_id, _score(now))
        if self._status(reply, pool_id) == "none":
            return None
        return _lease(reply[1])

    async def history(self, number: str, since: float, until: float) -> Sequence[LeaseRecord]:
        reply = await self._run("history", number, _score(since), _score(until))
        records = (_record(raw) for raw in reply)
        return sorted(
            (r for r in records if policy.overlaps(r, since, until)), key=policy.oldest_first
        )

    async def holders_at(self, number: str, t: float) -> Sequence[LeaseRecord]:
        return [r for r in await self.history(number, t, t) if policy.covers(r, t)]

    async def expire(self, now: float) -> int:
        return int(await self._run("expire", _score(now)))

    async def stats(self, pool_id: str, now: float) -> PoolStats:
        reply = await self._run("stats", pool_id, _score(now))
        self._status(reply, pool_id)
        size, leased, peak, exhausted = (int(value) for value in reply[1:5])
        return policy.pool_stats(pool_id, size, leased, peak, exhausted)

    async def _run(self, script: str, *args: str) -> Any:
        # Calls that arrive while a round trip is in flight travel together in the next
        # pipeline: one connection, one write and one read for many leases. Each script is
        # still atomic on its own; a single flusher keeps them in arrival order.
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((script, [self._prefix, *args], future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_pending(), name="redis-pool-pipeline")
        return await future

    async def _flush_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                results = await self._evalsha_all(batch)
            except Exception as err:  # the connection failed: every caller in it hears why
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(err)
                continue
            for (_, _, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def _evalsha_all(
        self, batch: list[tuple[str, list[str], asyncio.Future[Any]]]
    ) -> list[Any]:
        """Run each call by its script's SHA in one pipeline; reload scripts Redis lost.

        EVALSHA directly rather than redis-py's Script objects: those ask SCRIPT EXISTS
        before every pipeline, a second round trip on the hot path of every visit.
        """
        if not self._shas:
            await self._load_scripts()
        results = await self._pipeline(batch)
        lost = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if lost:  # Redis restarted or SCRIPT FLUSH: a NOSCRIPT call did not run, so rerun it
            await self._load_scripts()
            retried = await self._pipeline([batch[i] for i in lost])
            for i, result in zip(lost, retried, strict=True):
                results[i] = result
        return results

    async def _pipeline(self, batch: list[tuple[str, list[str], asyncio.Future[Any]]]) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for name, args, _ in batch:
                pipe.evalsha(self._shas[name], 0, *args)
            return list(await pipe.execute(raise_on_error=False))

    async def _load_scripts(self) -> None:
        for name in _SCRIPTS:
            sha = await self._redis.script_load(script_source(name))
            self._shas[name] = _text(sha)

    @staticmethod
    def _status(reply: Sequence[Any], pool_id: str) -> str:
        status = _text(reply[0])
        if status == "unknown":
            raise UnknownPool(pool_id)
        return status


def _score(value: float) -> str:
    """A float as Redis and Lua both parse it exactly (repr round-trips; inf needs a sign)."""
    if math.isinf(value):
        return "+inf" if value > 0 else "-inf"
    return repr(float(value))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _lease(raw: bytes | str) -> Lease:
    data = json.loads(raw)
    return Lease(
        pool_id=data["p"],
        number=data["n"],
        visitor_id=data["v"],
        visit_id=data["s"],
        started_at=float(data["a"]),
        last_seen_at=float(data["l"]),
        expires_at=float(data["e"]),
        shared=bool(data["sh"]),
    )


def _record(raw: bytes | str) -> LeaseRecord:
    data = json.loads(raw)
    return LeaseRecord(
        pool_id=data["p"],
        number=data["n"],
        visitor_id=data["v"],
        visit_id=data["s"],
        started_at=float(data["a"]),
        last_seen_at=float(data["l"]),
        ended_at=float(data["e"]),
        shared=bool(data["sh"]),
    )
