"""Marketer reports: the call-cost and ROI page, its JSON and CSV, spend and revenue imports."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import msgspec
from aiohttp import web
from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncSession

from calltracker.accounts.roles import Role
from calltracker.catalog import sites
from calltracker.db.models import Site
from calltracker.errors import Invalid
from calltracker.keys import sessionmaker_key
from calltracker.reports import conversions, model, money, rates, spend, svg
from calltracker.reports.model import LEVELS, NOT_SET, Report
from calltracker.reports.query import ReportParams, run_report
from calltracker.reports.rows import BadRows
from calltracker.web import pages
from calltracker.web.auth import roles
from calltracker.web.bodies import Refusal, Reply, api

DEFAULT_DAYS = 30
CHART_ROWS = 15  # the bar chart shows the channels with the most calls; the table has all
CSV_TYPES = frozenset({"text/csv", "application/csv", "text/plain"})
MAX_UPLOAD = 10 * 1024 * 1024


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/reports", report_page)
    r.add_get("/reports/calls.csv", report_csv)
    r.add_get("/reports/spend", spend_page)
    r.add_post("/reports/spend", spend_upload)
    r.add_get("/api/v1/reports/calls", report_json)
    r.add_get("/api/v1/spend", spend_json)
    r.add_post("/api/v1/spend", post_spend)
    r.add_post("/api/v1/conversions", post_conversions)


# --- parsing ----------------------------------------------------------------------------------


def parse_day(raw: str, name: str) -> date:
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        raise Invalid(
            f"{name} must be a date, YYYY-MM-DD; got {raw!r}", code="invalid_field"
        ) from None


def day_range(first: date | None, last: date | None, today: date) -> tuple[date, date]:
    """The days asked for; up to today and the 30 days before ``last`` unless given."""
    last = last or today
    return first or last - timedelta(days=DEFAULT_DAYS - 1), last


def report_params(query: Mapping[str, str], today: date) -> ReportParams:
    """The report's range, level and filters from a query string; defaults to the last 30 days."""
    first, last = day_range(
        parse_day(query["from"], "from") if query.get("from") else None,
        parse_day(query["to"], "to") if query.get("to") else None,
        today,
    )
    # A filter given empty (source=) selects the empty label, e.g. unattributed calls.
    filters = {level: query[level] for level in LEVELS if level in query}
    return ReportParams(first, last, query.get("group") or "source", filters)


def local_today(site: Site) -> date:
    return datetime.now(ZoneInfo(site.timezone)).date()


async def _site(session: AsyncSession, key: object) -> Site:
    if not isinstance(key, str | int) or isinstance(key, bool) or not str(key).strip():
        raise Invalid("site is required: the site's key or id", code="invalid_field")
    return await sites.get_site(session, str(key).strip())


async def _report(request: web.Request) -> Report:
    async with request.app[sessionmaker_key]() as session:
        site = await _site(session, request.query.get("site"))
        params = report_params(request.query, local_today(site))
        return await run_report(session, site, params)


class RowProblem(msgspec.Struct, frozen=True):
    line: int  # the CSV line (the header is line 1), or the JSON row's 1-based position
    reason: str


class BadRowsBody(msgspec.Struct, frozen=True):
    """An import refused as a whole: every bad line with its reason."""

    error: str
    message: str
    details: list[RowProblem]


def bad_rows(err: BadRows) -> Refusal:
    # The error middleware sends {error, message}; importers also need each line's reason.
    return Refusal(
        400,
        BadRowsBody(
            err.code, err.message, [RowProblem(e.line, e.reason) for e in err.errors[:1000]]
        ),
    )


async def upload_text(request: web.Request) -> tuple[str, dict[str, str]]:
    """A CSV body or a multipart form's `file` part, as text; plus the form's other fields."""
    fields: dict[str, str] = {}
    if request.content_type == "multipart/form-data":
        form = await request.post()
        upload = form.get("file")
        for name, value in form.items():
            if isinstance(value, str):
                fields[name] = value
        if not isinstance(upload, web.FileField):
            raise Invalid("choose a CSV file to upload", code="invalid_field")
        raw = upload.file.read(MAX_UPLOAD + 1)
    else:
        raw = await request.read()
    if len(raw) > MAX_UPLOAD:
        raise Invalid("the file is too large; split it in parts of at most 10 MB")
    try:
        return raw.decode("utf-8-sig"), fields
    except UnicodeDecodeError:
        try:
            # Excel on Windows in Russian saves "CSV" in cp1251.
            return raw.decode("cp1251"), fields
        except UnicodeDecodeError:
            raise Invalid("the file is not UTF-8 text", code="invalid_field") from None


