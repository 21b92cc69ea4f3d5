"""The report as data: counts per label and per day, derived metrics, the table and its JSON."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal, TypeVar

import msgspec
from msgspec.structs import asdict

from calltracker.reports.money import MINOR_PER_MAJOR, major

LEVELS = ("source", "medium", "campaign", "keyword")
LEVEL_TITLES = {
    "source": "Source",
    "medium": "Medium",
    "campaign": "Campaign",
    "keyword": "Keyword",
}
DASH = "—"  # a ratio whose denominator is zero: shown, never an error or infinity
NOT_SET = "(not set)"  # an empty label, e.g. an unattributed call

Key = tuple[str, ...]
K = TypeVar("K")


@dataclass(frozen=True)
class Counts:
    """What adds up: counts, and money in minor units."""

    visits: int = 0
    calls: int = 0
    unique_calls: int = 0
    target_calls: int = 0
    missed_calls: int = 0
    spend: int = 0
    revenue: int = 0
    impressions: int = 0
    clicks: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def conversion(self) -> Decimal | None:
        """Visit-to-call conversion, a fraction."""
        return ratio(self.calls, self.visits)

    @property
    def ctr(self) -> Decimal | None:
        """Clicks per impression, a fraction."""
        return ratio(self.clicks, self.impressions)

    @property
    def cpc(self) -> Decimal | None:
        """Spend per click, in major units."""
        return ratio(self.spend, self.clicks * MINOR_PER_MAJOR)

    @property
    def cost_per_call(self) -> Decimal | None:
        """Spend per call, in major units."""
        return ratio(self.spend, self.calls * MINOR_PER_MAJOR)

    @property
    def cost_per_target_call(self) -> Decimal | None:
        """Spend per target call (CPL), in major units."""
        return ratio(self.spend, self.target_calls * MINOR_PER_MAJOR)

    @property
    def roi(self) -> Decimal | None:
        """(revenue - spend) / spend, a fraction."""
        return ratio(self.revenue - self.spend, self.spend)


def ratio(numerator: int, denominator: int) -> Decimal | None:
    if denominator == 0:
        return None
    return Decimal(numerator) / Decimal(denominator)


@dataclass(frozen=True)
class Row:
    key: Key  # the labels from source down to the report's level
    counts: Counts


@dataclass(frozen=True)
class Day:
    day: date
    counts: Counts


@dataclass(frozen=True)
class RateUse:
    """A rate the report converted spend with: 1 currency = rate site currency."""

    currency: str
    rate: Decimal
    rate_day: date  # the day the rate is of
    first_day: date  # the spend days it converted
    last_day: date
    source: str


@dataclass(frozen=True)
class MissingRate:
    """Spend left out of the money figures: no rate for its currency and day."""

    currency: str
    day: date
    amount: int  # minor units of `currency`


@dataclass(frozen=True)
class Unmapped:
    """Pulled spend of the range that maps to no labels (adspend/), per currency."""

    currency: str
    amount: int  # minor units
    impressions: int
    clicks: int
    campaigns: int


@dataclass(frozen=True)
class Report:
    site_key: str
    timezone: str
    currency: str  # "" until the site's first spend or revenue import fixes it
    first_day: date
    last_day: date
    level: str
    filters: Mapping[str, str]
    rows: Sequence[Row]
    days: Sequence[Day]
    totals: Counts = field(default_factory=Counts)
    rates: Sequence[RateUse] = ()
    missing_rates: Sequence[MissingRate] = ()
    unmapped: Sequence[Unmapped] = ()

    @property
    def label_levels(self) -> tuple[str, ...]:
        return LEVELS[: LEVELS.index(self.level) + 1]


def merge(parts: Iterable[Mapping[K, Counts]]) -> dict[K, Counts]:
    """Add up the partial counts (visits, calls, spend, revenue) that share a key or a day."""
    merged: dict[K, Counts] = {}
    for part in parts:
        for key, counts in part.items():
            merged[key] = merged.get(key, Counts()) + counts
    return merged


def sort_rows(by_key: Mapping[Key, Counts]) -> list[Row]:
    """Most calls first, then most spend, then by label, so the order is stable."""
    rows = [Row(key, counts) for key, counts in by_key.items()]
    rows.sort(key=lambda r: (-r.counts.calls, -r.counts.spend, r.key))
    return rows


def every_day(first: date, last: date, by_day: Mapping[date, Counts]) -> list[Day]:
    """One entry per local day of the range, zeros where nothing happened."""
    days = (first + timedelta(days=n) for n in range((last - first).days + 1))
    return [Day(d, by_day.get(d, Counts())) for d in days]


def total(rows: Iterable[Row]) -> Counts:
    result = Counts()
    for row in rows:
        result += row.counts
    return result


# --- what people see: the page's table and the CSV export share these cells ---------------


def money_cell(value: int | Decimal | None, *, minor: bool = True) -> str:
    if value is None:
        return DASH
    amount = major(value) if minor else Decimal(value).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return f"{amount:.2f}"


def percent_cell(value: Decimal | None) -> str:
    if value is None:
        return DASH
    return f"{(value * 100).quantize(Decimal('0.01'), ROUND_HALF_UP):.2f}%"


def label_cell(value: str) -> str:
    return value if value else NOT_SET


METRIC_TITLES = (
    "Impressions",
    "Clicks",
    "CTR",
    "Visits",
    "Calls",
    "Unique calls",
    "Target calls",
    "Missed calls",
    "Visit→call",
    "Spend",
    "CPC",
    "Cost per call",
    "CPL",
    "Revenue",
    "ROI",
)


def metric_cells(c: Counts) -> list[str]:
    return [
        str(c.impressions),
        str(c.clicks),
        percent_cell(c.ctr),
        str(c.visits),
        str(c.calls),
        str(c.unique_calls),
        str(c.target_calls),
        str(c.missed_calls),
        percent_cell(c.conversion),
        money_cell(c.spend),
        money_cell(c.cpc, minor=False),
        money_cell(c.cost_per_call, minor=False),
        money_cell(c.cost_per_target_call, minor=False),
        money_cell(c.revenue),
        percent_cell(c.roi),
    ]


@dataclass(frozen=True)
class Table:
    header: list[str]
    body: list[list[str]]
    footer: list[str]

    def lines(self) -> list[list[str]]:
        return [self.header, *self.body, self.footer]


def table(report: Report) -> Table:
    """The report's table as text cells: the page shows them and the CSV export writes them."""
    levels = report.label_levels
    money_suffix = f", {report.currency}" if report.currency else ""
    titles = [
        f"{t}{money_suffix}" if t in ("Spend", "CPC", "Cost per call", "CPL", "Revenue") else t
        for t in METRIC_TITLES
    ]
    header = [LEVEL_TITLES[level] for level in levels] + titles
    body = [[label_cell(v) for v in row.key] + metric_cells(row.counts) for row in report.rows]
    footer = ["Total"] + [""] * (len(levels) - 1) + metric_cells(report.totals)
    return Table(header, body, footer)


