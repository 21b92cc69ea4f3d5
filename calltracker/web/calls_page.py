"""The calls list (all roles), the operator console, and recordings for the audio player."""

from __future__ import annotations

from datetime import date
from urllib.parse import urlencode

from aiohttp import web
from multidict import MultiMapping

from calltracker.accounts.roles import Role
from calltracker.catalog import sites
from calltracker.errors import Invalid
from calltracker.keys import sessionmaker_key
from calltracker.telephony import call_log
from calltracker.telephony.call_log import CallFilter
from calltracker.web import pages
from calltracker.web.auth import roles

FILTER_KEYS = (
    "site_id",
    "date_from",
    "date_to",
    "status",
    "source",
    "medium",
    "campaign",
    "attribution",
    "caller",
    "number",
    "operator",
    "unique",
    "target",
    "limit",
    "offset",
)


def _int(query: MultiMapping[str], name: str, default: int | None = None) -> int | None:
    raw = query.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise Invalid(f"{name} must be a whole number, got {raw!r}", code="invalid_field") from None


def _date(query: MultiMapping[str], name: str) -> date | None:
    raw = query.get(name, "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise Invalid(
            f"{name} must be a date like 2026-11-22, got {raw!r}", code="invalid_field"
        ) from None


def _text(query: MultiMapping[str], name: str) -> str | None:
    return query.get(name, "").strip() or None


def _flag(query: MultiMapping[str], name: str) -> bool:
    return query.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def parse_call_filter(query: MultiMapping[str]) -> CallFilter:
    """Read the calls list's filters from a query string (the page's and the API's)."""
    return CallFilter(
        site_id=_int(query, "site_id"),
        date_from=_date(query, "date_from"),
        date_to=_date(query, "date_to"),
        status=_text(query, "status"),
        source=_text(query, "source"),
        medium=_text(query, "medium"),
        campaign=_text(query, "campaign"),
        attribution=_text(query, "attribution"),
        caller=_text(query, "caller"),
        tracking_number=_text(query, "number"),
        operator=_text(query, "operator"),
        unique_only=_flag(query, "unique"),
        target_only=_flag(query, "target"),
        limit=_int(query, "limit", 50) or 50,
        offset=_int(query, "offset", 0) or 0,
    )


@roles(Role.MARKETER, Role.OPERATOR)
async def calls_page(request: web.Request) -> web.Response:
    try:
        f = parse_call_filter(request.query)
    except Invalid as err:
        return pages.render_error(request, 400, "Bad filter", err.message)
    async with request.app[sessionmaker_key]() as session:
        page = await call_log.list_calls(session, f)
        site_rows = await sites.list_sites(session)
        suggestions = {
            name: await call_log.distinct_values(session, name)
            for name in ("source", "medium", "campaign")
        }

    def query_for(**changes: object) -> str:
        params = {k: v for k, v in request.query.items() if k in FILTER_KEYS and v}
        params.update({k: str(v) for k, v in changes.items()})
        return urlencode(params)

    context = {
        "page": page,
        "f": f,
        "sites": site_rows,
        "statuses": call_log.STATUSES,
        "attributions": call_log.ATTRIBUTIONS,
        "suggestions": suggestions,
        "query_for": query_for,
    }
    return pages.render(request, "calls.html", context)
