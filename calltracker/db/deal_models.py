"""Deals from the CRMs: the deal itself, its stage history, the CRM's stages, what to fetch."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from calltracker.clock import utcnow
from calltracker.db.base import Base


class Deal(Base):
    """One CRM deal (a Bitrix24 deal, an amoCRM lead) or a deal posted to /api/v1/conversions.

    One row per (site, origin, remote id): a deal seen again replaces its own figures, so it
    never counts twice. Revenue counts under ``source``..``keyword`` on the local day of
    ``attributed_at`` (the matched call's or visit's start), copied here when the deal is
    matched, so a period's revenue is a range on this table.
    """

    __tablename__ = "deal"
    __table_args__ = (
        UniqueConstraint("site_id", "origin", "remote_id", name="uq_deal_remote"),
        Index("ix_deal_site_attributed", "site_id", "attributed_at"),
        Index("ix_deal_call", "call_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"))
    # The CRM integration it came from; None for posted deals or a deleted integration.
    integration_id: Mapped[int | None] = mapped_column(
        ForeignKey("integration.id", ondelete="SET NULL"), default=None
    )
    origin: Mapped[str] = mapped_column(String(40))  # "integration:<id>" or "api"
    crm: Mapped[str] = mapped_column(String(20))  # bitrix24 | amocrm | api
    remote_id: Mapped[str] = mapped_column(String(128))
    title: Mapped[str] = mapped_column(String(256), default="")
    pipeline_id: Mapped[str] = mapped_column(String(64), default="")
    pipeline_name: Mapped[str] = mapped_column(String(256), default="")
    stage_id: Mapped[str] = mapped_column(String(64), default="")
    stage_name: Mapped[str] = mapped_column(String(256), default="")
    status: Mapped[str] = mapped_column(String(8), default="open")  # open | won | lost
    amount: Mapped[int] = mapped_column(BigInteger, default=0)  # minor units
    currency: Mapped[str] = mapped_column(String(3), default="")
    manager_id: Mapped[str] = mapped_column(String(64), default="")
    manager_name: Mapped[str] = mapped_column(String(256), default="")
    opened_at: Mapped[datetime]
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
    # The CRM's own modification time: an older snapshot (a late webhook) never wins.
    remote_updated_at: Mapped[datetime | None] = mapped_column(default=None)
    lead_remote_id: Mapped[str] = mapped_column(String(64), default="")
    contact_remote_id: Mapped[str] = mapped_column(String(64), default="")
    phones: Mapped[list[str]] = mapped_column(default=list)  # the contact's, E.164
    tracking: Mapped[dict[str, Any]] = mapped_column(default=dict)  # utm_*, gclid, yclid, ...
    call_id: Mapped[int | None] = mapped_column(
        ForeignKey("call.id", ondelete="SET NULL"), default=None
    )
    visit_id: Mapped[str | None] = mapped_column(String(32), default=None)
    match: Mapped[str] = mapped_column(String(16), default="none")  # deals.matching.BASES
    attributed_at: Mapped[datetime | None] = mapped_column(default=None)
    source: Mapped[str] = mapped_column(String(256), default="")
    medium: Mapped[str] = mapped_column(String(256), default="")
    campaign: Mapped[str] = mapped_column(String(256), default="")
    keyword: Mapped[str] = mapped_column(String(256), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class DealStage(Base):
    """A deal's stage, status or amount as it changed: the history a funnel reads."""

    __tablename__ = "deal_stage"
    __table_args__ = (Index("ix_deal_stage_deal", "deal_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    deal_id: Mapped[int] = mapped_column(ForeignKey("deal.id", ondelete="CASCADE"))
    stage_id: Mapped[str] = mapped_column(String(64))
    stage_name: Mapped[str] = mapped_column(String(256), default="")
    status: Mapped[str] = mapped_column(String(8))
    amount: Mapped[int] = mapped_column(BigInteger, default=0)
    at: Mapped[datetime]  # when the CRM changed it, as far as it tells us
    seen_via: Mapped[str] = mapped_column(String(16), default="")  # webhook | poll | api


class CrmStage(Base):
    """A pipeline stage as the CRM names and orders it (the funnel's columns)."""

    __tablename__ = "crm_stage"
    __table_args__ = (
        UniqueConstraint("integration_id", "pipeline_id", "stage_id", name="uq_crm_stage"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    integration_id: Mapped[int] = mapped_column(ForeignKey("integration.id", ondelete="CASCADE"))
    pipeline_id: Mapped[str] = mapped_column(String(64))
    pipeline_name: Mapped[str] = mapped_column(String(256), default="")
    stage_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(256), default="")
    sort: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(8), default="open")  # what a deal here is
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class CrmLink(Base):
    """A CRM record our outbox created or used for a call: how a deal finds its call first."""

    __tablename__ = "crm_link"
    __table_args__ = (
        UniqueConstraint("integration_id", "entity", "remote_id", "call_id", name="uq_crm_link"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    integration_id: Mapped[int] = mapped_column(ForeignKey("integration.id", ondelete="CASCADE"))
    entity: Mapped[str] = mapped_column(String(16))  # lead | deal | contact
    remote_id: Mapped[str] = mapped_column(String(64))
    call_id: Mapped[int] = mapped_column(ForeignKey("call.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CrmFetch(Base):
    """A CRM record to fetch: named by a webhook (or a lead that became a deal).

    Durable, so a CRM outage only delays the fetch. ``generation`` grows with every event
    for the record, so a fetch finished while a newer event came in does not clear it.
    """

    __tablename__ = "crm_fetch"
    __table_args__ = (
        UniqueConstraint("integration_id", "entity", "remote_id", name="uq_crm_fetch"),
        Index("ix_crm_fetch_due", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    integration_id: Mapped[int] = mapped_column(ForeignKey("integration.id", ondelete="CASCADE"))
    entity: Mapped[str] = mapped_column(String(16))  # deal | lead
    remote_id: Mapped[str] = mapped_column(String(64))
    seen_via: Mapped[str] = mapped_column(String(16), default="webhook")
    generation: Mapped[int] = mapped_column(default=1)
    attempts: Mapped[int] = mapped_column(default=0)
    due_at: Mapped[datetime] = mapped_column(default=utcnow)  # or while leased, its end
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CrmCursor(Base):
    """Where the polling backstop of one CRM integration got to, and who polls it now."""

    __tablename__ = "crm_cursor"

    integration_id: Mapped[int] = mapped_column(
        ForeignKey("integration.id", ondelete="CASCADE"), primary_key=True
    )
    # Deals modified after this were not read yet (the CRM's clock, minus an overlap).
    since: Mapped[datetime | None] = mapped_column(default=None)
    # A poller's claim: another process polls only once this has passed.
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    polled_at: Mapped[datetime | None] = mapped_column(default=None)
    due_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str] = mapped_column(Text, default="")


__all__ = ["CrmCursor", "CrmFetch", "CrmLink", "CrmStage", "Deal", "DealStage"]
