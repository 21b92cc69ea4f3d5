"""The sales report (calls -> leads -> deals -> won, ROMI, the funnel) and the deals list."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Literal
from urllib.parse import urlencode

import msgspec
from aiohttp import web
from sqlalchemy import func, select

from calltracker.accounts.roles import Role
from calltracker.catalog import sites
from calltracker.db.deal_models import Deal
from calltracker.deals import report as deal_report
from calltracker.deals.matching import BASIS_TITLES, CONFIDENCE
from calltracker.errors import Invalid
from calltracker.keys import sessionmaker_key
from calltracker.reports import money
from calltracker.reports.model import LEVELS, label_cell
from calltracker.web import pages
from calltracker.web.auth import roles
from calltracker.web.bodies import api
from calltracker.web.reports import DEFAULT_DAYS, _site, local_today, parse_day


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/reports/deals", deals_page)
    r.add_get("/reports/deals.csv", deals_csv)
    r.add_get("/api/v1/reports/deals", deals_json)
    r.add_get("/api/v1/deals", list_deals)


def params_of(query: Mapping[str, str], today: date) -> deal_report.DealParams:
    """The report's range, grouping, filters and margin from a query string."""
    last = parse_day(query["to"], "to") if query.get("to") else today
    first = (
        parse_day(query["from"], "from")
        if query.get("from")
        else last - timedelta(days=DEFAULT_DAYS - 1)
    )
    margin = None
    if query.get("margin", "").strip():
        try:
            margin = Decimal(query["margin"].strip().rstrip("%"))
        except InvalidOperation:
            raise Invalid("margin must be a number, e.g. 0.35", code="invalid_field") from None
        if query["margin"].strip().endswith("%"):
            margin /= 100
    filters = {level: query[level] for level in LEVELS if level in query}
    return deal_report.DealParams(first, last, query.get("group") or "source", filters, margin)


async def _report(request: web.Request) -> deal_report.DealReport:
    async with request.app[sessionmaker_key]() as session:
        site = await _site(session, request.query.get("site"))
        params = params_of(request.query, local_today(site))
        return await deal_report.run(session, site, params)


@roles(Role.MARKETER)
@api()
async def deals_json(request: web.Request) -> deal_report.DealReportJson:
    """Calls, leads, deals, won, revenue and ROMI per label or manager, the match basis of
    every deal, and a funnel by stage: ?site=&from=&to=&group=&margin=."""
    return deal_report.to_json(await _report(request))


def _query(report: deal_report.DealReport, **changes: str | None) -> str:
    p = report.params
    params: dict[str, str] = {
        "site": report.site_key,
        "from": p.first_day.isoformat(),
        "to": p.last_day.isoformat(),
        "group": p.group,
        **p.filters,
    }
    if p.margin is not None:
        params["margin"] = str(p.margin)
    for name, value in changes.items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = value
    return "?" + urlencode(params)


def csv_text(report: deal_report.DealReport) -> str:
    header, body, footer = deal_report.table(report)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    # Labels come from visitors' UTM tags: a cell a spreadsheet would run as a formula is
    # written with a leading quote.
    writer.writerows(
        [[f"'{c}" if c[:1] in ("=", "+", "-", "@") and not _number(c) else c for c in line]
         for line in (header, *body, footer)]
    )  # fmt: skip
    return out.getvalue()


def _number(cell: str) -> bool:
    try:
        Decimal(cell.rstrip("%"))
    except InvalidOperation:
        return False
    return True


