"""Tuning of the outbox workers; the defaults suit production, tests pass tiny ones."""

from __future__ import annotations

from dataclasses import dataclass, field

from calltracker.integrations.outbox.policy import RetryPolicy


@dataclass(frozen=True)
class OutboxSettings:
    """How many delivery loops run, how often they look, and how long a claim holds."""

    workers: int = 1  # loops in this process, each serving one integration at a time; 0: off
    poll_interval: float = 2.0  # seconds between looks when nothing was due
    # How long a claimed row stays ours: past it, another worker retries the row. Longer than
    # one delivery can take (Bitrix: several requests of up to 60 s each at 2 a second).
    lease_seconds: float = 600.0
    drain_limit: int = 50  # rows one loop sends to one integration before looking around again
    batch_interval: float = (
        600.0  # batch adapters (Metrica): upload when the oldest row waited this
    )
    batch_size: int = 1000  # ... or as soon as this many rows are due
    # CRMs play recordings from our links for as long as the deal lives: links that do not
    # expire by default (None); a number makes them expire that many days after the call.
    recording_link_days: float | None = None
    shutdown_grace: float = 10.0  # seconds a stopping worker may finish the delivery it is in
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ValueError("workers must be 0 or more")
        if min(self.poll_interval, self.lease_seconds, self.batch_interval) <= 0:
            raise ValueError("poll_interval, lease_seconds and batch_interval must be positive")
        if self.drain_limit < 1 or self.batch_size < 1:
            raise ValueError("drain_limit and batch_size must be at least 1")
