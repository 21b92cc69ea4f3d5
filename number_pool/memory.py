"""In-process pool backend, persisted through a LeaseJournal by a buffered background flush."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import heapq
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from number_pool import policy
from number_pool.core import (
    Lease,
    LeaseJournal,
    LeaseOutcome,
    LeaseRecord,
    PoolConfig,
    PoolStats,
    UnknownPool,
)

log = logging.getLogger(__name__)

DEFAULT_HISTORY_RETENTION_SECONDS = 30 * 86400
DEFAULT_FLUSH_INTERVAL_SECONDS = 1.0

# The journal's upsert key: pool_id, number, visit_id, started_at.
RecordKey = tuple[str, str, str, float]


def record_key(record: LeaseRecord) -> RecordKey:
    return (record.pool_id, record.number, record.visit_id, record.started_at)


@dataclass
class _Live:
    """A live lease; mutable because renewals move it."""

    pool_id: str
    number: str
    visitor_id: str
    visit_id: str
    started_at: float
    last_seen_at: float
    expires_at: float
    shared: bool = False

    def lease(self) -> Lease:
        return Lease(
            self.pool_id,
            self.number,
            self.visitor_id,
            self.visit_id,
            self.started_at,
            self.last_seen_at,
            self.expires_at,
            self.shared,
        )

    def record(self, ended_at: float | None = None) -> LeaseRecord:
        return LeaseRecord(
            self.pool_id,
            self.number,
            self.visitor_id,
            self.visit_id,
            self.started_at,
            self.last_seen_at,
            self.expires_at if ended_at is None else ended_at,
            self.shared,
        )


class _NumberHistory:
    """One number's records sorted by start, so a window query reads only what may overlap."""

    def __init__(self) -> None:
        self._starts: list[tuple[float, RecordKey]] = []
        self._records: dict[RecordKey, LeaseRecord] = {}
        # Longest record seen: a record overlapping `since` started no earlier than since - span.
        self._max_span = 0.0

    def put(self, record: LeaseRecord) -> None:
        key = record_key(record)
        if key not in self._records:
            bisect.insort(self._starts, (record.started_at, key), key=_start)
        self._records[key] = record
        self._max_span = max(self._max_span, record.ended_at - record.started_at)

    def window(self, since: float, until: float) -> list[LeaseRecord]:
        lo = bisect.bisect_left(self._starts, since - self._max_span, key=_start)
        hi = bisect.bisect_right(self._starts, until, key=_start)
        found = (self._records[key] for _, key in self._starts[lo:hi])
        return sorted(
            (r for r in found if policy.overlaps(r, since, until)), key=policy.oldest_first
        )

    def trim(self, cutoff: float) -> None:
        """Forget records that ended before the cutoff."""
        end = bisect.bisect_left(self._starts, cutoff, key=_start)
        if end == 0:
            return
        head = self._starts[:end]
        for _, key in head:
            if self._records[key].ended_at < cutoff:
                del self._records[key]
        self._starts[:end] = [item for item in head if item[1] in self._records]


def _start(item: tuple[float, RecordKey]) -> float:
    return item[0]


@dataclass
class _PoolState:
    config: PoolConfig
    order: dict[str, int]
    free: dict[str, float] = field(default_factory=dict)  # configured, unheld number -> free since
    idle: dict[str, float] = field(default_factory=dict)  # number -> when its last holder let go
    leases: dict[str, _Live] = field(default_factory=dict)  # visitor -> live lease
    visits: dict[str, str] = field(default_factory=dict)  # visit -> visitor
    holders: dict[str, set[str]] = field(default_factory=dict)  # number -> visitors
    busy: dict[str, float] = field(default_factory=dict)  # number -> its holders' latest last_seen
    # Heap of (expires_at, visitor); renewals push a new entry and stale ones are skipped on pop.
    expiries: list[tuple[float, str]] = field(default_factory=list)
    clock: float = policy.NEVER_USED
    peak: int = 0
    exhaustion_count: int = 0


