"""The report's SQL: GROUP BY labels, and counts per local day, over visits, calls, spend, deals
(won deals: their revenue, deals/).

Each of the four sources is aggregated in the database on its own; only the small aggregated
results are merged in Python (model.merge). Local days are exact UTC ranges worked out with
zoneinfo (a DST day lasts 23 or 25 hours), so SQLite, which knows no time zones, and
PostgreSQL count the same days. Each day is a range lookup on the (site_id, started_at, ...)
covering indexes: several times faster, on both databases, than bucketing every row by a
computed local date and grouping on that.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, Select, case, func, literal, select, true, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import Subquery

from calltracker.clock import as_date, day_bounds, utc_bounds
from calltracker.db.adspend_models import AdAccount, PlatformSpend
from calltracker.db.base import UTCDateTime
from calltracker.db.deal_models import Deal
from calltracker.db.models import Call, Site, Visit
from calltracker.db.report_models import AdSpend, VisitDay
from calltracker.errors import Invalid
from calltracker.reports import model, money, rates, visit_rollup
from calltracker.reports.model import LEVELS, Counts, Key

if TYPE_CHECKING:
    AnySelect = Select[*tuple[Any, ...]]

MAX_DAYS = 731
MISSED = ("missed", "busy", "failed")  # ended unanswered; "ringing" is still in progress


@dataclass(frozen=True)
class ReportParams:
    first_day: date
    last_day: date
    level: str = "source"
    filters: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise Invalid(f"group must be one of {', '.join(LEVELS)}", code="invalid_field")
        unknown = set(self.filters) - set(LEVELS)
        if unknown:
            raise Invalid(f"unknown filter(s): {', '.join(sorted(unknown))}", code="invalid_field")
        if self.last_day < self.first_day:
            raise Invalid("'to' is before 'from'", code="invalid_field")
        if (self.last_day - self.first_day).days >= MAX_DAYS:
            raise Invalid(f"a report covers at most {MAX_DAYS} days", code="invalid_field")


def _count_true(condition: Any) -> ColumnElement[Any]:
    return func.sum(case((condition, 1), else_=0))


@dataclass(frozen=True)
class _Scope:
    site_id: int
    start: datetime
    end: datetime
    params: ReportParams
    days: list[tuple[date, datetime, datetime]]
    tz: str
    rolled: frozenset[date]  # days whose visits are in VisitDay
    currency: str = ""  # the site's: revenue in it counts; spend in others converts

    def labels(self, entity: Any) -> list[Any]:
        return [getattr(entity, name) for name in LEVELS[: LEVELS.index(self.params.level) + 1]]

    def where(self, query: AnySelect, entity: Any) -> AnySelect:
        for name, value in self.params.filters.items():
            query = query.where(getattr(entity, name) == value)
        return query

    def day_table(self, days: Sequence[tuple[date, datetime, datetime]] | None = None) -> Subquery:
        """Days (the range's, by default) as rows (n, lo, hi), n indexing `self.days`: a
        UNION ALL both databases understand."""
        index = {day: n for n, (day, _, _) in enumerate(self.days)}
        rows = [
            select(
                literal(index[day], Integer).label("n"),
                literal(lo, UTCDateTime()).label("lo"),
                literal(hi, UTCDateTime()).label("hi"),
            )
            for day, lo, hi in (self.days if days is None else days)
        ]
        table = union_all(*rows) if len(rows) > 1 else rows[0]
        return table.subquery("d")


Build = Callable[..., Counts]


async def _by_label(
    session: AsyncSession, query: AnySelect, width: int, build: Build
) -> dict[Any, Counts]:
    result = await session.execute(query)
    return {tuple(row[:width]): build(*(v or 0 for v in row[width:])) for row in result.all()}


async def _by_day(
    session: AsyncSession, s: _Scope, d: Subquery, metrics: Sequence[Any], build: Build
) -> dict[date, Counts]:
    """One correlated subquery per metric, each a range lookup for the day row it is in."""
    result = await session.execute(select(d.c.n, *metrics).order_by(d.c.n))
    return {s.days[row[0]][0]: build(*(v or 0 for v in row[1:])) for row in result.all()}


def _visit_counts(n: int) -> Counts:
    return Counts(visits=int(n))


def _call_counts(calls: int, unique: int, target: int, missed: int) -> Counts:
    return Counts(
        calls=int(calls),
        unique_calls=int(unique),
        target_calls=int(target),
        missed_calls=int(missed),
    )


async def _visits(session: AsyncSession, s: _Scope, by_day: bool) -> dict[Any, Counts]:
    """Rolled-up days from VisitDay, the others (today, or days not rolled up yet) counted."""
    parts = []
    if s.rolled:
        parts.append(await _rolled_visits(session, s, by_day))
    counted = [day for day in s.days if day[0] not in s.rolled]
    if counted:
        parts.append(await _counted_visits(session, s, counted, by_day))
    return model.merge(parts)


async def _rolled_visits(session: AsyncSession, s: _Scope, by_day: bool) -> dict[Any, Counts]:
    keys: list[Any] = [VisitDay.day] if by_day else s.labels(VisitDay)
    query = select(*keys, func.sum(VisitDay.visits)).where(
        VisitDay.site_id == s.site_id,
        VisitDay.tz == s.tz,
        VisitDay.day.in_(sorted(s.rolled)),
    )
    query = s.where(query, VisitDay).group_by(*keys)
    grouped = await _by_label(session, query, len(keys), _visit_counts)
    if by_day:
        return {as_date(k[0]): v for k, v in grouped.items()}
    return grouped


async def _counted_visits(
    session: AsyncSession,
    s: _Scope,
    days: list[tuple[date, datetime, datetime]],
    by_day: bool,
) -> dict[Any, Counts]:
    def scoped(query: AnySelect, lo: Any, hi: Any) -> AnySelect:
        query = query.where(
            Visit.site_id == s.site_id,
            Visit.started_at >= lo,
            Visit.started_at < hi,
            Visit.is_bot.is_(False),
        )
        return s.where(query, Visit)

    if by_day:
        d = s.day_table(days)
        count = scoped(select(func.count()), d.c.lo, d.c.hi).scalar_subquery()
        return await _by_day(session, s, d, [count], _visit_counts)
    keys = s.labels(Visit)
    parts = []
    for lo, hi in _spans(days):
        query = scoped(select(*keys, func.count()), lo, hi).group_by(*keys)
        parts.append(await _by_label(session, query, len(keys), _visit_counts))
    return model.merge(parts)


def _spans(days: list[tuple[date, datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Consecutive days joined into [lo, hi) ranges: one range scan each."""
    spans: list[tuple[datetime, datetime]] = []
    for _, lo, hi in days:
        if spans and spans[-1][1] == lo:
            spans[-1] = (spans[-1][0], hi)
        else:
            spans.append((lo, hi))
    return spans


CALL_METRICS = (
    func.count(),
    _count_true(Call.unique),
    _count_true(Call.target),
    _count_true(Call.status.in_(MISSED)),
)


async def _calls(session: AsyncSession, s: _Scope, by_day: bool) -> dict[Any, Counts]:
    def scoped(query: AnySelect, lo: Any, hi: Any) -> AnySelect:
        query = query.where(Call.site_id == s.site_id, Call.started_at >= lo, Call.started_at < hi)
        return s.where(query, Call)

    if by_day:
        # Four sums per day: one join of days to their calls beats four lookups per day.
        d = s.day_table()
        query = scoped(
            select(d.c.n, *CALL_METRICS).select_from(d).join(Call, true()), d.c.lo, d.c.hi
        )
        grouped = await _by_label(session, query.group_by(d.c.n), 1, _call_counts)
        return {s.days[key[0]][0]: counts for key, counts in grouped.items()}
    keys = s.labels(Call)
    query = scoped(select(*keys, *CALL_METRICS), s.start, s.end).group_by(*keys)
    return await _by_label(session, query, len(keys), _call_counts)


def _spend_counts(amount: int, impressions: int, clicks: int) -> Counts:
    return Counts(spend=int(amount), impressions=int(impressions), clicks=int(clicks))


SPEND_METRICS = (func.sum(AdSpend.amount), func.sum(AdSpend.impressions), func.sum(AdSpend.clicks))


def _spend_scope(query: AnySelect, s: _Scope) -> AnySelect:
    query = query.where(
        AdSpend.site_id == s.site_id,
        AdSpend.spend_date >= s.params.first_day,
        AdSpend.spend_date <= s.params.last_day,
    )
    return s.where(query, AdSpend)


async def _spend(session: AsyncSession, s: _Scope, by_day: bool) -> dict[Any, Counts]:
    """Spend in the site's own currency (the others: _foreign_spend)."""
    # Spend is kept per local date already: no time zone arithmetic.
    keys: list[Any] = [AdSpend.spend_date] if by_day else s.labels(AdSpend)
    query = _spend_scope(select(*keys, *SPEND_METRICS), s).where(AdSpend.currency == s.currency)
    grouped = await _by_label(session, query.group_by(*keys), len(keys), _spend_counts)
    if by_day:
        return {as_date(k[0]): v for k, v in grouped.items()}
    return grouped


@dataclass
class _Foreign:
    by_label: dict[Key, Counts] = field(default_factory=dict)
    by_day: dict[date, Counts] = field(default_factory=dict)
    rates: list[model.RateUse] = field(default_factory=list)
    missing: list[model.MissingRate] = field(default_factory=list)


async def _foreign_spend(session: AsyncSession, s: _Scope) -> _Foreign:
    """Spend in other currencies, converted day by day at the rate table (reports/rates.py)."""
    out = _Foreign()
    if not s.currency:
        return out
    keys = s.labels(AdSpend)
    query = _spend_scope(
        select(*keys, AdSpend.currency, AdSpend.spend_date, *SPEND_METRICS), s
    ).where(AdSpend.currency != s.currency)
    rows = (
        await session.execute(query.group_by(*keys, AdSpend.currency, AdSpend.spend_date))
    ).all()
    if not rows:
        return out
    width = len(keys)
    book = rates.RateBook(
        await rates.load_rates(
            session,
            {r[width] for r in rows},
            s.currency,
            s.params.first_day,
            s.params.last_day,
        )
    )
    used: dict[tuple[str, date], list[date]] = {}  # (currency, rate day) -> spend days
    missing: dict[tuple[str, date], int] = {}
    sources: dict[tuple[str, date], rates.Rate] = {}
    for row in rows:
        key, currency, day = tuple(row[:width]), row[width], as_date(row[width + 1])
        amount, impressions, clicks = (int(v or 0) for v in row[width + 2 :])
        rate = book.rate_for(currency, day)
        spend = 0
        if rate is None:
            missing[(currency, day)] = missing.get((currency, day), 0) + amount
        else:
            spend = rates.convert(amount, rate)
            used.setdefault((currency, rate.day), []).append(day)
            sources[(currency, rate.day)] = rate
        counts = Counts(spend=spend, impressions=impressions, clicks=clicks)
        out.by_label[key] = out.by_label.get(key, Counts()) + counts
        out.by_day[day] = out.by_day.get(day, Counts()) + counts
    for (currency, rate_day), days in sorted(used.items()):
        rate = sources[(currency, rate_day)]
        out.rates.append(
            model.RateUse(currency, rate.rate, rate_day, min(days), max(days), rate.source)
        )
    out.missing = [
        model.MissingRate(currency, day, amount)
        for (currency, day), amount in sorted(missing.items())
        if amount
    ]
    return out


async def _unmapped(session: AsyncSession, s: _Scope) -> list[model.Unmapped]:
    """Pulled spend of the range without labels, per currency (adspend/ lists it in full)."""
    query = (
        select(
            PlatformSpend.currency,
            func.sum(PlatformSpend.cost),
            func.sum(PlatformSpend.impressions),
            func.sum(PlatformSpend.clicks),
            func.count(func.distinct(PlatformSpend.campaign_id)),
        )
        .join(AdAccount, AdAccount.id == PlatformSpend.account_id)
        .where(
            AdAccount.site_id == s.site_id,
            PlatformSpend.mapped.is_(False),
            PlatformSpend.spend_date >= s.params.first_day,
            PlatformSpend.spend_date <= s.params.last_day,
        )
        .group_by(PlatformSpend.currency)
        .order_by(PlatformSpend.currency)
    )
    return [
        model.Unmapped(currency, int(cost or 0), int(shows or 0), int(clicks or 0), int(n))
        for currency, cost, shows, clicks, n in (await session.execute(query)).all()
    ]


async def _revenue(session: AsyncSession, s: _Scope, by_day: bool) -> dict[Any, Counts]:
    # Won deals carry the labels and the start of what brought them (deal.attributed_at, the
    # matched call's or visit's), so a period's revenue is a range on the deal index and the
    # revenue sits on the day, and under the labels, of the call that brought it. Deals in
    # another currency than the site's are left out (the deals report shows them).
    def scoped(query: AnySelect, lo: Any, hi: Any) -> AnySelect:
        query = query.where(
            Deal.site_id == s.site_id,
            Deal.status == "won",
            Deal.attributed_at >= lo,
            Deal.attributed_at < hi,
            Deal.currency == s.currency,
        )
        return s.where(query, Deal)

    def build(amount: int) -> Counts:
        return Counts(revenue=int(amount))

    if by_day:
        d = s.day_table()
        total = select(func.sum(Deal.amount)).select_from(Deal)
        total_per_day = scoped(total, d.c.lo, d.c.hi).scalar_subquery()
        return await _by_day(session, s, d, [total_per_day], build)
    keys = s.labels(Deal)
    query = scoped(select(*keys, func.sum(Deal.amount)), s.start, s.end).group_by(*keys)
    return await _by_label(session, query, len(keys), build)


async def run_report(session: AsyncSession, site: Site, params: ReportParams) -> model.Report:
    tz = ZoneInfo(site.timezone)
    start, end = utc_bounds(tz, params.first_day, params.last_day)
    currency = await money.site_currency(session, site.id) or ""
    scope = _Scope(
        site_id=site.id,
        start=start,
        end=end,
        params=params,
        days=day_bounds(tz, params.first_day, params.last_day),
        tz=site.timezone,
        rolled=frozenset(
            await visit_rollup.rolled_days(
                session, site.id, site.timezone, params.first_day, params.last_day
            )
        ),
        currency=currency,
    )
    parts: list[dict[Key, Counts]] = []
    day_parts: list[dict[date, Counts]] = []
    for fetch in (_visits, _calls, _spend, _revenue):
        parts.append(await fetch(session, scope, False))
        day_parts.append(await fetch(session, scope, True))
    foreign = await _foreign_spend(session, scope)
    parts.append(foreign.by_label)
    day_parts.append(foreign.by_day)
    rows = model.sort_rows(model.merge(parts))
    by_day = model.merge(day_parts)
    return model.Report(
        site_key=site.key,
        timezone=site.timezone,
        currency=currency,
        first_day=params.first_day,
        last_day=params.last_day,
        level=params.level,
        filters=dict(params.filters),
        rows=rows,
        days=model.every_day(params.first_day, params.last_day, by_day),
        totals=model.total(rows),
        rates=foreign.rates,
        missing_rates=foreign.missing,
        unmapped=await _unmapped(session, scope),
    )
