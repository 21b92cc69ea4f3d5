"""AMI leadership: exactly one process runs the AMI listener, under a Redis lock with a TTL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Final

from redis.asyncio import Redis

from calltracker.telephony.ami import AmiListener, AmiStatus

log = logging.getLogger(__name__)

# Below CALLTRACKER_REDIS_PREFIX, like every key calltracker writes.
LEADER_KEY: Final = "ami:leader"
# Renew and release only a lock that is still ours: after a pause longer than the TTL
# another process may hold it, and a plain PEXPIRE or DEL would steal or drop its lock.
RENEW_SCRIPT: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
RELEASE_SCRIPT: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

Hook = Callable[[], Awaitable[None]]


def process_identity() -> str:
    """Who holds the lock, readable in Redis and /healthz: host, pid and a nonce (pids repeat)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class RedisLock:
    """A lease on one Redis key: SET NX PX to take it, compare-and-renew, compare-and-delete."""

    def __init__(self, redis: Redis, key: str, identity: str, ttl: float) -> None:
        self._redis = redis
        self._key = key
        self._ttl_ms = int(ttl * 1000)
        self.identity = identity
        self._renew = redis.register_script(RENEW_SCRIPT)
        self._release = redis.register_script(RELEASE_SCRIPT)

    async def acquire(self) -> bool:
        return bool(await self._redis.set(self._key, self.identity, nx=True, px=self._ttl_ms))

    async def renew(self) -> bool:
        return bool(await self._renew(keys=[self._key], args=[self.identity, self._ttl_ms]))

    async def release(self) -> bool:
        return bool(await self._release(keys=[self._key], args=[self.identity]))

    async def holder(self) -> str | None:
        value = await self._redis.get(self._key)
        return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True, slots=True)
class LeaderStatus:
    """This process's part in the election, as /healthz and /metrics show it."""

    leader: bool
    election: str  # "redis", or "single" when there is no Redis and so no other process
    identity: str
    since: datetime | None  # when `leader` last changed
    terms: int  # how many times this process became leader