class MemoryPool:
    """Pool state in this process; every operation is synchronous inside, so no lock is needed.

    lease() and renew() never wait for the journal: changed records and counters are buffered
    and written by ``flush()``, which the task started by ``start()`` runs every
    ``flush_interval`` seconds and ``close()`` runs last. A crash loses what was buffered: at
    most one interval of changes, or longer if the journal was failing (the buffer is kept and
    retried). Leases made in that window are forgotten, so their numbers come back free, and
    renewals in it are lost, so a lease may end at its previous expiry. Without a journal
    nothing is persisted. Restart with ``open()``, or ``configure()`` then ``restore()``.
    """

    def __init__(
        self,
        journal: LeaseJournal | None = None,
        *,
        history_retention_seconds: float = DEFAULT_HISTORY_RETENTION_SECONDS,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL_SECONDS,
    ) -> None:
        self._journal = journal
        self._retention = history_retention_seconds
        self._flush_interval = flush_interval
        self._pools: dict[str, _PoolState] = {}
        self._history: dict[str, _NumberHistory] = {}
        self._dirty: dict[RecordKey, LeaseRecord] = {}
        self._dirty_counters: set[str] = set()
        self._flush_lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        journal: LeaseJournal,
        configs: Iterable[PoolConfig],
        now: float,
        *,
        history_retention_seconds: float = DEFAULT_HISTORY_RETENTION_SECONDS,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL_SECONDS,
    ) -> MemoryPool:
        """A pool configured with `configs` and reloaded from the journal (not started)."""
        pool = cls(
            journal,
            history_retention_seconds=history_retention_seconds,
            flush_interval=flush_interval,
        )
        for config in configs:
            await pool.configure(config)
        await pool.restore(now)
        return pool

    # lifecycle

    async def start(self) -> None:
        """Start the background flusher."""
        if self._flusher is None and self._journal is not None:
            self._flusher = asyncio.create_task(self._flush_forever(), name="number-pool-flush")

    async def close(self) -> None:
        """Stop the flusher and write what is still buffered."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        await self.flush()

    async def flush(self) -> None:
        """Write buffered records and counters; on failure they stay buffered and it raises."""
        if self._journal is None:
            return
        async with self._flush_lock:
            records, self._dirty = self._dirty, {}
            pools, self._dirty_counters = self._dirty_counters, set()
            try:
                if records:
                    await self._journal.save(list(records.values()))
                for pool_id in sorted(pools):
                    state = self._pools[pool_id]
                    await self._journal.save_counters(pool_id, state.peak, state.exhaustion_count)
            except BaseException:
                # Newer versions buffered meanwhile win; the upsert makes a replay harmless.
                for key, record in records.items():
                    self._dirty.setdefault(key, record)
                self._dirty_counters |= pools
                raise

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval)
            try:
                await self.flush()
            except Exception:
                log.exception("lease journal flush failed; retrying in %ss", self._flush_interval)

    async def restore(self, now: float) -> None:
        """Reload history, live leases and counters from the journal; call after configure()."""
        if self._journal is None:
            return
        records = await self._journal.load(now - self._retention)
        counters = await self._journal.load_counters()
        self._restore(records, counters, now)

    # PoolBackend

    async def configure(self, config: PoolConfig) -> None:
        policy.validate_config(config)
        order = {number: index for index, number in enumerate(config.numbers)}
        state = self._pools.get(config.pool_id)
        if state is None:
            state = self._pools[config.pool_id] = _PoolState(config, order)
        state.config, state.order = config, order
        state.free = {
            number: state.idle.get(number, policy.NEVER_USED)
            for number in config.numbers
            if number not in state.holders
        }

    async def lease(self, pool_id: str, visitor_id: str, visit_id: str, now: float) -> LeaseOutcome:
        state = self._state(pool_id)
        now = self._advance(state, now)
        current = state.leases.get(visitor_id)
        decision = policy.decide_lease(
            None if current is None else policy.Holding(current.number, current.visit_id),
            visit_id,
            order=state.order,
            free_since=state.free,
            busy_last_seen=state.busy,
            policy=state.config.policy,
        )
        if current is not None and decision.action is policy.Action.RENEW:
            self._touch(state, current, now)
            return LeaseOutcome(current.lease(), exhausted=False, reused=True)
        if current is not None and decision.action is policy.Action.SWITCH_VISIT:
            self._save(current.record(ended_at=now))
            if state.visits.get(current.visit_id) == visitor_id:
                del state.visits[current.visit_id]
            current.visit_id, current.started_at = visit_id, now
            state.visits[visit_id] = visitor_id
            self._touch(state, current, now)
            return LeaseOutcome(current.lease(), exhausted=False, reused=True)
        if current is not None and decision.retire_current:
            self._end(state, current, now)
        exhausted = decision.action in (policy.Action.SHARE, policy.Action.REFUSE)
        if exhausted:
            state.exhaustion_count += 1
            self._dirty_counters.add(pool_id)
        if decision.number is None:
            return LeaseOutcome(None, exhausted=True)
        live = _Live(
            pool_id,
            decision.number,
            visitor_id,
            visit_id,
            started_at=now,
            last_seen_at=now,
            expires_at=now + state.config.hold_seconds,
            shared=decision.action is policy.Action.SHARE,
        )
        self._install(state, live)
        self._save(live.record())
        self._history[live.number].trim(now - self._retention)
        if len(state.leases) > state.peak:
            state.peak = len(state.leases)
            self._dirty_counters.add(pool_id)
        return LeaseOutcome(live.lease(), exhausted=exhausted)

    async def renew(self, pool_id: str, visit_id: str, now: float) -> Lease | None:
        state = self._state(pool_id)
        now = self._advance(state, now)
        visitor_id = state.visits.get(visit_id)
        live = None if visitor_id is None else state.leases.get(visitor_id)
        # A removed number is not extended: its lease runs out and the next lease() moves on.
        if live is None or live.visit_id != visit_id or live.number not in state.order:
            return None
        self._touch(state, live, now)
        return live.lease()

    async def history(self, number: str, since: float, until: float) -> Sequence[LeaseRecord]:
        found = self._history.get(number)
        return [] if found is None else found.window(since, until)

    async def holders_at(self, number: str, t: float) -> Sequence[LeaseRecord]:
        return [r for r in await self.history(number, t, t) if policy.covers(r, t)]

    async def expire(self, now: float) -> int:
        return sum(self._advance_count(state, now) for state in self._pools.values())

    async def stats(self, pool_id: str, now: float) -> PoolStats:
        state = self._state(pool_id)
        leased = sum(1 for live in state.leases.values() if policy.is_live(live.expires_at, now))
        return policy.pool_stats(
            pool_id, len(state.order), leased, state.peak, state.exhaustion_count
        )

    # internals: synchronous, so each operation is atomic on the event loop

    def _state(self, pool_id: str) -> _PoolState:
        try:
            return self._pools[pool_id]
        except KeyError:
            raise UnknownPool(pool_id) from None

    def _advance(self, state: _PoolState, now: float) -> float:
        self._advance_count(state, now)
        return state.clock

    def _advance_count(self, state: _PoolState, now: float) -> int:
        """Move the pool's clock to `now` and expire what ran out; returns how many expired."""
        state.clock = now = policy.clamp_now(state.clock, now)
        freed = 0
        while state.expiries and state.expiries[0][0] <= now:
            expires_at, visitor_id = heapq.heappop(state.expiries)
            live = state.leases.get(visitor_id)
            if live is not None and live.expires_at == expires_at:
                self._end(state, live, expires_at)
                freed += 1
        return freed

    def _touch(self, state: _PoolState, live: _Live, now: float) -> None:
        live.last_seen_at = now
        live.expires_at = now + state.config.hold_seconds
        state.busy[live.number] = now
        heapq.heappush(state.expiries, (live.expires_at, live.visitor_id))
        self._save(live.record())

    def _install(self, state: _PoolState, live: _Live) -> None:
        state.leases[live.visitor_id] = live
        state.visits[live.visit_id] = live.visitor_id
        state.holders.setdefault(live.number, set()).add(live.visitor_id)
        state.busy[live.number] = max(
            state.busy.get(live.number, live.last_seen_at), live.last_seen_at
        )
        state.free.pop(live.number, None)
        heapq.heappush(state.expiries, (live.expires_at, live.visitor_id))

    def _end(self, state: _PoolState, live: _Live, ended_at: float) -> None:
        """Drop a lease; its number is free again once its last holder is gone."""
        if ended_at != live.expires_at:
            self._save(live.record(ended_at=ended_at))
        del state.leases[live.visitor_id]
        if state.visits.get(live.visit_id) == live.visitor_id:
            del state.visits[live.visit_id]
        number = live.number
        state.idle[number] = max(state.idle.get(number, ended_at), ended_at)
        holders = state.holders[number]
        holders.discard(live.visitor_id)
        if holders:
            state.busy[number] = max(state.leases[v].last_seen_at for v in holders)
            return
        del state.holders[number]
        del state.busy[number]
        if number in state.order:
            state.free[number] = state.idle[number]

    def _save(self, record: LeaseRecord) -> None:
        self._history.setdefault(record.number, _NumberHistory()).put(record)
        if self._journal is not None:
            self._dirty[record_key(record)] = record

    def _restore(
        self,
        records: Iterable[LeaseRecord],
        counters: dict[str, tuple[int, int]],
        now: float,
    ) -> None:
        for record in sorted(records, key=lambda r: (r.started_at, r.ended_at)):
            self._history.setdefault(record.number, _NumberHistory()).put(record)
            state = self._pools.get(record.pool_id)
            if state is None:
                continue
            state.clock = max(state.clock, record.last_seen_at)
            if not policy.is_live(record.ended_at, now):
                state.idle[record.number] = max(
                    state.idle.get(record.number, record.ended_at), record.ended_at
                )
                continue
            older = state.leases.get(record.visitor_id)
            if older is not None:
                # The crash lost the close of the visitor's previous record; the newer one wins.
                self._end(state, older, record.started_at)
            self._install(state, _live_from(record))
        for pool_id, state in self._pools.items():
            state.free = {
                number: state.idle.get(number, policy.NEVER_USED)
                for number in state.config.numbers
                if number not in state.holders
            }
            peak, exhaustion_count = counters.get(pool_id, (0, 0))
            state.peak = max(peak, len(state.leases))
            state.exhaustion_count = exhaustion_count


def _live_from(record: LeaseRecord) -> _Live:
    return _Live(
        record.pool_id,
        record.number,
        record.visitor_id,
        record.visit_id,
        record.started_at,
        record.last_seen_at,
        record.ended_at,
        record.shared,
    )