# --- JSON API -----------------------------------------------------------------------------

SiteRef = str | int  # a site's key or id


class SpendInput(msgspec.Struct, frozen=True):
    """Ad spend rows for one site; each row is checked on its own and every bad one listed."""

    site: SiteRef | None = None  # else ?site=
    rows: Annotated[
        list[Any],
        msgspec.Meta(
            description=f"objects with {', '.join(spend.REQUIRED)}, optionally "
            f"{', '.join(spend.OPTIONAL)}; amount in major units"
        ),
    ] = []


class SpendImported(msgspec.Struct, frozen=True, kw_only=True):
    """What a spend import stored."""

    rows: int
    keys: int
    replaced: int  # keys that already had an amount, now overwritten
    currency: str
    currencies: list[str]  # of the imported rows; others than `currency` convert at the rates
    first_day: date = msgspec.field(name="from")
    last_day: date = msgspec.field(name="to")


class SpendRowJson(msgspec.Struct, frozen=True, kw_only=True):
    date: date
    source: str
    medium: str
    campaign: str
    keyword: str
    amount: float  # major units
    currency: str
    impressions: int
    clicks: int
    origin: str  # "import", or the ad account (adspend/) that pulled it: "ad_account:<id>"


class SpendList(msgspec.Struct, frozen=True, kw_only=True):
    """Stored ad spend of a site for a range of local days."""

    site: str
    first_day: date = msgspec.field(name="from")
    last_day: date = msgspec.field(name="to")
    rows: list[SpendRowJson]


class ConversionJson(msgspec.Struct, frozen=True, kw_only=True):
    deal_id: str
    id: int
    call_id: int | None  # the call the deal was matched to
    matched: bool
    created: bool  # false: the deal was known and is updated


class ConversionsRecorded(msgspec.Struct, frozen=True):
    """The deals stored, each with the call it was matched to."""

    conversions: list[ConversionJson]


# One deal object, {"site", "conversions": [...]}, or a bare list of deals.
ConversionsInput = dict[str, Any] | list[Any]
UPLOADS = ("text/csv", "multipart/form-data")


@roles(Role.MARKETER)
@api()
async def report_json(request: web.Request) -> model.ReportJson:
    """Calls, spend, CPL and ROI per label for ?site=&from=&to=&group=, with a by-day trend."""
    return model.report_json(await _report(request))


@roles(Role.MARKETER)
@api(accepts=UPLOADS, errors={400: BadRowsBody})
async def post_spend(request: web.Request, body: SpendInput | None) -> SpendImported:
    """Import ad spend: JSON {site, rows: [...]}, or a CSV body or upload with ?site=."""
    site_key: object = request.query.get("site")
    try:
        if body is not None:
            site_key = body.site if body.site is not None else site_key
            batch = spend.parse_json_rows(body.rows)
        elif request.content_type in CSV_TYPES | {"multipart/form-data"}:
            text, fields = await upload_text(request)
            site_key = fields.get("site", site_key)
            batch = spend.parse_csv(text)
        else:
            raise Invalid("send JSON, text/csv or a multipart upload", code="unsupported_type")
        async with request.app[sessionmaker_key].begin() as session:
            site = await _site(session, site_key)
            result = await spend.import_spend(session, site, batch)
    except BadRows as err:
        raise bad_rows(err) from None
    return SpendImported(
        rows=result.rows,
        keys=result.keys,
        replaced=result.replaced,
        currency=result.currency,
        currencies=list(result.currencies),
        first_day=result.first_day,
        last_day=result.last_day,
    )


@roles(Role.MARKETER)
@api()
async def spend_json(request: web.Request) -> SpendList:
    """Stored ad spend rows for ?site=&from=&to= (local dates)."""
    async with request.app[sessionmaker_key]() as session:
        site = await _site(session, request.query.get("site"))
        params = report_params(request.query, local_today(site))
        rows = await spend.list_spend(session, site.id, params.first_day, params.last_day)
    return SpendList(
        site=site.key,
        first_day=params.first_day,
        last_day=params.last_day,
        rows=[
            SpendRowJson(
                date=r.spend_date,
                source=r.source,
                medium=r.medium,
                campaign=r.campaign,
                keyword=r.keyword,
                amount=float(money.major(r.amount)),
                currency=r.currency,
                impressions=r.impressions,
                clicks=r.clicks,
                origin="import" if r.origin == 0 else f"ad_account:{r.origin}",
            )
            for r in rows
        ],
    )


