"""Ad accounts whose spend is pulled from the platforms' APIs (adspend/), what they pulled,
and how platform campaigns map to our labels."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from calltracker.clock import utcnow
from calltracker.db.base import Base


class AdAccount(Base):
    """One account on Yandex Direct, VK Ads or Google Ads, pulled for one site."""

    __tablename__ = "ad_account"
    __table_args__ = (UniqueConstraint("site_id", "name", name="uq_ad_account_site_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"), index=True)
    platform: Mapped[str] = mapped_column(String(20))  # one of adspend.registry.PLATFORMS
    name: Mapped[str] = mapped_column(String(200))
    # The connector's config, tokens included: the API, CLI and logs only say which are set.
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    interval_minutes: Mapped[int] = mapped_column(default=180)
    lookback_days: Mapped[int] = mapped_column(default=7)
    # Every day up to this one was pulled by a successful round: the next round starts the
    # day after it when that is earlier than its look-back window, so an outage leaves no gap.
    pulled_through: Mapped[date | None] = mapped_column(Date, default=None)
    next_sync_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A round in progress: the process holding `lease_token` until `lease_until`.
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    lease_token: Mapped[str] = mapped_column(String(32), default="")
    last_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    last_success_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str] = mapped_column(Text, default="")  # the platform's words, no secrets
    error_kind: Mapped[str] = mapped_column(String(16), default="")  # "" | temporary | auth | ...
    failures: Mapped[int] = mapped_column(default=0)  # consecutive failed rounds
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        # Never the config: it holds tokens.
        return (
            f"AdAccount(id={self.id!r}, site_id={self.site_id!r}, platform={self.platform!r}, "
            f"name={self.name!r}, enabled={self.enabled!r})"
        )


class AdCampaign(Base):
    """A platform campaign (or ad group) as last pulled: its name and tracking parameters."""

    __tablename__ = "ad_campaign"
    __table_args__ = (
        UniqueConstraint("account_id", "campaign_id", "ad_group_id", name="uq_ad_campaign_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("ad_account.id", ondelete="CASCADE"))
    campaign_id: Mapped[str] = mapped_column(String(64))
    ad_group_id: Mapped[str] = mapped_column(String(64), default="")  # "": the whole campaign
    name: Mapped[str] = mapped_column(String(512), default="")
    tracking: Mapped[str] = mapped_column(Text, default="")  # a query string: utm_source=...
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PlatformSpend(Base):
    """One day of one keyword (or ad group, or campaign) as the platform reported it, with
    the labels it resolved to; `mapped` False: no labels yet, listed as unmapped spend."""

    __tablename__ = "platform_spend"
    __table_args__ = (
        UniqueConstraint(
            "account_id",
            "spend_date",
            "campaign_id",
            "ad_group_id",
            "keyword_id",
            name="uq_platform_spend_key",
        ),
        Index("ix_platform_spend_unmapped", "account_id", "mapped", "spend_date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("ad_account.id", ondelete="CASCADE"))
    spend_date: Mapped[date] = mapped_column(Date)
    campaign_id: Mapped[str] = mapped_column(String(64))
    campaign_name: Mapped[str] = mapped_column(String(512), default="")
    ad_group_id: Mapped[str] = mapped_column(String(64), default="")
    ad_group_name: Mapped[str] = mapped_column(String(512), default="")
    keyword_id: Mapped[str] = mapped_column(String(64), default="")
    keyword_text: Mapped[str] = mapped_column(String(512), default="")
    impressions: Mapped[int] = mapped_column(BigInteger, default=0)
    clicks: Mapped[int] = mapped_column(BigInteger, default=0)
    cost: Mapped[int] = mapped_column(BigInteger, default=0)  # minor units
    currency: Mapped[str] = mapped_column(String(3))
    mapped: Mapped[bool] = mapped_column(Boolean, default=False)
    mapped_by: Mapped[str] = mapped_column(String(16), default="")  # "" | table | tracking
    source: Mapped[str] = mapped_column(String(256), default="")
    medium: Mapped[str] = mapped_column(String(256), default="")
    campaign: Mapped[str] = mapped_column(String(256), default="")
    keyword: Mapped[str] = mapped_column(String(256), default="")
    pulled_at: Mapped[datetime] = mapped_column(default=utcnow)


class CampaignMapping(Base):
    """The admin's word on a platform campaign's labels: (platform, campaign id) -> utm."""

    __tablename__ = "campaign_mapping"
    __table_args__ = (
        UniqueConstraint("site_id", "platform", "campaign_id", name="uq_campaign_mapping_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(20))
    campaign_id: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(256))
    medium: Mapped[str] = mapped_column(String(256))
    campaign: Mapped[str] = mapped_column(String(256), default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


__all__ = ["AdAccount", "AdCampaign", "CampaignMapping", "PlatformSpend"]
