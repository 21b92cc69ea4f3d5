"""The sales report: calls -> leads -> deals -> won, revenue, ROMI, by label or manager, with
how each deal was matched; and a funnel by stage.

A period's deals are the deals its calls (or visits) brought: matched deals whose
``attributed_at`` falls in the period, so a row compares a channel's spend with what that
channel's calls became, however long the deals took to close. Deals nobody could match count
under no label; the totals say how many there were.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from calltracker.clock import utc_bounds
from calltracker.db.deal_models import CrmLink, CrmStage, Deal, DealStage
from calltracker.db.models import Call, Site
from calltracker.db.report_models import AdSpend
from calltracker.deals.matching import BASES, CONFIDENCE
from calltracker.errors import Invalid
from calltracker.reports import money
from calltracker.reports.model import (
    DASH,
    LEVEL_TITLES,
    LEVELS,
    label_cell,
    money_cell,
    percent_cell,
    ratio,
)

GROUPS = (*LEVELS, "manager")
MAX_DAYS = 731

Key = tuple[str, ...]


@dataclass(frozen=True)
class DealParams:
    first_day: date
    last_day: date
    group: str = "source"
    filters: Mapping[str, str] = field(default_factory=dict)
    margin: Decimal | None = None  # gross margin, a fraction: ROI counts revenue x margin

    def __post_init__(self) -> None:
        if self.group not in GROUPS:
            raise Invalid(f"group must be one of {', '.join(GROUPS)}", code="invalid_field")
        unknown = set(self.filters) - set(LEVELS)
        if unknown:
            raise Invalid(f"unknown filter(s): {', '.join(sorted(unknown))}", code="invalid_field")
        if self.last_day < self.first_day:
            raise Invalid("'to' is before 'from'", code="invalid_field")
        if (self.last_day - self.first_day).days >= MAX_DAYS:
            raise Invalid(f"a report covers at most {MAX_DAYS} days", code="invalid_field")
        if self.margin is not None and not Decimal(0) < self.margin <= Decimal(1):
            raise Invalid("margin must be a fraction above 0 and at most 1", code="invalid_field")

    @property
    def levels(self) -> tuple[str, ...]:
        if self.group == "manager":
            return ("manager",)
        return LEVELS[: LEVELS.index(self.group) + 1]


@dataclass
class Tally:
    """What adds up in a row; money in minor units. ``calls``/``leads`` are None by manager."""

    calls: int | None = 0
    leads: int | None = 0
    deals: int = 0
    won: int = 0
    lost: int = 0
    revenue: int = 0
    spend: int | None = 0
    exact: int = 0  # deals matched for sure (own id, phone sent, click id, named call)
    probable: int = 0  # deals matched by phone within the window, or by their UTM tags only
    revenue_probable: int = 0  # the part of revenue from probable matches

    def add_deal(self, deal: Deal, *, counts_revenue: bool) -> None:
        self.deals += 1
        if CONFIDENCE[deal.match] == "exact":
            self.exact += 1
        else:
            self.probable += 1
        if deal.status == "won":
            self.won += 1
            if counts_revenue:
                self.revenue += deal.amount
                if CONFIDENCE[deal.match] != "exact":
                    self.revenue_probable += deal.amount
        elif deal.status == "lost":
            self.lost += 1

    def plus(self, other: Tally) -> Tally:
        def both(a: int | None, b: int | None) -> int | None:
            return None if a is None or b is None else a + b

        return Tally(
            both(self.calls, other.calls),
            both(self.leads, other.leads),
            self.deals + other.deals,
            self.won + other.won,
            self.lost + other.lost,
            self.revenue + other.revenue,
            both(self.spend, other.spend),
            self.exact + other.exact,
            self.probable + other.probable,
            self.revenue_probable + other.revenue_probable,
        )


def _ratio(a: int | None, b: int | None) -> Decimal | None:
    return None if a is None or b is None else ratio(a, b)


def lead_rate(t: Tally) -> Decimal | None:
    return _ratio(t.leads, t.calls)


def deal_rate(t: Tally) -> Decimal | None:
    return _ratio(t.deals, t.leads)


def win_rate(t: Tally) -> Decimal | None:
    return ratio(t.won, t.deals)


def average_deal(t: Tally) -> Decimal | None:
    """Revenue per won deal, major units."""
    return ratio(t.revenue, t.won * money.MINOR_PER_MAJOR)


def romi(t: Tally) -> Decimal | None:
    """(revenue - spend) / spend: what each unit of ad money brought back, above itself."""
    return None if not t.spend else ratio(t.revenue - t.spend, t.spend)


def roi(t: Tally, margin: Decimal | None) -> Decimal | None:
    """(revenue x margin - spend) / spend: the return on profit; needs the margin."""
    if margin is None or not t.spend:
        return None
    return (Decimal(t.revenue) * margin - t.spend) / Decimal(t.spend)


@dataclass(frozen=True)
class FunnelStage:
    pipeline: str
    stage: str
    status: str
    reached: int  # the period's deals that got this far
    now: int  # ... and are there now


@dataclass(frozen=True)
class DealReport:
    site_key: str
    timezone: str
    currency: str
    params: DealParams
    rows: Sequence[tuple[Key, Tally]]
    totals: Tally
    bases: Mapping[str, int]  # the period's deals by match basis, "none" included
    unmatched_revenue: int  # won, unmatched, opened in the period: in no row
    other_currency: Mapping[str, int]  # won amounts left out of revenue, by currency
    funnel: Sequence[FunnelStage]


def _labels(entity: Any, levels: Sequence[str]) -> list[Any]:
    return [getattr(entity, name) for name in levels]


def _filtered(query: Any, entity: Any, params: DealParams) -> Any:
    for name, value in params.filters.items():
        query = query.where(getattr(entity, name) == value)
    return query


async def run(session: AsyncSession, site: Site, params: DealParams) -> DealReport:
    tz = ZoneInfo(site.timezone)
    start, end = utc_bounds(tz, params.first_day, params.last_day)
    currency = await money.site_currency(session, site.id) or ""
    by_manager = params.group == "manager"
    rows: dict[Key, Tally] = defaultdict(
        lambda: Tally(None, None, spend=None) if by_manager else Tally()
    )
    if not by_manager:
        await _calls_and_leads(session, site.id, params, start, end, rows)
        await _spend(session, site.id, params, rows)
    deals = list(
        await session.scalars(
            _filtered(
                select(Deal).where(
                    Deal.site_id == site.id,
                    Deal.attributed_at >= start,
                    Deal.attributed_at < end,
                ),
                Deal,
                params,
            )
        )
    )
    other: Counter[str] = Counter()
    bases: Counter[str] = Counter()
    for deal in deals:
        bases[deal.match] += 1
        counts = deal.currency == currency
        if deal.status == "won" and not counts:
            other[deal.currency or "?"] += deal.amount
        key: Key = (
            (deal.manager_name or (f"user {deal.manager_id}" if deal.manager_id else ""),)
            if by_manager
            else tuple(_labels(deal, params.levels))
        )
        rows[key].add_deal(deal, counts_revenue=counts)
    unmatched = await _unmatched(session, site.id, start, end, currency)
    bases["none"] += unmatched[0]
    ordered = sorted(rows.items(), key=lambda kv: (-(kv[1].calls or 0), -kv[1].deals, kv[0]))
    totals = Tally(None, None, spend=None) if by_manager else Tally()
    for _, tally in ordered:
        totals = totals.plus(tally)
    return DealReport(
        site_key=site.key,
        timezone=site.timezone,
        currency=currency,
        params=params,
        rows=ordered,
        totals=totals,
        bases={b: bases.get(b, 0) for b in BASES},
        unmatched_revenue=unmatched[1],
        other_currency=dict(other),
        funnel=await _funnel(session, deals),
    )


async def _calls_and_leads(
    session: AsyncSession,
    site_id: int,
    params: DealParams,
    start: datetime,
    end: datetime,
    rows: dict[Key, Tally],
) -> None:
    keys = _labels(Call, params.levels)
    scope = [Call.site_id == site_id, Call.started_at >= start, Call.started_at < end]
    calls = _filtered(select(*keys, func.count()).where(*scope), Call, params).group_by(*keys)
    for row in (await session.execute(calls)).all():
        rows[tuple(row[:-1])].calls = int(row[-1])
    # A lead is a call our outbox made (or found) a CRM lead or deal for.
    linked = select(CrmLink.call_id).where(CrmLink.entity.in_(("lead", "deal")))
    leads = _filtered(
        select(*keys, func.count(distinct(Call.id))).where(*scope, Call.id.in_(linked)),
        Call,
        params,
    ).group_by(*keys)
    for row in (await session.execute(leads)).all():
        rows[tuple(row[:-1])].leads = int(row[-1])


async def _spend(
    session: AsyncSession, site_id: int, params: DealParams, rows: dict[Key, Tally]
) -> None:
    currency = await money.site_currency(session, site_id)
    keys = _labels(AdSpend, params.levels)
    query = _filtered(
        select(*keys, func.sum(AdSpend.amount)).where(
            AdSpend.site_id == site_id,
            AdSpend.spend_date >= params.first_day,
            AdSpend.spend_date <= params.last_day,
            AdSpend.currency == (currency or ""),
        ),
        AdSpend,
        params,
    ).group_by(*keys)
    for row in (await session.execute(query)).all():
        rows[tuple(row[:-1])].spend = int(row[-1] or 0)


async def _unmatched(
    session: AsyncSession, site_id: int, start: datetime, end: datetime, currency: str
) -> tuple[int, int]:
    """Deals opened in the period that nothing ties to a call: (how many, won revenue)."""
    count = await session.scalar(
        select(func.count()).where(
            Deal.site_id == site_id,
            Deal.match == "none",
            Deal.opened_at >= start,
            Deal.opened_at < end,
        )
    )
    won = await session.scalar(
        select(func.sum(Deal.amount)).where(
            Deal.site_id == site_id,
            Deal.match == "none",
            Deal.status == "won",
            Deal.currency == currency,
            Deal.opened_at >= start,
            Deal.opened_at < end,
        )
    )
    return int(count or 0), int(won or 0)


async def _funnel(session: AsyncSession, deals: Sequence[Deal]) -> list[FunnelStage]:
    """Per pipeline stage, in the CRM's order: how many of the deals reached it, and are
    there now. A deal reached every open stage up to the furthest it has been at."""
    if not deals:
        return []
    ids = [d.id for d in deals]
    history: dict[int, set[str]] = defaultdict(set)
    for chunk in range(0, len(ids), 500):
        for deal_id, stage_id in (
            await session.execute(
                select(DealStage.deal_id, DealStage.stage_id).where(
                    DealStage.deal_id.in_(ids[chunk : chunk + 500])
                )
            )
        ).all():
            history[deal_id].add(stage_id)
    integrations = {d.integration_id for d in deals if d.integration_id is not None}
    catalog: dict[tuple[int, str], list[CrmStage]] = defaultdict(list)
    if integrations:
        for stage in await session.scalars(
            select(CrmStage)
            .where(CrmStage.integration_id.in_(integrations))
            .order_by(CrmStage.sort, CrmStage.id)
        ):
            catalog[(stage.integration_id, stage.pipeline_id)].append(stage)
    funnel: list[FunnelStage] = []
    groups: dict[tuple[int, str], list[Deal]] = defaultdict(list)
    for deal in deals:
        if deal.integration_id is not None:
            groups[(deal.integration_id, deal.pipeline_id)].append(deal)
    for key, members in sorted(groups.items()):
        stages = catalog.get(key)
        if not stages:
            continue
        order = {s.stage_id: n for n, s in enumerate(stages)}
        furthest = {}
        for deal in members:
            seen = [order[s] for s in history[deal.id] | {deal.stage_id} if s in order]
            open_or_won = [n for n in seen if stages[n].status != "lost"]
            furthest[deal.id] = max(open_or_won, default=-1)
        for n, stage in enumerate(stages):
            if stage.status == "lost":
                reached = sum(1 for d in members if d.stage_id == stage.stage_id)
            else:
                reached = sum(1 for d in members if furthest[d.id] >= n)
            now = sum(1 for d in members if d.stage_id == stage.stage_id)
            funnel.append(
                FunnelStage(stage.pipeline_name or key[1], stage.name, stage.status, reached, now)
            )
    return funnel


# --- the table (page and CSV) -----------------------------------------------------------

TITLES = (
    "Calls",
    "Leads",
    "Call→lead",
    "Deals",
    "Lead→deal",
    "Won",
    "Deal→won",
    "Lost",
    "Revenue",
    "Average deal",
    "Spend",
    "ROMI",
    "ROI",
    "Exact matches",
    "Probable matches",
    "Revenue from probable",
)
MONEY = ("Revenue", "Average deal", "Spend", "Revenue from probable")


def _count(value: int | None) -> str:
    return DASH if value is None else str(value)


def cells(t: Tally, margin: Decimal | None) -> list[str]:
    return [
        _count(t.calls),
        _count(t.leads),
        percent_cell(lead_rate(t)),
        str(t.deals),
        percent_cell(deal_rate(t)),
        str(t.won),
        percent_cell(win_rate(t)),
        str(t.lost),
        money_cell(t.revenue),
        money_cell(average_deal(t), minor=False),
        DASH if t.spend is None else money_cell(t.spend),
        percent_cell(romi(t)),
        percent_cell(roi(t, margin)),
        str(t.exact),
        str(t.probable),
        money_cell(t.revenue_probable),
    ]


def table(report: DealReport) -> tuple[list[str], list[list[str]], list[str]]:
    levels = report.params.levels
    suffix = f", {report.currency}" if report.currency else ""
    header = [LEVEL_TITLES.get(level, "Manager") for level in levels] + [
        f"{t}{suffix}" if t in MONEY else t for t in TITLES
    ]
    margin = report.params.margin
    body = [[label_cell(v) for v in key] + cells(t, margin) for key, t in report.rows]
    footer = ["Total"] + [""] * (len(levels) - 1) + cells(report.totals, margin)
    return header, body, footer


# --- JSON -------------------------------------------------------------------------------


def _num(value: Decimal | None, places: str = "0.0001") -> float | None:
    return None if value is None else float(value.quantize(Decimal(places)))


class DealMetrics(msgspec.Struct, frozen=True, kw_only=True):
    """A row's figures: money in major units; null where a figure has no meaning (a dash)."""

    calls: int | None  # null when grouped by manager: calls have no CRM manager
    leads: int | None
    lead_rate: float | None  # leads per call
    deals: int
    deal_rate: float | None  # deals per lead
    won: int
    win_rate: float | None  # won per deal
    lost: int
    revenue: float
    average_deal: float | None
    spend: float | None
    romi: float | None  # (revenue - spend) / spend
    roi: float | None  # (revenue x margin - spend) / spend, with ?margin=
    exact: int  # deals matched for sure
    probable: int  # deals matched by phone in the window or by UTM tags only
    revenue_probable: float  # revenue of the probable ones