# --- JSON -----------------------------------------------------------------------------------


def _number(value: Decimal | None, places: str) -> float | None:
    if value is None:
        return None
    return float(value.quantize(Decimal(places), ROUND_HALF_UP))


class Metrics(msgspec.Struct, frozen=True, kw_only=True):
    """A row's figures as the JSON API shows them: money in major units, null for a dash."""

    impressions: int
    clicks: int
    ctr: float | None  # clicks per impression, a fraction
    visits: int
    calls: int
    unique_calls: int
    target_calls: int
    missed_calls: int
    conversion: float | None  # calls per visit, a fraction
    spend: float
    cpc: float | None  # spend per click
    cost_per_call: float | None
    cost_per_target_call: float | None  # CPL
    revenue: float
    roi: float | None  # (revenue - spend) / spend, a fraction


class ReportRow(Metrics, frozen=True, kw_only=True):
    """One label's figures; the labels from source down to the report's level are present."""

    source: str | msgspec.UnsetType = msgspec.UNSET
    medium: str | msgspec.UnsetType = msgspec.UNSET
    campaign: str | msgspec.UnsetType = msgspec.UNSET
    keyword: str | msgspec.UnsetType = msgspec.UNSET


class ReportDay(Metrics, frozen=True, kw_only=True):
    """One local day's figures."""

    date: date


