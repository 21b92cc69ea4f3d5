"""Private JSON API for sites, pools and numbers (admin role)."""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from calltracker.catalog import sites
from calltracker.catalog.cache import pool_key
from calltracker.db.models import Pool, Site, TrackingNumber
from calltracker.errors import Invalid
from calltracker.keys import catalog_service_key, pools_key, sessionmaker_key


def site_json(site: Site) -> dict[str, Any]:
    return {
        "id": site.id,
        "key": site.key,
        "name": site.name,
        "domains": site.domains,
        "country": site.country,
        "timezone": site.timezone,
        "default_number": site.default_number,
        "pooled_mediums": site.pooled_mediums,
        "target_min_talk_seconds": site.target_min_talk_seconds,
        "unique_window_days": site.unique_window_days,
    }


def pool_json(pool: Pool) -> dict[str, Any]:
    return {
        "id": pool.id,
        "site_id": pool.site_id,
        "name": pool.name,
        "hold_seconds": pool.hold_seconds,
        "policy": pool.policy,
    }


def number_json(number: TrackingNumber) -> dict[str, Any]:
    return {
        "id": number.id,
        "number": number.number,
        "site_id": number.site_id,
        "kind": number.kind,
        "pool_id": number.pool_id,
        "source": number.source,
        "medium": number.medium,
        "campaign": number.campaign,
    }


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise Invalid(f"malformed JSON: {err}", code="malformed_json") from None
    if not isinstance(data, dict):
        raise Invalid("the body must be a JSON object", code="malformed_json")
    return data


def field(data: dict[str, Any], name: str, kind: type, default: Any = ...) -> Any:
    if name not in data:
        if default is ...:
            raise Invalid(f"{name} is required", code="invalid_field")
        return default
    value = data[name]
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise Invalid(f"{name} must be of type {kind.__name__}", code="invalid_field")
    return value


def str_list(data: dict[str, Any], name: str) -> list[str]:
    value = field(data, name, list, [])
    if not all(isinstance(v, str) for v in value):
        raise Invalid(f"{name} must be a list of strings", code="invalid_field")
    return list(value)


async def list_sites(request: web.Request) -> web.Response:
    async with request.app[sessionmaker_key]() as session:
        rows = await sites.list_sites(session)
    return web.json_response({"sites": [site_json(s) for s in rows]})


async def create_site(request: web.Request) -> web.Response:
    data = await json_body(request)
    site = await request.app[catalog_service_key].create_site(
        key=field(data, "key", str),
        name=field(data, "name", str, ""),
        domains=str_list(data, "domains"),
        default_number=field(data, "default_number", str),
        country=field(data, "country", str, None),
        timezone=field(data, "timezone", str, None),
        pooled_mediums=str_list(data, "pooled_mediums"),
    )
    return web.json_response(site_json(site), status=201)


async def get_site(request: web.Request) -> web.Response:
    async with request.app[sessionmaker_key]() as session:
        site = await sites.get_site(session, request.match_info["site"])
        pools = await sites.list_pools(session, site.id)
        numbers = await sites.list_numbers(session, site.id)
    body = site_json(site)
    body["pools"] = [pool_json(p) for p in pools]
    body["numbers"] = [number_json(n) for n in numbers]
    return web.json_response(body)


async def create_pool(request: web.Request) -> web.Response:
    data = await json_body(request)
    pool, added = await request.app[catalog_service_key].create_pool(
        request.match_info["site"],
        name=field(data, "name", str, None),
        hold_seconds=field(data, "hold_seconds", int, None),
        policy=field(data, "policy", str, None),
        numbers=str_list(data, "numbers"),
    )
    body = pool_json(pool)
    body["numbers"] = [n.number for n in added]
    return web.json_response(body, status=201)


async def add_pool_numbers(request: web.Request) -> web.Response:
    data = await json_body(request)
    added = await request.app[catalog_service_key].add_pool_numbers(
        int(request.match_info["pool"]), str_list(data, "numbers")
    )
    return web.json_response({"numbers": [number_json(n) for n in added]}, status=201)


async def pool_stats(request: web.Request) -> web.Response:
    async with request.app[sessionmaker_key]() as session:
        pool = await sites.get_pool(session, int(request.match_info["pool"]))
    stats = await request.app[pools_key].stats(pool_key(pool.id), time.time())
    return web.json_response(
        {
            "pool_id": pool.id,
            "size": stats.size,
            "leased": stats.leased,
            "utilisation": stats.utilisation,
            "peak_concurrent": stats.peak_concurrent,
            "exhaustion_count": stats.exhaustion_count,
            "recommended_size": stats.recommended_size,
        }
    )


async def add_static_number(request: web.Request) -> web.Response:
    data = await json_body(request)
    row = await request.app[catalog_service_key].add_static_number(
        request.match_info["site"],
        field(data, "number", str),
        source=field(data, "source", str),
        medium=field(data, "medium", str, None),
        campaign=field(data, "campaign", str, ""),
    )
    return web.json_response(number_json(row), status=201)


async def list_numbers(request: web.Request) -> web.Response:
    site_id = request.query.get("site_id")
    kind = request.query.get("kind")
    if site_id is not None and not site_id.isdigit():
        raise Invalid("site_id must be a number", code="invalid_field")
    async with request.app[sessionmaker_key]() as session:
        rows = await sites.list_numbers(session, int(site_id) if site_id else None, kind)
    return web.json_response({"numbers": [number_json(n) for n in rows]})
