"""The calls list (all roles), the operator console, and recordings for the audio player."""

from __future__ import annotations

from datetime import date
from typing import Annotated
from urllib.parse import urlencode

import msgspec
from aiohttp import web

from calltracker.accounts.roles import Role
from calltracker.catalog import sites
from calltracker.errors import Invalid
from calltracker.keys import sessionmaker_key
from calltracker.telephony import call_log
from calltracker.telephony.call_log import CallFilter
from calltracker.web import pages
from calltracker.web.auth import roles
from calltracker.web.bodies import read_query


class CallQuery(msgspec.Struct, frozen=True, kw_only=True):
    """The calls list's filters, as the page's form and GET /api/v1/calls take them."""

    site_id: int | None = None
    date_from: Annotated[
        date | None, msgspec.Meta(description="inclusive, in the site's time zone")
    ] = None
    date_to: Annotated[date | None, msgspec.Meta(description="inclusive")] = None
    status: Annotated[str | None, msgspec.Meta(description=" | ".join(call_log.STATUSES))] = None
    source: str | None = None
    medium: str | None = None
    campaign: str | None = None
    attribution: Annotated[
        str | None, msgspec.Meta(description=" | ".join(call_log.ATTRIBUTIONS))
    ] = None
    caller: Annotated[
        str | None, msgspec.Meta(description="digits the caller's number contains")
    ] = None
    number: Annotated[
        str | None, msgspec.Meta(description="the tracking number dialled, E.164")
    ] = None
    operator: str | None = None
    unique: bool = False
    target: bool = False
    limit: Annotated[int, msgspec.Meta(description=f"1..{call_log.MAX_PAGE}")] = 50
    offset: int = 0

    def filter(self) -> CallFilter:
        return CallFilter(
            site_id=self.site_id,
            date_from=self.date_from,
            date_to=self.date_to,
            status=self.status,
            source=self.source,
            medium=self.medium,
            campaign=self.campaign,
            attribution=self.attribution,
            caller=self.caller,
            tracking_number=self.number,
            operator=self.operator,
            unique_only=self.unique,
            target_only=self.target,
            limit=self.limit,
            offset=self.offset,
        )


FILTER_KEYS = CallQuery.__struct_fields__


@roles(Role.MARKETER, Role.OPERATOR)
async def calls_page(request: web.Request) -> web.Response:
    try:
        f = read_query(request, CallQuery).filter()
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