@roles(Role.MARKETER)
@api(status=201, also=(200,), accepts=UPLOADS, errors={400: BadRowsBody})
async def post_conversions(
    request: web.Request, body: ConversionsInput | None
) -> Reply[ConversionsRecorded]:
    """A CRM's won deals: a deal object, a batch ({conversions: [...]}) or a CSV with ?site=.

    201 when a deal is new, 200 when every deal was known already.
    """
    site_key: object = request.query.get("site")
    try:
        async with request.app[sessionmaker_key].begin() as session:
            if body is not None:
                if isinstance(body, dict):
                    site_key = body.get("site", site_key)
                site = await _site(session, site_key)
                deals = conversions.parse_json(body, site)
            elif request.content_type in CSV_TYPES | {"multipart/form-data"}:
                text, fields = await upload_text(request)
                site = await _site(session, fields.get("site", site_key))
                deals = conversions.parse_csv(text, site)
            else:
                raise Invalid("send JSON, text/csv or a multipart upload", code="unsupported_type")
            recorded = await conversions.record_deals(session, site, deals)
    except BadRows as err:
        raise bad_rows(err) from None
    answer = ConversionsRecorded(
        [
            ConversionJson(
                deal_id=d.external_id,
                id=d.id,
                call_id=d.call_id,
                matched=d.call_id is not None,
                created=d.created,
            )
            for d in recorded
        ]
    )
    return Reply(answer, 201 if any(d.created for d in recorded) else 200)


# --- pages ----------------------------------------------------------------------------------


