"""Models for CRM and analytics pushes: per-site integrations and their durable outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from calltracker.clock import utcnow
from calltracker.db.base import Base


class Integration(Base):
    """One remote (CRM, analytics, webhook) that a site's calls are pushed to."""

    __tablename__ = "integration"
    __table_args__ = (UniqueConstraint("site_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # one of integrations.registry.KINDS
    name: Mapped[str] = mapped_column(String(200))
    # The adapter's config, secrets included as given: the database is trusted, but the API,
    # the CLI and the logs only ever show which secret fields are set.
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    trigger: Mapped[str] = mapped_column(String(10), default="every")  # every | unique | target
    stage: Mapped[str] = mapped_column(String(10), default="hangup")  # ring | hangup
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        # Never the config: it holds tokens and webhook URLs.
        return (
            f"Integration(id={self.id!r}, site_id={self.site_id!r}, kind={self.kind!r}, "
            f"name={self.name!r}, enabled={self.enabled!r})"
        )


class OutboxRow(Base):
    """One delivery of one call stage to one integration; written with the call it is about."""

    __tablename__ = "outbox"
    __table_args__ = (
        # The worker's poll: due rows by state and time.
        Index("ix_outbox_state_next_attempt_at", "state", "next_attempt_at"),
        Index("ix_outbox_integration_state", "integration_id", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    integration_id: Mapped[int] = mapped_column(ForeignKey("integration.id", ondelete="CASCADE"))
    call_id: Mapped[int] = mapped_column(ForeignKey("call.id", ondelete="CASCADE"), index=True)
    stage: Mapped[str] = mapped_column(String(10))  # ring | hangup | won
    # The won deal a "won" row reports to an ad platform (deals/); None for call stages.
    deal_id: Mapped[int | None] = mapped_column(
        ForeignKey("deal.id", ondelete="CASCADE"), default=None
    )
    # f"{integration_id}:{call_id}:{stage}" (f"{integration_id}:deal:{deal_id}:won" for a
    # deal): a re-emitted call fact or a deal seen twice cannot add a second row.
    idempotency_key: Mapped[str] = mapped_column(String(100), unique=True)
    state: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    # When the row is next due; while `sending`, when the worker's lease on it runs out.
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str] = mapped_column(Text, default="")  # the remote's words, no secrets
    error_kind: Mapped[str] = mapped_column(String(16), default="")  # see outbox.policy
    remote_ids: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)

    def __repr__(self) -> str:
        return (
            f"OutboxRow(id={self.id!r}, key={self.idempotency_key!r}, state={self.state!r}, "
            f"attempts={self.attempts!r})"
        )


__all__ = ["Integration", "OutboxRow"]
