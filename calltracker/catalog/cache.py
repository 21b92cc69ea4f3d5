"""An in-memory snapshot of sites and numbers for the hot paths, refreshed from the DB."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import select

from calltracker import phones
from calltracker.db.engine import SessionMaker
from calltracker.db.models import Pool, Site, TrackingNumber
from number_pool import ExhaustionPolicy, PoolBackend, PoolConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NumberInfo:
    number: str  # E.164
    site_id: int
    kind: str  # pool | static | default
    pool_id: int | None = None
    source: str = ""
    medium: str = ""
    campaign: str = ""


@dataclass(frozen=True)
class SiteInfo:
    id: int
    key: str
    name: str
    domains: tuple[str, ...]
    country: str
    timezone: str
    default_number: str
    pooled_mediums: frozenset[str]
    fallback: NumberInfo  # what non-pooled traffic sees: a static number or the default
    selectors: tuple[str, ...]
    pool: PoolConfig | None  # the site's pool (the first one with numbers)
    target_min_talk_seconds: int
    unique_window_days: int
    callerid_template: str

    def display(self, number: str) -> str:
        return phones.display(number, self.country)

    def allows_origin(self, origin_host: str) -> bool:
        host = origin_host.lower()
        for domain in self.domains:
            bare = domain.removeprefix("*.")
            if host == bare or host.endswith("." + bare):
                return True
        return False

    def pools_traffic(self, medium: str) -> bool:
        return not self.pooled_mediums or medium.lower() in self.pooled_mediums


@dataclass(frozen=True)
class Catalog:
    sites_by_key: Mapping[str, SiteInfo] = field(default_factory=dict)
    sites_by_id: Mapping[int, SiteInfo] = field(default_factory=dict)
    numbers: Mapping[str, NumberInfo] = field(default_factory=dict)  # every tracked number

    def lookup_number(self, raw: str) -> NumberInfo | None:
        """The tracked number for a DID as Asterisk sends it (digits, maybe without '+')."""
        if raw in self.numbers:
            return self.numbers[raw]
        digits = "".join(ch for ch in raw if ch.isdigit())
        return self.numbers.get("+" + digits) if digits else None

    def all_origin_hosts(self) -> frozenset[str]:
        return frozenset(d for site in self.sites_by_id.values() for d in site.domains)


def pool_key(pool_id: int) -> str:
    return str(pool_id)


async def load_catalog(sessionmaker: SessionMaker) -> Catalog:
    async with sessionmaker() as session:
        sites = (await session.scalars(select(Site))).all()
        pools = (await session.scalars(select(Pool).order_by(Pool.id))).all()
        numbers = (
            await session.scalars(
                select(TrackingNumber)
                .where(TrackingNumber.active.is_(True))
                .order_by(TrackingNumber.id)
            )
        ).all()
    infos: dict[str, NumberInfo] = {}
    pool_numbers: dict[int, list[str]] = {}
    for n in numbers:
        infos[n.number] = NumberInfo(
            number=n.number,
            site_id=n.site_id,
            kind=n.kind,
            pool_id=n.pool_id,
            source=n.source,
            medium=n.medium,
            campaign=n.campaign,
        )
        if n.kind == "pool" and n.pool_id is not None:
            pool_numbers.setdefault(n.pool_id, []).append(n.number)
    site_pool: dict[int, PoolConfig] = {}
    for pool in pools:
        nums = pool_numbers.get(pool.id)
        if nums and pool.site_id not in site_pool:
            site_pool[pool.site_id] = PoolConfig(
                pool_id=pool_key(pool.id),
                numbers=tuple(nums),
                hold_seconds=pool.hold_seconds,
                policy=ExhaustionPolicy(pool.policy),
            )
    by_key: dict[str, SiteInfo] = {}
    by_id: dict[int, SiteInfo] = {}
    for site in sites:
        default = NumberInfo(number=site.default_number, site_id=site.id, kind="default")
        infos.setdefault(site.default_number, default)
        fallback = default
        if site.fallback_number_id is not None:
            static = next((n for n in numbers if n.id == site.fallback_number_id), None)
            if static is not None and static.kind == "static":
                fallback = infos[static.number]
        info = SiteInfo(
            id=site.id,
            key=site.key,
            name=site.name,
            domains=tuple(site.domains),
            country=site.country,
            timezone=site.timezone,
            default_number=site.default_number,
            pooled_mediums=frozenset(site.pooled_mediums),
            fallback=fallback,
            selectors=tuple(site.selectors),
            pool=site_pool.get(site.id),
            target_min_talk_seconds=site.target_min_talk_seconds,
            unique_window_days=site.unique_window_days,
            callerid_template=site.callerid_template,
        )
        by_key[site.key] = info
        by_id[site.id] = info
    return Catalog(sites_by_key=by_key, sites_by_id=by_id, numbers=infos)


class CatalogCache:
    """Holds the current Catalog; reloads it on an interval and pushes pool configs."""

    def __init__(
        self, sessionmaker: SessionMaker, pools: PoolBackend, refresh_seconds: float = 5.0
    ) -> None:
        self._sessionmaker = sessionmaker
        self._pools = pools
        self._refresh_seconds = refresh_seconds
        self._configured: dict[str, PoolConfig] = {}
        self._task: asyncio.Task[None] | None = None
        self.current = Catalog()

    async def refresh(self) -> Catalog:
        catalog = await load_catalog(self._sessionmaker)
        for site in catalog.sites_by_id.values():
            if site.pool is not None and self._configured.get(site.pool.pool_id) != site.pool:
                await self._pools.configure(site.pool)
                self._configured[site.pool.pool_id] = site.pool
        self.current = catalog
        return catalog

    def start(self) -> None:
        """Keep refreshing in the background; call refresh() once first."""
        self._task = asyncio.create_task(self._loop(), name="catalog-refresh")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_seconds)
            try:
                await self.refresh()
            except Exception:  # a DB hiccup must not stop refreshing; the old snapshot serves
                log.exception("event=catalog_refresh_failed")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
