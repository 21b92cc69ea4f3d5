"""Admin edits beyond sites.py: site and pool settings, pool health, CSV import, the snippet."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from calltracker import phones
from calltracker.catalog import sites
from calltracker.catalog.cache import pool_key
from calltracker.catalog.sites import NewNumberError
from calltracker.db.models import Pool, Site, TrackingNumber
from calltracker.errors import Invalid, NotFound
from number_pool import ExhaustionPolicy, PoolBackend, PoolError, PoolStats

MAX_IMPORT_LINES = 10_000
CSV_COLUMNS = ("number", "site", "pool", "source", "medium", "campaign")


class CsvImportFailed(Invalid):
    """Nothing was imported; `details` lists every bad line."""

    code = "invalid_csv"


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


@dataclass(frozen=True)
class _Line:
    line: int
    number: str
    site: Site
    pool: Pool | None
    source: str
    medium: str
    campaign: str


def _reader(text: str) -> csv.DictReader[str]:
    text = text.lstrip("\ufeff")  # Excel's BOM
    first = text.split("\n", 1)[0]
    # Spreadsheets in many locales save with ';' (the comma is their decimal mark).
    delimiter = max(",;\t", key=first.count)
    return csv.DictReader(io.StringIO(text), delimiter=delimiter)


async def import_numbers_csv(session: AsyncSession, text: str) -> list[TrackingNumber]:
    """Add pooled and static numbers from CSV; all or nothing, every bad line reported.

    Columns: number, site (key or id), then pool (id or name) for a pooled number, or
    source / medium / campaign for a static one.
    """
    reader = _reader(text)
    columns = [c.strip().lower() for c in reader.fieldnames or []]
    if "number" not in columns or "site" not in columns:
        raise CsvImportFailed(
            "the first line must name the columns: number,site,pool,source,medium,campaign",
            details=[NewNumberError(1, ",".join(columns), "missing number or site column")],
        )
    reader.fieldnames = columns
    site_cache: dict[str, Site | None] = {}
    pools = (await session.scalars(select(Pool))).all()
    taken = set((await session.scalars(select(TrackingNumber.number))).all())
    seen: dict[str, int] = {}
    good: list[_Line] = []
    errors: list[NewNumberError] = []
    for row in reader:
        lineno = reader.line_num
        if lineno > MAX_IMPORT_LINES + 1:
            errors.append(NewNumberError(lineno, "", f"more than {MAX_IMPORT_LINES} lines"))
            break
        cells = {k: (v or "").strip() for k, v in row.items() if isinstance(k, str)}
        raw = cells.get("number", "")
        if not any(cells.values()):
            continue
        parsed = await _parse_line(session, lineno, cells, site_cache, pools)
        if isinstance(parsed, NewNumberError):
            errors.append(parsed)
        elif parsed.number in taken:
            errors.append(NewNumberError(lineno, raw, f"{parsed.number} is already tracked"))
        elif parsed.number in seen:
            errors.append(NewNumberError(lineno, raw, f"duplicate of line {seen[parsed.number]}"))
        else:
            seen[parsed.number] = lineno
            good.append(parsed)
    if errors:
        raise CsvImportFailed(
            f"nothing imported: {len(errors)} bad line(s); fix them and upload again",
            details=errors,
        )
    if not good:
        raise CsvImportFailed("the file has no numbers", details=[])
    rows = [
        TrackingNumber(
            number=line.number,
            site_id=line.site.id,
            kind="pool" if line.pool is not None else "static",
            pool_id=line.pool.id if line.pool is not None else None,
            source=line.source,
            medium=line.medium,
            campaign=line.campaign,
        )
        for line in good
    ]
    session.add_all(rows)
    await session.flush()
    return rows


async def _parse_line(
    session: AsyncSession,
    lineno: int,
    cells: dict[str, str],
    site_cache: dict[str, Site | None],
    pools: Sequence[Pool],
) -> _Line | NewNumberError:
    raw = cells.get("number", "")
    site_ref = cells.get("site", "")
    if site_ref not in site_cache:
        try:
            site_cache[site_ref] = await sites.get_site(session, site_ref) if site_ref else None
        except sites.UnknownSite:
            site_cache[site_ref] = None
    site = site_cache[site_ref]
    if site is None:
        return NewNumberError(lineno, raw, f"unknown site {site_ref!r}")
    try:
        number = phones.normalise(raw, site.country)
    except phones.InvalidPhoneNumber as err:
        return NewNumberError(lineno, raw, str(err))
    pool_ref = cells.get("pool", "")
    source = cells.get("source", "")
    if pool_ref:
        pool = next(
            (
                p
                for p in pools
                if p.site_id == site.id and (str(p.id) == pool_ref or p.name == pool_ref)
            ),
            None,
        )
        if pool is None:
            return NewNumberError(lineno, raw, f"site {site.key!r} has no pool {pool_ref!r}")
        if source:
            return NewNumberError(lineno, raw, "give a pool or a source label, not both")
        return _Line(lineno, number, site, pool, "", "", "")
    if not source:
        return NewNumberError(lineno, raw, "give a pool (pooled) or a source (static number)")
    return _Line(
        lineno,
        number,
        site,
        None,
        source[:256],
        (cells.get("medium", "") or "offline")[:256],
        cells.get("campaign", "")[:256],
    )