def csv_text(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows(model.table(report).lines())
    return out.getvalue()


@roles(Role.MARKETER)
async def report_csv(request: web.Request) -> web.Response:
    """The report page's table as CSV, cell for cell."""
    report = await _report(request)
    name = f"calls-{report.site_key}-{report.first_day}-{report.last_day}-{report.level}.csv"
    # The BOM lets Excel read the UTF-8 labels (Cyrillic campaigns, the dash) correctly.
    return web.Response(
        body=("\ufeff" + csv_text(report)).encode(),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _query(report: Report, **changes: str | None) -> str:
    """The page's query string for this report, with some parameters changed or dropped."""
    params: dict[str, str] = {
        "site": report.site_key,
        "from": report.first_day.isoformat(),
        "to": report.last_day.isoformat(),
        "group": report.level,
        **report.filters,
    }
    for name, value in changes.items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = value
    return "?" + urlencode(params)


def drill_link(report: Report, key: tuple[str, ...]) -> str | None:
    depth = LEVELS.index(report.level)
    if depth + 1 >= len(LEVELS):
        return None
    path = dict(zip(LEVELS, key, strict=False))
    return _query(report, group=LEVELS[depth + 1], **path)


def breadcrumbs(report: Report) -> list[tuple[str, str]]:
    """(text, link) from all sources down to the current filters."""
    crumbs = [("All sources", _query(report, group="source", **dict.fromkeys(LEVELS)))]
    for depth, level in enumerate(LEVELS[:-1]):
        if level not in report.filters:
            break
        keep = {name: report.filters[name] for name in LEVELS[: depth + 1]}
        drop = dict.fromkeys(LEVELS[depth + 1 :])
        crumbs.append(
            (
                model.label_cell(report.filters[level]),
                _query(report, group=LEVELS[depth + 1], **drop, **keep),
            )
        )
    return crumbs


def presets(report: Report, today: date) -> list[tuple[str, str]]:
    month_start = today.replace(day=1)
    prev_end = month_start - timedelta(days=1)
    ranges = [
        ("Last 7 days", today - timedelta(days=6), today),
        ("Last 30 days", today - timedelta(days=29), today),
        ("Last 90 days", today - timedelta(days=89), today),
        ("This month", month_start, today),
        ("Last month", prev_end.replace(day=1), prev_end),
    ]
    return [
        (label, _query(report, **{"from": first.isoformat(), "to": last.isoformat()}))
        for label, first, last in ranges
    ]


def charts(report: Report) -> tuple[str, str]:
    top = sorted(report.rows, key=lambda r: -r.counts.calls)[:CHART_ROWS]
    labels = [" / ".join(model.label_cell(v) for v in row.key) for row in top]
    bars = svg.bar_chart(
        labels,
        [
            svg.Series("Calls", [row.counts.calls for row in top]),
            svg.Series("Target calls", [row.counts.target_calls for row in top]),
        ],
        title=f"Calls by {report.level}",
    )
    lines = svg.line_chart(
        [d.day for d in report.days],
        [
            svg.Series("Calls", [d.counts.calls for d in report.days]),
            svg.Series("Target calls", [d.counts.target_calls for d in report.days]),
        ],
        title="Calls by day",
    )
    return bars, lines


@roles(Role.MARKETER)
async def report_page(request: web.Request) -> web.Response:
    """The report page: range picker, charts, drill-down table."""
    async with request.app[sessionmaker_key]() as session:
        all_sites = await sites.list_sites(session)
        if not all_sites:
            return pages.render(request, "reports/no_sites.html", {})
        site = await _site(session, request.query.get("site") or all_sites[0].key)
        today = local_today(site)
        params = report_params(request.query, today)
        report = await run_report(session, site, params)
    table = model.table(report)
    bars, lines = charts(report)
    rate_notes = [
        f"Spend in {r.currency} converted at 1 {r.currency} = {rates.rate_text(r.rate)} "
        f"{report.currency} of {r.rate_day.isoformat()}"
        + (f" ({r.source})" if r.source else "")
        + f" for {r.first_day.isoformat()}"
        + (f" to {r.last_day.isoformat()}" if r.last_day != r.first_day else "")
        for r in report.rates
    ]
    missing = [
        f"{money.major(m.amount)} {m.currency} on {m.day.isoformat()}" for m in report.missing_rates
    ]
    unmapped = [
        f"{money.major(u.amount)} {u.currency} from {u.campaigns} campaign(s)"
        for u in report.unmapped
    ]
    return pages.render(
        request,
        "reports/calls.html",
        {
            "title": "Calls, cost and ROI",
            "report": report,
            "sites": all_sites,
            "table": table,
            "row_links": [drill_link(report, row.key) for row in report.rows],
            "label_count": len(report.label_levels),
            "breadcrumbs": breadcrumbs(report),
            "presets": presets(report, today),
            "csv_link": "/reports/calls.csv" + _query(report),
            "json_link": "/api/v1/reports/calls" + _query(report),
            # svg.py escapes every label it draws, so its markup is safe to insert as is.
            "bar_chart": Markup(bars),
            "line_chart": Markup(lines),
            "levels": LEVELS,
            "not_set": NOT_SET,
            "rate_notes": rate_notes,
            "missing_rates": missing,
            "unmapped": unmapped,
            "unmapped_link": "/reports/spend/unmapped"
            + _query(report, group=None, **dict.fromkeys(LEVELS)),
        },
    )


async def _spend_page(
    request: web.Request, session: AsyncSession, site: Site, extra: Mapping[str, Any]
) -> web.Response:
    recent = await spend.latest_spend(session, site.id)
    all_sites = await sites.list_sites(session)
    context = {
        "title": "Ad spend",
        "site": site,
        "sites": all_sites,
        "recent": [(r, money.major(r.amount)) for r in recent],
        "columns": ", ".join(spend.REQUIRED + spend.OPTIONAL),
        "result": None,
        "errors": [],
        **extra,
    }
    return pages.render(
        request, "reports/spend.html", context, status=400 if extra.get("errors") else 200
    )


@roles(Role.MARKETER)
async def spend_page(request: web.Request) -> web.Response:
    """The spend import page: upload form and the latest imported rows."""
    async with request.app[sessionmaker_key]() as session:
        all_sites = await sites.list_sites(session)
        if not all_sites:
            return pages.render(request, "reports/no_sites.html", {})
        site = await _site(session, request.query.get("site") or all_sites[0].key)
        return await _spend_page(request, session, site, {})


@roles(Role.MARKETER)
async def spend_upload(request: web.Request) -> web.Response:
    """The spend page's upload form: the same import as POST /api/v1/spend, shown as a page."""
    text, fields = await upload_text(request)
    async with request.app[sessionmaker_key]() as session:
        site = await _site(session, fields.get("site"))
    try:
        batch = spend.parse_csv(text)
        async with request.app[sessionmaker_key].begin() as session:
            result = await spend.import_spend(session, site, batch)
    except BadRows as err:
        async with request.app[sessionmaker_key]() as session:
            return await _spend_page(request, session, site, {"errors": err.errors})
    async with request.app[sessionmaker_key]() as session:
        return await _spend_page(request, session, site, {"result": result})