class DealRow(DealMetrics, frozen=True, kw_only=True):
    source: str | msgspec.UnsetType = msgspec.UNSET
    medium: str | msgspec.UnsetType = msgspec.UNSET
    campaign: str | msgspec.UnsetType = msgspec.UNSET
    keyword: str | msgspec.UnsetType = msgspec.UNSET
    manager: str | msgspec.UnsetType = msgspec.UNSET


class BasisCount(msgspec.Struct, frozen=True):
    basis: str
    confidence: Literal["exact", "probable", "none"]
    deals: int


class StageCount(msgspec.Struct, frozen=True):
    pipeline: str
    stage: str
    status: str
    reached: int
    now: int


class MoneyIn(msgspec.Struct, frozen=True):
    currency: str
    amount: float


class DealReportJson(msgspec.Struct, frozen=True, kw_only=True):
    """GET /api/v1/reports/deals: the sales funnel per label or manager, and how sure it is."""

    site: str
    timezone: str
    currency: str | None
    first_day: date = msgspec.field(name="from")
    last_day: date = msgspec.field(name="to")
    group: Literal["source", "medium", "campaign", "keyword", "manager"]
    filters: dict[str, str]
    margin: float | None
    rows: list[DealRow]
    totals: DealMetrics
    matches: list[BasisCount]  # the period's deals by how they were matched
    unmatched_revenue: float  # won deals opened in the period that no call or visit explains
    other_currencies: list[MoneyIn]  # won amounts left out of revenue: not the site's currency
    funnel: list[StageCount]