@roles(Role.MARKETER)
async def deals_csv(request: web.Request) -> web.Response:
    """The sales report's table as CSV, cell for cell."""
    report = await _report(request)
    p = report.params
    name = f"deals-{report.site_key}-{p.first_day}-{p.last_day}-{p.group}.csv"
    return web.Response(
        body=("\ufeff" + csv_text(report)).encode(),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@roles(Role.MARKETER)
async def deals_page(request: web.Request) -> web.Response:
    """The sales report page: range, grouping, the funnel per label, how deals were matched."""
    async with request.app[sessionmaker_key]() as session:
        all_sites = await sites.list_sites(session)
        if not all_sites:
            return pages.render(request, "reports/no_sites.html", {})
        site = await _site(session, request.query.get("site") or all_sites[0].key)
        params = params_of(request.query, local_today(site))
        report = await deal_report.run(session, site, params)
    header, body, footer = deal_report.table(report)
    levels = report.params.levels
    drill: list[str | None] = []
    for key, _ in report.rows:
        depth = LEVELS.index(report.params.group) if report.params.group in LEVELS else -1
        if 0 <= depth < len(LEVELS) - 1:
            path = dict(zip(LEVELS, key, strict=False))
            drill.append(_query(report, group=LEVELS[depth + 1], **path))
        else:
            drill.append(None)
    return pages.render(
        request,
        "reports/deals.html",
        {
            "title": "Deals and revenue",
            "report": report,
            "sites": all_sites,
            "header": header,
            "body": body,
            "footer": footer,
            "label_count": len(levels),
            "row_links": drill,
            "groups": deal_report.GROUPS,
            "group_links": [(g, _query(report, group=g)) for g in deal_report.GROUPS],
            "bases": [(BASIS_TITLES[b], CONFIDENCE[b], n) for b, n in report.bases.items() if n],
            "unmatched_revenue": money.major(report.unmatched_revenue),
            "other_currency": [(c, money.major(a)) for c, a in report.other_currency.items()],
            "csv_link": "/reports/deals.csv" + _query(report),
            "json_link": "/api/v1/reports/deals" + _query(report),
            "label_cell": label_cell,
        },
    )


# --- the deals themselves ---------------------------------------------------------------


class DealQuery(msgspec.Struct, frozen=True):
    site: str | None = None  # a site's key or id
    status: Literal["open", "won", "lost"] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    offset: Annotated[int, msgspec.Meta(ge=0)] = 0


class DealView(msgspec.Struct, frozen=True, kw_only=True):
    """One deal, with what it was matched to and how."""

    id: int
    site_id: int
    integration_id: int | None
    crm: str
    remote_id: str
    title: str
    pipeline: str
    stage: str
    status: str
    amount: float  # major units
    currency: str
    manager: str
    opened_at: datetime
    closed_at: datetime | None
    call_id: int | None
    visit_id: str | None
    match: str  # deals.matching.BASES
    confidence: Literal["exact", "probable", "none"]
    source: str
    medium: str
    campaign: str
    keyword: str


class DealList(msgspec.Struct, frozen=True):
    deals: list[DealView]
    total: int


def view(deal: Deal) -> DealView:
    return DealView(
        id=deal.id,
        site_id=deal.site_id,
        integration_id=deal.integration_id,
        crm=deal.crm,
        remote_id=deal.remote_id,
        title=deal.title,
        pipeline=deal.pipeline_name or deal.pipeline_id,
        stage=deal.stage_name or deal.stage_id,
        status=deal.status,
        amount=float(money.major(deal.amount)),
        currency=deal.currency,
        manager=deal.manager_name or deal.manager_id,
        opened_at=deal.opened_at,
        closed_at=deal.closed_at,
        call_id=deal.call_id,
        visit_id=deal.visit_id,
        match=deal.match,
        confidence=CONFIDENCE[deal.match],
        source=deal.source,
        medium=deal.medium,
        campaign=deal.campaign,
        keyword=deal.keyword,
    )


@roles(Role.MARKETER)
@api()
async def list_deals(request: web.Request, query: DealQuery) -> DealList:
    """Deals, newest first, each with the call it was matched to and the match basis."""
    async with request.app[sessionmaker_key]() as session:
        where = []
        if query.site:
            where.append(Deal.site_id == (await sites.get_site(session, query.site)).id)
        if query.status:
            where.append(Deal.status == query.status)
        total = await session.scalar(select(func.count()).select_from(Deal).where(*where))
        rows = await session.scalars(
            select(Deal)
            .where(*where)
            .order_by(Deal.opened_at.desc(), Deal.id.desc())
            .limit(query.limit)
            .offset(query.offset)
        )
        return DealList([view(d) for d in rows], int(total or 0))
