"""Admin edits beyond sites.py: site and pool settings, pool health, numbers on and off, the
snippet a site pastes."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from calltracker import phones
from calltracker.catalog import sites
from calltracker.catalog.cache import pool_key
from calltracker.db.models import Pool, Site, TrackingNumber
from calltracker.errors import Invalid, NotFound
from number_pool import ExhaustionPolicy, PoolBackend, PoolError, PoolStats


def widget_snippet(site_key: str, public_url: str) -> str:
    """The tag a site owner pastes before </body>."""
    return (
        f'<script async src="{public_url.rstrip("/")}/widget.js" data-site="{site_key}"></script>'
    )


def _check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(
            f"unknown time zone {name!r}; use an IANA name such as Europe/Moscow"
        ) from None
    return name


def _non_negative(name: str, value: int) -> int:
    if value < 0:
        raise Invalid(f"{name} must be zero or more, got {value}", code="invalid_field")
    return value


async def update_site(
    session: AsyncSession,
    key_or_id: str | int,
    *,
    name: str | None = None,
    domains: Sequence[str] | None = None,
    default_number: str | None = None,
    country: str | None = None,
    timezone: str | None = None,
    pooled_mediums: Sequence[str] | None = None,
    target_min_talk_seconds: int | None = None,
    unique_window_days: int | None = None,
    fallback_number_id: int | None = None,
) -> Site:
    """Change the given settings (None: unchanged); fallback_number_id 0 means the default."""
    site = await sites.get_site(session, key_or_id)
    if country is not None:
        if not phones.valid_region(country):
            raise Invalid(f"invalid country {country!r}: use an ISO 3166 code such as RU or US")
        site.country = country.upper()
    if name is not None:
        site.name = name.strip() or site.key
    if domains is not None:
        site.domains = sites.clean_domains(domains)
    if default_number is not None:
        try:
            site.default_number = phones.normalise(default_number, site.country)
        except phones.InvalidPhoneNumber as err:
            raise Invalid(str(err), code="invalid_number") from None
    if timezone is not None:
        site.timezone = _check_timezone(timezone)
    if pooled_mediums is not None:
        site.pooled_mediums = [m.strip().lower() for m in pooled_mediums if m.strip()]
    if target_min_talk_seconds is not None:
        site.target_min_talk_seconds = _non_negative(
            "target_min_talk_seconds", target_min_talk_seconds
        )
    if unique_window_days is not None:
        site.unique_window_days = _non_negative("unique_window_days", unique_window_days)
    if fallback_number_id is not None:
        site.fallback_number_id = await _static_of(session, site, fallback_number_id)
    await session.flush()
    return site


async def _static_of(session: AsyncSession, site: Site, number_id: int) -> int | None:
    if number_id == 0:
        return None
    row = await session.get(TrackingNumber, number_id)
    if row is None or row.site_id != site.id or row.kind != "static":
        raise Invalid(f"number {number_id} is not a static number of site {site.key!r}")
    return row.id


async def update_pool(
    session: AsyncSession,
    pool_id: int,
    *,
    name: str | None = None,
    hold_seconds: int | None = None,
    policy: str | None = None,
) -> Pool:
    pool = await sites.get_pool(session, pool_id)
    if name is not None and name.strip():
        pool.name = name.strip()[:200]
    if hold_seconds is not None:
        if hold_seconds <= 0:
            raise Invalid(f"hold time must be positive, got {hold_seconds}")
        pool.hold_seconds = hold_seconds
    if policy is not None:
        try:
            pool.policy = ExhaustionPolicy(policy).value
        except ValueError:
            choices = ", ".join(p.value for p in ExhaustionPolicy)
            raise Invalid(f"unknown exhaustion policy {policy!r}; use one of {choices}") from None
    await session.flush()
    return pool


@dataclass(frozen=True)
class PoolHealth:
    pool: Pool
    site_key: str
    numbers: int
    stats: PoolStats | None  # None: the pool is not live (no numbers, or not the site's pool)


async def pool_overview(
    session: AsyncSession, backend: PoolBackend, pool_id: int | None = None
) -> list[PoolHealth]:
    """Every pool (or one) with its size and live figures from the pool backend."""
    query = select(Pool, Site.key).join(Site, Site.id == Pool.site_id).order_by(Pool.id)
    if pool_id is not None:
        query = query.where(Pool.id == pool_id)
    rows = (await session.execute(query)).all()
    if pool_id is not None and not rows:
        raise NotFound(f"unknown pool {pool_id}")
    counts: dict[int, int] = {}
    for pid in (
        await session.scalars(
            select(TrackingNumber.pool_id).where(
                TrackingNumber.kind == "pool", TrackingNumber.active.is_(True)
            )
        )
    ).all():
        if pid is not None:
            counts[pid] = counts.get(pid, 0) + 1
    now = time.time()
    out: list[PoolHealth] = []
    for pool, site_key in rows:
        try:
            stats: PoolStats | None = await backend.stats(pool_key(pool.id), now)
        except PoolError:
            stats = None
        out.append(PoolHealth(pool, site_key, counts.get(pool.id, 0), stats))
    return out


async def set_number_active(session: AsyncSession, number_id: int, active: bool) -> TrackingNumber:
    row = await session.get(TrackingNumber, number_id)
    if row is None:
        raise NotFound(f"unknown number {number_id}", code="unknown_number")
    row.active = active
    await session.flush()
    return row