class LeaderElection:
    """Calls `on_elected` when this process takes the lock and `on_deposed` when it loses it.

    With a TTL of T: the leader renews every T/3 (every T/10 after a failed renewal) and
    steps down once its last good renewal is older than T - T/10, so it stops before Redis
    could hand the lock to another. A standby tries to take the lock every T/5: when the
    leader dies, the lock lapses at most T after its last renewal, and a standby holds it
    at most T/5 later. A leader that stops cleanly deletes the lock; a standby takes over
    at its next try. Without a lock (no Redis) this process is the only one: it leads from
    start() to close().
    """

    def __init__(
        self,
        lock: RedisLock | None,
        on_elected: Hook,
        on_deposed: Hook,
        *,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = lock
        self._on_elected = on_elected
        self._on_deposed = on_deposed
        self._ttl = ttl
        self._renew_every = ttl / 3
        self._retry_every = ttl / 10
        self._poll_every = ttl / 5
        # Every Redis call gets less than the time between renewals: a hung call must not
        # keep the leader from noticing that its lock is lapsing.
        self._call_timeout = ttl / 4
        self._clock = clock
        self._identity = lock.identity if lock is not None else process_identity()
        self._leader = False
        self._valid_until = 0.0
        self._since: float | None = None
        self._terms = 0
        self._stop = asyncio.Event()
        self._started = False
        self._task: asyncio.Task[None] | None = None

    @property
    def is_leader(self) -> bool:
        return self._leader

    def status(self) -> LeaderStatus:
        return LeaderStatus(
            leader=self._leader,
            election="single" if self._lock is None else "redis",
            identity=self._identity,
            since=None if self._since is None else datetime.fromtimestamp(self._since, UTC),
            terms=self._terms,
        )

    async def holder(self) -> str | None:
        """Who holds the lock now, as Redis says; None when nobody does or Redis fails."""
        if self._lock is None:
            return self._identity
        try:
            async with asyncio.timeout(self._call_timeout):
                return await self._lock.holder()
        except Exception:
            return None

    async def start(self) -> None:
        """Try once at once, so a lone process leads before start() returns; then run on."""
        if self._started:
            raise RuntimeError("LeaderElection already started")
        self._started = True
        if self._lock is None:
            await self._elect()
            return
        if not await self._try_acquire():
            log.info("event=leader_standby identity=%s", self._identity)
        self._task = asyncio.create_task(self._run(), name="leader-election")

    async def close(self) -> None:
        """Stop leading (the listener first, then the lock, so a standby takes over at once)."""
        self._stop.set()
        if self._task is not None:
            await self._task
        if self._leader:
            await self._depose("shutting down")
            if self._lock is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self._call_timeout):
                        await self._lock.release()

    async def __aenter__(self) -> LeaderElection:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _run(self) -> None:
        assert self._lock is not None
        lock = self._lock
        renewed = True
        while not self._stop.is_set():
            if not self._leader:
                if await self._sleep(self._poll_every):
                    return
                if await self._try_acquire():
                    renewed = True
                continue
            if await self._sleep(self._renew_every if renewed else self._retry_every):
                return
            sent = self._clock()
            ok = await self._call(lock.renew)
            renewed = ok is True
            if ok is True:
                self._valid_until = sent + self._ttl
            elif ok is False:
                await self._depose("the lock is held by another process")
            elif self._clock() >= self._valid_until - self._retry_every:
                await self._depose("could not renew the lock in time")

    async def _try_acquire(self) -> bool:
        assert self._lock is not None
        sent = self._clock()
        if await self._call(self._lock.acquire) is not True:
            return False
        self._valid_until = sent + self._ttl
        try:
            await self._elect()
        except Exception:
            # The listener failed to start: let another process try rather than hold on.
            log.exception("event=leader_start_failed identity=%s", self._identity)
            self._leader = False
            with contextlib.suppress(Exception):
                await self._call(self._lock.release)
            return False
        return True

    async def _elect(self) -> None:
        self._leader = True
        self._terms += 1
        self._since = time.time()
        log.info(
            "event=leader_elected identity=%s election=%s ttl=%s term=%d",
            self._identity,
            "single" if self._lock is None else "redis",
            self._ttl,
            self._terms,
        )
        await self._on_elected()

    async def _depose(self, reason: str) -> None:
        self._leader = False
        self._since = time.time()
        log.warning("event=leader_deposed identity=%s reason=%r", self._identity, reason)
        try:
            await self._on_deposed()
        except Exception:
            log.exception("event=leader_stop_failed identity=%s", self._identity)

    async def _call(self, op: Callable[[], Awaitable[bool]]) -> bool | None:
        """True or False as Redis answered; None when it failed or timed out."""
        try:
            async with asyncio.timeout(self._call_timeout):
                return await op()
        except Exception as err:
            log.warning(
                "event=leader_redis_failed identity=%s error=%s", self._identity, type(err).__name__
            )
            return None

    async def _sleep(self, seconds: float) -> bool:
        """Wait; True when close() was called meanwhile."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()
        return self._stop.is_set()


_DOWN = AmiStatus(connected=False, since=None, last_error="", last_error_at=None, connects=0)


class LeadingListener:
    """The AMI listener of this process's current term as leader; none while standing by.

    Each term gets a new listener, with a new call tracker: calls in progress are rebuilt
    from the CoreShowChannels snapshot taken after its login, never from what this
    process saw in an earlier term, which another leader has finished since.
    """

    def __init__(
        self, make_listener: Callable[[], AmiListener], lock: RedisLock | None, *, ttl: float
    ) -> None:
        self._make_listener = make_listener
        self._listener: AmiListener | None = None
        self.election = LeaderElection(lock, self._elected, self._deposed, ttl=ttl)

    @property
    def listener(self) -> AmiListener | None:
        return self._listener

    def status(self) -> AmiStatus:
        return self._listener.status() if self._listener is not None else _DOWN

    def metrics(self) -> dict[str, int]:
        if self._listener is None:
            return {"connected": 0, "open_calls": 0, "facts_waiting": 0, "queue_depth": 0}
        return self._listener.metrics()

    async def _elected(self) -> None:
        listener = self._make_listener()
        await listener.start()
        self._listener = listener

    async def _deposed(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.close()

    async def __aenter__(self) -> LeadingListener:
        await self.election.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.election.close()
