"""Sites, pools, pooled and static numbers: the admin-side catalog, over one session."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from calltracker import phones
from calltracker.db.models import Pool, Site, TrackingNumber
from calltracker.errors import Conflict, Invalid, NotFound
from number_pool import ExhaustionPolicy

# The defaults of a new site, pool and static number, for every way of making one.
DEFAULT_COUNTRY = "RU"
DEFAULT_TIMEZONE = "UTC"
DEFAULT_POOL_NAME = "main"
DEFAULT_HOLD_SECONDS = 15 * 60
DEFAULT_POLICY = ExhaustionPolicy.DEFAULT_NUMBER.value
DEFAULT_STATIC_MEDIUM = "offline"

SITE_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{3,64}$")
DOMAIN_RE = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")


class UnknownSite(NotFound):
    code = "unknown_site"


@dataclass(frozen=True)
class NewNumberError:
    line: int
    value: str
    reason: str


def _normalise(raw: str, region: str) -> str:
    try:
        return phones.normalise(raw, region)
    except phones.InvalidPhoneNumber as err:
        raise Invalid(str(err), code="invalid_number") from None


def clean_domains(domains: Iterable[str]) -> list[str]:
    cleaned: list[str] = []
    for raw in domains:
        domain = raw.strip().lower()
        if domain.startswith(("http://", "https://")):
            domain = domain.split("://", 1)[1]
        domain = domain.split("/", 1)[0].split(":", 1)[0]
        if not domain:
            continue
        if not DOMAIN_RE.match(domain):
            raise Invalid(f"invalid domain {raw!r}", code="invalid_domain")
        if domain not in cleaned:
            cleaned.append(domain)
    return cleaned


async def create_site(
    session: AsyncSession,
    *,
    key: str,
    name: str,
    domains: Sequence[str],
    default_number: str,
    country: str = DEFAULT_COUNTRY,
    timezone: str = DEFAULT_TIMEZONE,
    pooled_mediums: Sequence[str] = (),
) -> Site:
    if not SITE_KEY_RE.match(key):
        raise Invalid(f"invalid site key {key!r}: 3-64 letters, digits, '_' or '-'")
    if not phones.valid_region(country):
        raise Invalid(f"invalid country {country!r}: use an ISO 3166 code such as RU or US")
    if await session.scalar(select(Site.id).where(Site.key == key)) is not None:
        raise Conflict(f"site key {key!r} is taken")
    site = Site(
        key=key,
        name=name or key,
        domains=clean_domains(domains),
        country=country.upper(),
        timezone=timezone,
        default_number=_normalise(default_number, country),
        pooled_mediums=[m.strip().lower() for m in pooled_mediums if m.strip()],
    )
    session.add(site)
    await session.flush()
    return site


async def get_site(session: AsyncSession, key_or_id: str | int) -> Site:
    if isinstance(key_or_id, int) or str(key_or_id).isdigit():
        site = await session.get(Site, int(key_or_id))
    else:
        site = await session.scalar(select(Site).where(Site.key == key_or_id))
    if site is None:
        raise UnknownSite(f"unknown site {key_or_id!r}")
    return site


async def list_sites(session: AsyncSession) -> Sequence[Site]:
    return (await session.scalars(select(Site).order_by(Site.id))).all()


async def create_pool(
    session: AsyncSession,
    site: Site,
    *,
    name: str = DEFAULT_POOL_NAME,
    hold_seconds: int = DEFAULT_HOLD_SECONDS,
    policy: str = DEFAULT_POLICY,
) -> Pool:
    if hold_seconds <= 0:
        raise Invalid(f"hold time must be positive, got {hold_seconds}")
    try:
        policy = ExhaustionPolicy(policy)
    except ValueError:
        choices = ", ".join(p.value for p in ExhaustionPolicy)
        raise Invalid(f"unknown exhaustion policy {policy!r}; use one of {choices}") from None
    pool = Pool(site_id=site.id, name=name, hold_seconds=hold_seconds, policy=policy.value)
    session.add(pool)
    await session.flush()
    return pool


async def get_pool(session: AsyncSession, pool_id: int) -> Pool:
    pool = await session.get(Pool, pool_id)
    if pool is None:
        raise NotFound(f"unknown pool {pool_id}")
    return pool


async def list_pools(session: AsyncSession, site_id: int | None = None) -> Sequence[Pool]:
    query = select(Pool).order_by(Pool.id)
    if site_id is not None:
        query = query.where(Pool.site_id == site_id)
    return (await session.scalars(query)).all()


async def _ensure_untracked(session: AsyncSession, numbers: Sequence[str]) -> None:
    taken = (
        await session.scalars(
            select(TrackingNumber.number).where(TrackingNumber.number.in_(numbers))
        )
    ).all()
    if taken:
        raise Conflict(f"already tracked: {', '.join(sorted(taken))}", code="number_taken")


async def add_pool_numbers(
    session: AsyncSession, pool: Pool, raw_numbers: Sequence[str]
) -> list[TrackingNumber]:
    """Add numbers to a pool; all or nothing, the first bad value named in the error."""
    site = await get_site(session, pool.site_id)
    numbers: list[str] = []
    for raw in raw_numbers:
        number = _normalise(raw, site.country)
        if number in numbers:
            raise Invalid(f"duplicate number {raw!r}", code="duplicate_number")
        numbers.append(number)
    if not numbers:
        raise Invalid("no numbers given")
    await _ensure_untracked(session, numbers)
    rows = [
        TrackingNumber(number=n, site_id=site.id, kind="pool", pool_id=pool.id) for n in numbers
    ]
    session.add_all(rows)
    await session.flush()
    return rows


async def add_static_number(
    session: AsyncSession,
    site: Site,
    raw_number: str,
    *,
    source: str,
    medium: str = DEFAULT_STATIC_MEDIUM,
    campaign: str = "",
) -> TrackingNumber:
    """Bind a number for good to a label, e.g. billboard / outdoor / tverskaya-2026."""
    number = _normalise(raw_number, site.country)
    if not source.strip():
        raise Invalid("a static number needs a source label")
    await _ensure_untracked(session, [number])
    row = TrackingNumber(
        number=number,
        site_id=site.id,
        kind="static",
        source=source.strip()[:256],
        medium=(medium.strip() or DEFAULT_STATIC_MEDIUM)[:256],
        campaign=campaign.strip()[:256],
    )
    session.add(row)
    await session.flush()
    return row


async def list_numbers(
    session: AsyncSession, site_id: int | None = None, kind: str | None = None
) -> Sequence[TrackingNumber]:
    query = select(TrackingNumber).order_by(TrackingNumber.id)
    if site_id is not None:
        query = query.where(TrackingNumber.site_id == site_id)
    if kind is not None:
        query = query.where(TrackingNumber.kind == kind)
    return (await session.scalars(query)).all()