def metrics(t: Tally, margin: Decimal | None) -> DealMetrics:
    return DealMetrics(
        calls=t.calls,
        leads=t.leads,
        lead_rate=_num(lead_rate(t)),
        deals=t.deals,
        deal_rate=_num(deal_rate(t)),
        won=t.won,
        win_rate=_num(win_rate(t)),
        lost=t.lost,
        revenue=float(money.major(t.revenue)),
        average_deal=_num(average_deal(t), "0.01"),
        spend=None if t.spend is None else float(money.major(t.spend)),
        romi=_num(romi(t)),
        roi=_num(roi(t, margin)),
        exact=t.exact,
        probable=t.probable,
        revenue_probable=float(money.major(t.revenue_probable)),
    )


def to_json(report: DealReport) -> DealReportJson:
    p = report.params
    levels = p.levels
    return DealReportJson(
        site=report.site_key,
        timezone=report.timezone,
        currency=report.currency or None,
        first_day=p.first_day,
        last_day=p.last_day,
        group=p.group,  # type: ignore[arg-type]  # checked by DealParams
        filters=dict(p.filters),
        margin=None if p.margin is None else float(p.margin),
        rows=[
            msgspec.convert(
                dict(zip(levels, key, strict=True)) | msgspec.structs.asdict(metrics(t, p.margin)),
                DealRow,
            )
            for key, t in report.rows
        ],
        totals=metrics(report.totals, p.margin),
        matches=[BasisCount(b, CONFIDENCE[b], n) for b, n in report.bases.items()],
        unmatched_revenue=float(money.major(report.unmatched_revenue)),
        other_currencies=[
            MoneyIn(c, float(money.major(a))) for c, a in sorted(report.other_currency.items())
        ],
        funnel=[StageCount(s.pipeline, s.stage, s.status, s.reached, s.now) for s in report.funnel],
    )
