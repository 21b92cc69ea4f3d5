"""Number-pool types and the backend interface; the allocation policy lives in policy.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class ExhaustionPolicy(StrEnum):
    DEFAULT_NUMBER = "default_number"  # show the site's own number; the call is unattributed
    SHARE_OLDEST = "share_oldest"  # hand out the number idle longest; its calls are ambiguous


class PoolError(Exception):
    """Base of the pool's errors."""


class UnknownPool(PoolError):
    """The pool id was never configured in this backend."""


class InvalidPoolConfig(PoolError):
    """The pool's configuration is unusable (no numbers, bad hold time, duplicates)."""


@dataclass(frozen=True)
class PoolConfig:
    pool_id: str
    numbers: tuple[str, ...]  # E.164, already normalised by the caller
    hold_seconds: int
    policy: ExhaustionPolicy = ExhaustionPolicy.DEFAULT_NUMBER


@dataclass(frozen=True)
class Lease:
    """A number held by a visitor for one visit. Times are UTC epoch seconds."""

    pool_id: str
    number: str
    visitor_id: str
    visit_id: str
    started_at: float
    last_seen_at: float
    expires_at: float  # last_seen_at + hold_seconds
    shared: bool = False  # handed out while another visitor still held it (share_oldest)


@dataclass(frozen=True)
class LeaseRecord:
    """One stretch of history: who held a number, for which visit, from when until when.

    A live lease has ended_at = its current expires_at; it moves on every renewal.
    A visitor's new visit on their sticky number closes the old record and opens a new one.
    """

    pool_id: str
    number: str
    visitor_id: str
    visit_id: str
    started_at: float
    last_seen_at: float
    ended_at: float
    shared: bool = False


@dataclass(frozen=True)
class LeaseOutcome:
    """lease() result: a lease, or None when the pool is exhausted under DEFAULT_NUMBER."""

    lease: Lease | None
    exhausted: bool  # no free number was available at this request
    reused: bool = False  # the visitor's sticky lease was handed back


@dataclass(frozen=True)
class PoolStats:
    pool_id: str
    size: int
    leased: int  # live leases now
    utilisation: float  # leased / size, 0..1 (can exceed 1 only with sharing counted)
    peak_concurrent: int  # most live leases at once, ever observed
    exhaustion_count: int  # lease requests that found no free number
    recommended_size: int  # ceil(peak * 1.2) + 1, never below the current size if it exhausted


class PoolBackend(Protocol):
    """What the server needs from a pool store. Both backends pass one shared test suite."""

    async def configure(self, config: PoolConfig) -> None:
        """Create or update a pool; removed numbers are no longer handed out."""

    async def lease(self, pool_id: str, visitor_id: str, visit_id: str, now: float) -> LeaseOutcome:
        """Give the visitor a number: their own live one (sticky) or the free one idle longest."""

    async def renew(self, pool_id: str, visit_id: str, now: float) -> Lease | None:
        """Push the visit's lease expiry to now + hold; None when unknown or already expired."""

    async def history(self, number: str, since: float, until: float) -> Sequence[LeaseRecord]:
        """Every record of this number overlapping [since, until], oldest first."""

    async def holders_at(self, number: str, t: float) -> Sequence[LeaseRecord]:
        """Records covering t (started_at <= t < ended_at); more than one only when shared."""

    async def expire(self, now: float) -> int:
        """Free the leases whose expiry passed; returns how many were freed."""

    async def stats(self, pool_id: str, now: float) -> PoolStats:
        """Utilisation, peak and exhaustion figures for admins."""

    async def close(self) -> None:
        """Flush and release resources."""


class LeaseJournal(Protocol):
    """Where the memory backend persists its state so leases survive a restart."""

    async def save(self, records: Sequence[LeaseRecord]) -> None:
        """Upsert these records (keyed by pool_id, number, visit_id, started_at)."""

    async def load(self, since: float) -> Sequence[LeaseRecord]:
        """Records that ended at or after `since` (live ones and recent history)."""

    async def save_counters(
        self, pool_id: str, peak_concurrent: int, exhaustion_count: int
    ) -> None:
        """Persist the pool's counters."""

    async def load_counters(self) -> dict[str, tuple[int, int]]:
        """pool_id -> (peak_concurrent, exhaustion_count)."""
