"""A number-pool allocator for dynamic number insertion: sticky, least-recently-used leases."""

from number_pool.core import (
    ExhaustionPolicy,
    InvalidPoolConfig,
    Lease,
    LeaseJournal,
    LeaseOutcome,
    LeaseRecord,
    PoolBackend,
    PoolConfig,
    PoolError,
    PoolStats,
    UnknownPool,
)

__all__ = [
    "ExhaustionPolicy",
    "InvalidPoolConfig",
    "Lease",
    "LeaseJournal",
    "LeaseOutcome",
    "LeaseRecord",
    "PoolBackend",
    "PoolConfig",
    "PoolError",
    "PoolStats",
    "UnknownPool",
]
