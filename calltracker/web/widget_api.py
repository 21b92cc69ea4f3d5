"""The public visit API the widget calls: thin handlers with their own CORS policy."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from calltracker.errors import CalltrackerError, Invalid
from calltracker.keys import catalog_key, settings_key, visit_limiter_key, visits_key
from calltracker.tracking.visits import VisitRequest
from calltracker.web.auth import public
from calltracker.web.client_address import client_ip
from calltracker.web.errors import TooManyRequests, error_response, status_for

log = logging.getLogger(__name__)


class BodyTooLarge(Exception):
    pass


def origin_host(request: web.Request) -> str | None:
    origin = request.headers.get("Origin")
    if origin is None:
        return None  # not a cross-origin browser request (server-side client, same origin)
    host = urlsplit(origin).hostname
    return host or "null"


def check_rate(request: web.Request) -> None:
    if not request.app[visit_limiter_key].allow(client_ip(request)):
        raise TooManyRequests("too many requests from this client; slow down")


async def read_json(request: web.Request) -> dict[str, Any]:
    limit = request.app[settings_key].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge
    body = await request.content.read(limit + 1)
    if len(body) > limit:
        raise BodyTooLarge
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise Invalid(f"malformed JSON: {err}", code="malformed_json") from None
    if not isinstance(data, dict):
        raise Invalid("the body must be a JSON object", code="malformed_json")
    return data


def text_field(data: dict[str, Any], name: str, *, required: bool = False) -> str:
    value = data.get(name)
    if value is None:
        if required:
            raise Invalid(f"{name} is required", code="invalid_field")
        return ""
    if not isinstance(value, str):
        raise Invalid(f"{name} must be a string", code="invalid_field")
    return value.strip()


def with_cors(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    host = origin_host(request)
    if host is not None and _origin_allowed_anywhere(request, host):
        response.headers["Access-Control-Allow-Origin"] = request.headers["Origin"]
        response.headers["Vary"] = "Origin"
    return response


def _origin_allowed_anywhere(request: web.Request, host: str) -> bool:
    catalog = request.app[catalog_key].current
    return any(site.allows_origin(host) for site in catalog.sites_by_id.values())


async def _guarded(
    request: web.Request, call: Callable[[], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Run a handler body, answering errors as JSON that the page is allowed to read."""
    try:
        check_rate(request)
        response = await call()
    except BodyTooLarge:
        response = error_response(413, "too_large", "request body is too large")
    except CalltrackerError as err:
        response = error_response(status_for(err), err.code, err.message)
    except Exception:
        # Still answer with CORS headers: otherwise the browser reports a CORS error on the
        # customer's page instead of a failed request the widget quietly falls back from.
        log.exception("event=visit_api_error path=%s", request.path)
        response = error_response(500, "internal", "internal error; see the server log")
    return with_cors(request, response)


@public
async def create_visit(request: web.Request) -> web.StreamResponse:
    async def body() -> web.StreamResponse:
        data = await read_json(request)
        visitor_id = text_field(data, "visitor_id") or None
        result = await request.app[visits_key].start_visit(
            VisitRequest(
                site_key=text_field(data, "site_key", required=True),
                url=text_field(data, "url", required=True),
                visitor_id=visitor_id,
                referrer=text_field(data, "referrer"),
                ga_client_id=text_field(data, "ga_client_id"),
                ym_client_id=text_field(data, "ym_client_id"),
                user_agent=request.headers.get("User-Agent", ""),
                origin_host=origin_host(request),
            )
        )
        return web.json_response(result.to_json())

    return await _guarded(request, body)


@public
async def ping_visit(request: web.Request) -> web.StreamResponse:
    async def body() -> web.StreamResponse:
        data = await read_json(request)
        result = await request.app[visits_key].ping(
            request.match_info["visit_id"],
            text_field(data, "site_key", required=True),
            origin_host(request),
        )
        return web.json_response({"number": result.number, "ttl": result.ttl})

    return await _guarded(request, body)


@public
async def visit_event(request: web.Request) -> web.StreamResponse:
    async def body() -> web.StreamResponse:
        data = await read_json(request)
        await request.app[visits_key].record_event(
            request.match_info["visit_id"],
            text_field(data, "site_key", required=True),
            text_field(data, "type", required=True),
            origin_host(request),
        )
        return web.Response(status=204)

    return await _guarded(request, body)


@public
async def preflight(request: web.Request) -> web.StreamResponse:
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