class RateUsedJson(msgspec.Struct, frozen=True, kw_only=True):
    """How spend in another currency was converted over a run of days."""

    currency: str
    base: str | None  # the site's currency, which the report is in
    rate: float
    rate_date: date
    first_day: date = msgspec.field(name="from")
    last_day: date = msgspec.field(name="to")
    source: str


class MissingRateJson(msgspec.Struct, frozen=True, kw_only=True):
    """Spend left out of the report: no rate for its currency on or shortly before that day."""

    currency: str
    date: date
    amount: float


class UnmappedSpendJson(msgspec.Struct, frozen=True, kw_only=True):
    """Pulled spend the report cannot put under a label (see /api/v1/spend/unmapped)."""

    currency: str
    amount: float
    impressions: int
    clicks: int
    campaigns: int


class ReportJson(msgspec.Struct, frozen=True, kw_only=True):
    """GET /api/v1/reports/calls: calls, spend, CPL and ROI per label, totals, and by day."""

    site: str
    timezone: str
    currency: str | None  # null until the site's first spend or revenue import fixes it
    first_day: date = msgspec.field(name="from")
    last_day: date = msgspec.field(name="to")
    group: Literal["source", "medium", "campaign", "keyword"]
    filters: dict[str, str]
    rows: list[ReportRow]
    totals: Metrics
    days: list[ReportDay]
    rates: list[RateUsedJson]
    missing_rates: list[MissingRateJson]
    unmapped_spend: list[UnmappedSpendJson]


def metrics(c: Counts) -> Metrics:
    return Metrics(
        impressions=c.impressions,
        clicks=c.clicks,
        ctr=_number(c.ctr, "0.0001"),
        visits=c.visits,
        calls=c.calls,
        unique_calls=c.unique_calls,
        target_calls=c.target_calls,
        missed_calls=c.missed_calls,
        conversion=_number(c.conversion, "0.0001"),
        spend=float(major(c.spend)),
        cpc=_number(c.cpc, "0.01"),
        cost_per_call=_number(c.cost_per_call, "0.01"),
        cost_per_target_call=_number(c.cost_per_target_call, "0.01"),
        revenue=float(major(c.revenue)),
        roi=_number(c.roi, "0.0001"),
    )


def report_json(report: Report) -> ReportJson:
    levels = report.label_levels
    return msgspec.convert(
        {
            "site": report.site_key,
            "timezone": report.timezone,
            "currency": report.currency or None,
            "from": report.first_day,
            "to": report.last_day,
            "group": report.level,
            "filters": dict(report.filters),
            "rows": [
                dict(zip(levels, row.key, strict=True)) | asdict(metrics(row.counts))
                for row in report.rows
            ],
            "totals": metrics(report.totals),
            "days": [{"date": d.day} | asdict(metrics(d.counts)) for d in report.days],
            "rates": [
                RateUsedJson(
                    currency=r.currency,
                    base=report.currency or None,
                    rate=float(r.rate),
                    rate_date=r.rate_day,
                    first_day=r.first_day,
                    last_day=r.last_day,
                    source=r.source,
                )
                for r in report.rates
            ],
            "missing_rates": [
                MissingRateJson(currency=m.currency, date=m.day, amount=float(major(m.amount)))
                for m in report.missing_rates
            ],
            "unmapped_spend": [
                UnmappedSpendJson(
                    currency=u.currency,
                    amount=float(major(u.amount)),
                    impressions=u.impressions,
                    clicks=u.clicks,
                    campaigns=u.campaigns,
                )
                for u in report.unmapped
            ],
        },
        ReportJson,
    )
