"""Report tables: ad spend per day and label, each site's currency, visits per local day.

Won deals, which bring revenue, are deals (db/deal_models.py)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from calltracker.clock import utcnow
from calltracker.db.base import Base
from calltracker.db.models import Call, Visit


class AdSpend(Base):
    """Money spent on one day for one label; amounts in minor units (kopecks, cents).

    `origin` says who wrote the row: 0 for the CSV/JSON import, else the ad account
    (adspend/) whose pulls it sums. Each origin replaces only its own rows, so an import and
    an ad account never overwrite each other's figures.
    """

    __tablename__ = "ad_spend"
    __table_args__ = (
        # The replacement key: one row per site, origin, day and label.
        UniqueConstraint(
            "site_id",
            "origin",
            "spend_date",
            "source",
            "medium",
            "campaign",
            "keyword",
            name="uq_ad_spend_key",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"))
    spend_date: Mapped[date] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(256))
    medium: Mapped[str] = mapped_column(String(256))
    campaign: Mapped[str] = mapped_column(String(256), default="")
    keyword: Mapped[str] = mapped_column(String(256), default="")
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))  # the amount's own; the report converts
    impressions: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    clicks: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    origin: Mapped[int] = mapped_column(default=0, server_default="0")
    # The ad account of a pulled row (origin == account_id); its rows go when it is deleted.
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("ad_account.id", ondelete="CASCADE"), default=None
    )
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)


class CurrencyRate(Base):
    """One unit of `currency` is worth `rate_e8` / 10^8 units of `base` on `day`."""

    __tablename__ = "currency_rate"
    __table_args__ = (UniqueConstraint("base", "currency", "day", name="uq_currency_rate_day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    base: Mapped[str] = mapped_column(String(3))
    # An integer with eight implied decimals: exact on both databases, as a central bank
    # publishes it (four to six decimals).
    rate_e8: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(64), default="")  # e.g. "cbr", "manual"
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReportCurrency(Base):
    """The one currency a site's spend and revenue are kept in, fixed by its first import."""

    __tablename__ = "report_currency"

    site_id: Mapped[int] = mapped_column(
        ForeignKey("site.id", ondelete="CASCADE"), primary_key=True
    )
    currency: Mapped[str] = mapped_column(String(3))
    set_at: Mapped[datetime] = mapped_column(default=utcnow)


# Covering indexes for the report's GROUP BY: the range scan reads the labels from the index
# and never touches the wide visit and call rows (PostgreSQL index-only scans; SQLite
# covering indexes).
REPORT_LABELS = ("source", "medium", "campaign", "keyword")
ix_visit_report = Index(
    "ix_visit_report",
    Visit.site_id,
    Visit.started_at,
    Visit.is_bot,
    *(getattr(Visit, name) for name in REPORT_LABELS),
)
ix_call_report = Index(
    "ix_call_report",
    Call.site_id,
    Call.started_at,
    Call.status,
    Call.unique,
    Call.target,
    *(getattr(Call, name) for name in REPORT_LABELS),
)


class VisitDay(Base):
    """Visits of one local day that is over, per label (bots left out): a year's report adds
    up a few thousand of these rows instead of counting millions of visits.

    Written once per (site, time zone, day) with its VisitDayDone row, in one transaction
    (reports/visit_rollup.py); a day without its VisitDayDone row is counted from `visit`.
    Keyed by the zone's name too, so a site moved to another zone is never summed by the
    old zone's days.
    """

    __tablename__ = "visit_day"
    # Covering, like ix_visit_report: a report's sums are read from the index alone.
    __table_args__ = (
        Index(
            "ix_visit_day_report",
            "site_id",
            "tz",
            "day",
            "source",
            "medium",
            "campaign",
            "keyword",
            "visits",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"))
    tz: Mapped[str] = mapped_column(String(64))
    day: Mapped[date] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(256))
    medium: Mapped[str] = mapped_column(String(256))
    campaign: Mapped[str] = mapped_column(String(256))
    keyword: Mapped[str] = mapped_column(String(256))
    visits: Mapped[int]


class VisitDayDone(Base):
    """The local days whose visits are in VisitDay."""

    __tablename__ = "visit_day_done"

    site_id: Mapped[int] = mapped_column(
        ForeignKey("site.id", ondelete="CASCADE"), primary_key=True
    )
    tz: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    rolled_at: Mapped[datetime] = mapped_column(default=utcnow)


__all__ = [
    "AdSpend",
    "CurrencyRate",
    "ReportCurrency",
    "VisitDay",
    "VisitDayDone",
]
