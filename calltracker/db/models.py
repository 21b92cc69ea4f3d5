"""SQLAlchemy 2 typed models: sites, pools, numbers, visitors, visits, leases, calls, tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from calltracker.clock import utcnow
from calltracker.db.base import Base


class Site(Base):
    __tablename__ = "site"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)  # public key the widget sends
    name: Mapped[str] = mapped_column(String(200))
    domains: Mapped[list[str]] = mapped_column(default=list)
    country: Mapped[str] = mapped_column(String(2), default="RU")  # phonenumbers region
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    default_number: Mapped[str] = mapped_column(String(20))  # E.164
    # Mediums that get pooled numbers; empty means all traffic does.
    pooled_mediums: Mapped[list[str]] = mapped_column(default=list)
    # Number shown to traffic that is not pooled: a static number id, or None for the default.
    # Kept without a foreign key: site and tracking_number would reference each other.
    fallback_number_id: Mapped[int | None] = mapped_column(default=None)
    selectors: Mapped[list[str]] = mapped_column(default=list)
    target_min_talk_seconds: Mapped[int] = mapped_column(default=30)
    unique_window_days: Mapped[int] = mapped_column(default=30)
    callerid_template: Mapped[str] = mapped_column(String(100), default="[{source}/{medium}] ")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Pool(Base):
    __tablename__ = "pool"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    hold_seconds: Mapped[int] = mapped_column(default=15 * 60)
    policy: Mapped[str] = mapped_column(String(20), default="default_number")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TrackingNumber(Base):
    """A phone number calltracker tracks: pooled (pool_id set) or static (label set)."""

    __tablename__ = "tracking_number"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(20), unique=True)  # E.164
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(10))  # "pool" | "static"
    pool_id: Mapped[int | None] = mapped_column(
        ForeignKey("pool.id", ondelete="CASCADE"), index=True, default=None
    )
    source: Mapped[str] = mapped_column(String(256), default="")
    medium: Mapped[str] = mapped_column(String(256), default="")
    campaign: Mapped[str] = mapped_column(String(256), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Visitor(Base):
    __tablename__ = "visitor"
    __table_args__ = (UniqueConstraint("site_id", "visitor_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"))
    visitor_key: Mapped[str] = mapped_column(String(64))  # the widget's first-party id
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    first_source: Mapped[str] = mapped_column(String(256))
    first_medium: Mapped[str] = mapped_column(String(256))
    first_campaign: Mapped[str] = mapped_column(String(256), default="")
    first_keyword: Mapped[str] = mapped_column(String(256), default="")
    # Last non-direct touch, what a later direct visit inherits.
    last_source: Mapped[str | None] = mapped_column(String(256), default=None)
    last_medium: Mapped[str | None] = mapped_column(String(256), default=None)
    last_campaign: Mapped[str | None] = mapped_column(String(256), default=None)
    last_keyword: Mapped[str | None] = mapped_column(String(256), default=None)
    last_content: Mapped[str | None] = mapped_column(String(256), default=None)


class Visit(Base):
    __tablename__ = "visit"
    # Few indexes on purpose: every visit pays for each one on insert. Reports read through
    # ix_visit_report (db/report_models.py), which leads with (site_id, started_at).

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"))
    visitor_key: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime]
    url: Mapped[str] = mapped_column(Text)
    referrer: Mapped[str] = mapped_column(Text, default="")
    ga_client_id: Mapped[str] = mapped_column(String(100), default="")
    ym_client_id: Mapped[str] = mapped_column(String(100), default="")
    # GA4 session ids from the _ga_<stream> cookies: "STREAM.SESSION", space-separated.
    ga_sessions: Mapped[str] = mapped_column(String(200), default="", server_default="")
    # Attributed (last non-direct) labels; touch_* is what this visit itself carried.
    source: Mapped[str] = mapped_column(String(256))
    medium: Mapped[str] = mapped_column(String(256))
    campaign: Mapped[str] = mapped_column(String(256), default="")
    keyword: Mapped[str] = mapped_column(String(256), default="")
    content: Mapped[str] = mapped_column(String(256), default="")
    touch_source: Mapped[str] = mapped_column(String(256))
    touch_medium: Mapped[str] = mapped_column(String(256))
    click_id: Mapped[str] = mapped_column(String(256), default="")
    click_id_type: Mapped[str] = mapped_column(String(20), default="")
    number: Mapped[str] = mapped_column(String(20))
    number_kind: Mapped[str] = mapped_column(String(10))  # pool | static | default
    pool_id: Mapped[int | None] = mapped_column(default=None)
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    is_bot: Mapped[bool] = mapped_column(Boolean, default=False)


class VisitEvent(Base):
    """Signals from the page, e.g. a click on a tel: link: precise evidence for matching."""

    __tablename__ = "visit_event"
    __table_args__ = (Index("ix_visit_event_number_at", "number", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    visit_id: Mapped[str] = mapped_column(ForeignKey("visit.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(32))
    number: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime]


class LeaseRow(Base):
    """Lease history persisted by the in-process pool backend."""

    __tablename__ = "lease"
    __table_args__ = (
        UniqueConstraint("pool_key", "number", "visit_id", "started_at", name="uq_lease_identity"),
        Index("ix_lease_number_started", "number", "started_at"),
        Index("ix_lease_ended", "ended_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    pool_key: Mapped[str] = mapped_column(String(64))  # number_pool's pool_id (str of pool.id)
    number: Mapped[str] = mapped_column(String(20))
    visitor_key: Mapped[str] = mapped_column(String(64))
    visit_id: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[float] = mapped_column(Float)  # epoch seconds, as number_pool keeps them
    last_seen_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float] = mapped_column(Float)
    shared: Mapped[bool] = mapped_column(Boolean, default=False)


class PoolCounter(Base):
    __tablename__ = "pool_counter"

    pool_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    peak_concurrent: Mapped[int] = mapped_column(default=0)
    exhaustion_count: Mapped[int] = mapped_column(default=0)


class Call(Base):
    __tablename__ = "call"
    __table_args__ = (Index("ix_call_caller_started", "caller", "started_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    linkedid: Mapped[str] = mapped_column(String(64), unique=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("site.id", ondelete="SET NULL"))
    tracking_number: Mapped[str] = mapped_column(String(20))
    caller: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime]
    answered_at: Mapped[datetime | None] = mapped_column(default=None)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    wait_seconds: Mapped[int] = mapped_column(default=0)
    talk_seconds: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(16))  # answered | missed | busy | failed | ringing
    operator: Mapped[str] = mapped_column(String(64), default="")
    recording: Mapped[str] = mapped_column(String(512), default="")
    visit_id: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    source: Mapped[str] = mapped_column(String(256), default="")
    medium: Mapped[str] = mapped_column(String(256), default="")
    campaign: Mapped[str] = mapped_column(String(256), default="")
    keyword: Mapped[str] = mapped_column(String(256), default="")
    attribution: Mapped[str] = mapped_column(String(16), default="none")
    attribution_detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    unique: Mapped[bool] = mapped_column(Boolean, default=True)
    target: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))  # admin | marketer | operator
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    # The user a token acts for (None: a service token); deleting the user deletes it.
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("app_user.id", ondelete="CASCADE"), index=True, default=None
    )


__all__ = [
    "ApiToken",
    "Call",
    "LeaseRow",
    "Pool",
    "PoolCounter",
    "Site",
    "TrackingNumber",
    "Visit",
    "VisitEvent",
    "Visitor",
]
