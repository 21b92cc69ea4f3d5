"""The public visit API the widget calls: thin handlers with their own CORS policy."""

from __future__ import annotations

import functools
import logging
from urllib.parse import urlsplit

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

from calltracker.errors import CalltrackerError
from calltracker.keys import catalog_key, visit_limiter_key, visits_key
from calltracker.tracking.visits import PingResult, VisitRequest, VisitResult
from calltracker.web.auth import public
from calltracker.web.bodies import api, described
from calltracker.web.client_address import client_ip
from calltracker.web.errors import TooManyRequests, error_response, status_for

log = logging.getLogger(__name__)


class PingBody(msgspec.Struct, frozen=True):
    """A ping: the site whose number the visit keeps."""

    site_key: str


class EventBody(msgspec.Struct, frozen=True):
    """A page signal: the site, and what happened ("phone_click")."""

    site_key: str
    type: str


def origin_host(request: web.Request) -> str | None:
    origin = request.headers.get("Origin")
    if origin is None:
        return None  # not a cross-origin browser request (server-side client, same origin)
    host = urlsplit(origin).hostname
    return host or "null"


def check_rate(request: web.Request) -> None:
    if not request.app[visit_limiter_key].allow(client_ip(request)):
        raise TooManyRequests("too many requests from this client; slow down")


def with_cors(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    host = origin_host(request)
    if host is not None and _origin_allowed_anywhere(request, host):
        response.headers["Access-Control-Allow-Origin"] = request.headers["Origin"]
        response.headers["Vary"] = "Origin"
    return response


def _origin_allowed_anywhere(request: web.Request, host: str) -> bool:
    catalog = request.app[catalog_key].current
    return any(site.allows_origin(host) for site in catalog.sites_by_id.values())


def guarded(handler: Handler) -> Handler:
    """Rate limit a visit API route and answer its errors as JSON the page may read."""

    @functools.wraps(handler)
    async def run(request: web.Request) -> web.StreamResponse:
        try:
            check_rate(request)
            response = await handler(request)
        except CalltrackerError as err:
            response = error_response(status_for(err), err.code, err.message)
        except Exception:
            # Still answer with CORS headers: otherwise the browser reports a CORS error on
            # the customer's page instead of a failed request the widget quietly falls back from.
            log.exception("event=visit_api_error path=%s", request.path)
            response = error_response(500, "internal", "internal error; see the server log")
        return with_cors(request, response)

    return run


@public
@guarded
@api(small=True)
async def create_visit(request: web.Request, body: VisitRequest) -> VisitResult:
    """Start a visit: classify the source and lease a number (the widget calls it)."""
    return await request.app[visits_key].start_visit(
        body,
        user_agent=request.headers.get("User-Agent", ""),
        origin_host=origin_host(request),
    )


@public
@guarded
@api(small=True)
async def ping_visit(request: web.Request, body: PingBody) -> PingResult:
    """Keep the visit's number while the page is open."""
    return await request.app[visits_key].ping(
        request.match_info["visit_id"], body.site_key.strip(), origin_host(request)
    )


@public
@guarded
@api(small=True)
async def visit_event(request: web.Request, body: EventBody) -> None:
    """Record a page signal such as a click on a tel: link."""
    await request.app[visits_key].record_event(
        request.match_info["visit_id"],
        body.site_key.strip(),
        body.type.strip(),
        origin_host(request),
    )


@public
@described(204)
async def preflight(request: web.Request) -> web.StreamResponse:
    """CORS preflight for the sites' origins."""
    response = web.Response(status=204)
    host = origin_host(request)
    if host is not None and _origin_allowed_anywhere(request, host):
        response.headers.update(
            {
                "Access-Control-Allow-Origin": request.headers["Origin"],
                "Access-Control-Allow-Methods": "POST, OPTIONS",
                "Access-Control-Allow-Headers": "Content-Type",
                "Access-Control-Max-Age": "86400",
                "Vary": "Origin",
            }
        )
    return response
