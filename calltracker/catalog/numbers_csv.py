"""Pooled and static numbers from a spreadsheet: all or nothing, every bad line reported."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from calltracker import phones
from calltracker.catalog import sites
from calltracker.catalog.sites import NewNumberError
from calltracker.db.models import Pool, Site, TrackingNumber
from calltracker.errors import Invalid

MAX_IMPORT_LINES = 10_000
CSV_COLUMNS = ("number", "site", "pool", "source", "medium", "campaign")


class CsvImportFailed(Invalid):
    """Nothing was imported; `details` lists every bad line."""

    code = "invalid_csv"


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
