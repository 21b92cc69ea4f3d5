"""Private JSON API for sites, pools and numbers (admin role)."""

from __future__ import annotations

import time
from typing import Annotated, Literal

import msgspec
from aiohttp import web

from calltracker.catalog import sites
from calltracker.catalog.cache import pool_key
from calltracker.db.models import Pool, Site, TrackingNumber
from calltracker.keys import catalog_service_key, pools_key, sessionmaker_key
from calltracker.web.bodies import api
from number_pool import ExhaustionPolicy

# -- what the API answers -----------------------------------------------------------------


class SiteView(msgspec.Struct, frozen=True, kw_only=True):
    """A tracked website."""

    id: int
    key: str  # the widget's site_key
    name: str
    domains: list[str]
    country: str  # ISO 3166 region: how its phone numbers are read and written
    timezone: str  # its reports' days
    default_number: str  # E.164: what unattributed traffic and bots see
    pooled_mediums: list[str]
    target_min_talk_seconds: int
    unique_window_days: int


class PoolView(msgspec.Struct, frozen=True, kw_only=True):
    """A site's pool of numbers handed out to visitors."""

    id: int
    site_id: int
    name: str
    hold_seconds: int  # how long a number stays a visitor's after their last ping
    policy: ExhaustionPolicy  # what a visitor sees when every number is held


class NumberView(msgspec.Struct, frozen=True, kw_only=True):
    """A tracked number: pooled, or static (bound for good to a label)."""

    id: int
    number: Annotated[str, msgspec.Meta(description="E.164")]
    site_id: int
    kind: Literal["pool", "static"]
    pool_id: int | None
    source: str
    medium: str
    campaign: str


class SiteDetail(SiteView, frozen=True, kw_only=True):
    pools: list[PoolView]
    numbers: list[NumberView]


class NewPool(PoolView, frozen=True, kw_only=True):
    numbers: list[str]  # the numbers added with it, E.164


class LiveStats(msgspec.Struct, frozen=True, kw_only=True):
    """A pool's live figures, from the pool backend."""

    size: int
    leased: int  # live leases now
    utilisation: float  # leased / size
    peak_concurrent: int  # most live leases at once, ever observed
    exhaustion_count: int  # lease requests that found no free number
    recommended_size: int


class PoolStats(LiveStats, frozen=True, kw_only=True):
    pool_id: int


class Sites(msgspec.Struct, frozen=True):
    sites: list[SiteView]


class Numbers(msgspec.Struct, frozen=True):
    numbers: list[NumberView]


def site_view(site: Site) -> SiteView:
    return msgspec.convert(site, SiteView, from_attributes=True)


def pool_view(pool: Pool) -> PoolView:
    return msgspec.convert(pool, PoolView, from_attributes=True)


def number_view(number: TrackingNumber) -> NumberView:
    return msgspec.convert(number, NumberView, from_attributes=True)


# -- what it takes ------------------------------------------------------------------------


class SiteInput(msgspec.Struct, frozen=True):
    """A new site; country and time zone have the catalog's defaults (CatalogService)."""

    key: str
    default_number: str
    name: str = ""
    domains: list[str] = []
    country: str | None = None
    timezone: str | None = None
    pooled_mediums: list[str] = []


class PoolInput(msgspec.Struct, frozen=True):
    """A new pool; name, hold time and policy have the catalog's defaults."""

    name: str | None = None
    hold_seconds: int | None = None
    policy: ExhaustionPolicy | None = None
    numbers: list[str] = []


class NumbersInput(msgspec.Struct, frozen=True):
    numbers: list[str]  # added all or nothing


class StaticNumberInput(msgspec.Struct, frozen=True):
    """A number bound for good to a label, for an offline ad (a billboard, a radio spot)."""

    number: str
    source: str
    medium: str | None = None
    campaign: str = ""


class NumbersQuery(msgspec.Struct, frozen=True):
    site_id: int | None = None
    kind: Literal["pool", "static"] | None = None


# -- handlers -----------------------------------------------------------------------------


@api()
async def list_sites(request: web.Request) -> Sites:
    """List sites."""
    async with request.app[sessionmaker_key]() as session:
        rows = await sites.list_sites(session)
    return Sites([site_view(s) for s in rows])


@api(status=201)
async def create_site(request: web.Request, body: SiteInput) -> SiteView:
    """Create a site."""
    # The body's fields are the use case's arguments, name for name.
    site = await request.app[catalog_service_key].create_site(**msgspec.structs.asdict(body))
    return site_view(site)


@api()
async def get_site(request: web.Request) -> SiteDetail:
    """A site with its pools and numbers."""
    async with request.app[sessionmaker_key]() as session:
        site = await sites.get_site(session, request.match_info["site"])
        pools = await sites.list_pools(session, site.id)
        numbers = await sites.list_numbers(session, site.id)
    return SiteDetail(
        **msgspec.structs.asdict(site_view(site)),
        pools=[pool_view(p) for p in pools],
        numbers=[number_view(n) for n in numbers],
    )


@api(status=201)
async def create_pool(request: web.Request, body: PoolInput) -> NewPool:
    """Create a pool on a site, optionally with numbers."""
    pool, added = await request.app[catalog_service_key].create_pool(
        request.match_info["site"],
        name=body.name,
        hold_seconds=body.hold_seconds,
        policy=body.policy.value if body.policy is not None else None,
        numbers=body.numbers,
    )
    return NewPool(**msgspec.structs.asdict(pool_view(pool)), numbers=[n.number for n in added])


@api(status=201)
async def add_pool_numbers(request: web.Request, body: NumbersInput) -> Numbers:
    """Add numbers to a pool (all or nothing)."""
    added = await request.app[catalog_service_key].add_pool_numbers(
        int(request.match_info["pool"]), body.numbers
    )
    return Numbers([number_view(n) for n in added])


@api()
async def pool_stats(request: web.Request) -> PoolStats:
    """A pool's live figures."""
    async with request.app[sessionmaker_key]() as session:
        pool = await sites.get_pool(session, int(request.match_info["pool"]))
    stats = await request.app[pools_key].stats(pool_key(pool.id), time.time())
    live = msgspec.convert(stats, LiveStats, from_attributes=True)
    return PoolStats(**msgspec.structs.asdict(live), pool_id=pool.id)


@api(status=201)
async def add_static_number(request: web.Request, body: StaticNumberInput) -> NumberView:
    """Bind a static number to a label for an offline ad."""
    row = await request.app[catalog_service_key].add_static_number(
        request.match_info["site"],
        body.number,
        source=body.source,
        medium=body.medium,
        campaign=body.campaign,
    )
    return number_view(row)


@api()
async def list_numbers(request: web.Request, query: NumbersQuery) -> Numbers:
    """List tracked numbers."""
    async with request.app[sessionmaker_key]() as session:
        rows = await sites.list_numbers(session, query.site_id, query.kind)
    return Numbers([number_view(n) for n in rows])
