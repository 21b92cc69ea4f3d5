"""Ad spend import: CSV and JSON rows, validated line by line, stored by replacing per key.

Replacement rule: an import replaces, for its site, every stored amount whose key
(date, source, medium, campaign, keyword) appears in the import; keys it does not mention are
left alone. Rows of one import that share a key are added up first. So re-importing a file, or
an updated export of the same days, never doubles spend, and importing February does not touch
January. An import is all or nothing: one bad row rejects it, and the error lists every bad
row with its line number (the header is line 1; for JSON, the row's 1-based position).

Imported rows are origin 0; spend pulled from the ad platforms (adspend/) is stored under its
account's origin, so the two never replace each other. A row keeps its own currency: the
report converts it at the rate table (reports/rates.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from calltracker.clock import utcnow
from calltracker.db.models import Site
from calltracker.db.report_models import AdSpend
from calltracker.db.upsert import insert_for
from calltracker.reports import money
from calltracker.reports.rows import Batch, Records, RowError, csv_records, json_records

MAX_ROWS = 200_000
MAX_LABEL = 256
REQUIRED = ("date", "source", "medium", "amount", "currency")
OPTIONAL = ("campaign", "keyword", "impressions", "clicks")
IMPORT_ORIGIN = 0
SpendKey = tuple[date, str, str, str, str]


@dataclass(frozen=True)
class SpendRow:
    line: int
    spend_date: date
    source: str
    medium: str
    campaign: str
    keyword: str
    amount: int  # minor units
    currency: str
    impressions: int = 0
    clicks: int = 0

    @property
    def key(self) -> SpendKey:
        return (self.spend_date, self.source, self.medium, self.campaign, self.keyword)


@dataclass(frozen=True)
class SpendImport:
    rows: int
    keys: int
    replaced: int  # keys that already had an amount, now overwritten
    currency: str  # the site's report currency
    first_day: date
    last_day: date
    currencies: tuple[str, ...] = ()  # the rows' own


def parse_date(raw: object) -> date:
    text = str(raw or "").strip()
    for fmt in ("%Y-%m-%d", "%d.%m.%Y"):
        try:
            day = datetime.strptime(text, fmt).date()
        except ValueError:
            continue
        if not 2000 <= day.year <= 2100:
            raise ValueError(f"date {text!r} is out of range")
        return day
    raise ValueError(f"date {text!r} is not YYYY-MM-DD or DD.MM.YYYY")


def _label(record: Mapping[str, Any], name: str, *, required: bool, lower: bool) -> str:
    raw = record.get(name)
    if raw is None:
        raw = ""
    if not isinstance(raw, str):
        raise ValueError(f"{name} must be text")
    # Sources and mediums are lowercased as the visit classifier lowercases utm_source and
    # utm_medium; campaigns and keywords keep their case, as the visits do.
    value = raw.strip().lower() if lower else raw.strip()
    if required and not value:
        raise ValueError(f"{name} is empty")
    if len(value) > MAX_LABEL:
        raise ValueError(f"{name} is longer than {MAX_LABEL} characters")
    return value


def parse_count(raw: object, name: str) -> int:
    """A whole, non-negative count (impressions, clicks); empty is 0."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return 0
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise ValueError(f"{name} must be a whole number")
    text = str(raw).strip().replace(" ", "").replace("\u00a0", "")
    if not text.isdigit():
        raise ValueError(f"{name} {raw!r} is not a whole, non-negative number")
    if len(text) > 15:
        raise ValueError(f"{name} {raw!r} is too large")
    return int(text)


def parse_record(record: Mapping[str, Any], line: int) -> SpendRow:
    """One row from a CSV line or a JSON object; ValueError says what is wrong with it."""
    return SpendRow(
        line=line,
        spend_date=parse_date(record.get("date")),
        source=_label(record, "source", required=True, lower=True),
        medium=_label(record, "medium", required=True, lower=True),
        campaign=_label(record, "campaign", required=False, lower=False),
        keyword=_label(record, "keyword", required=False, lower=False),
        amount=money.parse_amount(record.get("amount")),
        currency=money.parse_currency(record.get("currency")),
        impressions=parse_count(record.get("impressions"), "impressions"),
        clicks=parse_count(record.get("clicks"), "clicks"),
    )


def _collect(records: Records) -> Batch[SpendRow]:
    batch: Batch[SpendRow] = Batch()
    for line, record in records:
        if len(batch.items) + len(batch.errors) >= MAX_ROWS:
            batch.errors.append(RowError(line, f"too many rows; import at most {MAX_ROWS} at once"))
            break
        if isinstance(record, str):
            batch.errors.append(RowError(line, record))
            continue
        try:
            batch.items.append(parse_record(record, line))
        except ValueError as err:
            batch.errors.append(RowError(line, str(err)))
    return batch


def parse_csv(text: str) -> Batch[SpendRow]:
    return _collect(csv_records(text, REQUIRED, REQUIRED + OPTIONAL))


def parse_json_rows(rows: object) -> Batch[SpendRow]:
    return _collect(json_records(rows, "row"))


@dataclass(frozen=True)
class Total:
    amount: int
    currency: str
    impressions: int
    clicks: int


def aggregate(rows: Sequence[SpendRow]) -> dict[SpendKey, Total]:
    totals: dict[SpendKey, Total] = {}
    for row in rows:
        old = totals.get(row.key)
        totals[row.key] = Total(
            (old.amount if old else 0) + row.amount,
            row.currency,
            (old.impressions if old else 0) + row.impressions,
            (old.clicks if old else 0) + row.clicks,
        )
    return totals


def currency_errors(rows: Sequence[SpendRow]) -> list[RowError]:
    """Rows of one key in different currencies: they cannot be added up."""
    first: dict[SpendKey, str] = {}
    errors = []
    for r in rows:
        expected = first.setdefault(r.key, r.currency)
        if r.currency != expected:
            errors.append(
                RowError(
                    r.line,
                    f"currency {r.currency} differs from {expected}, the currency of an earlier "
                    "row with the same date and labels",
                )
            )
    return errors


async def _stored_keys(session: AsyncSession, site_id: int, keys: Sequence[SpendKey]) -> int:
    found = 0
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        condition = or_(
            *(
                and_(
                    AdSpend.spend_date == d,
                    AdSpend.source == s,
                    AdSpend.medium == m,
                    AdSpend.campaign == c,
                    AdSpend.keyword == k,
                )
                for d, s, m, c, k in chunk
            )
        )
        rows = await session.scalars(
            select(AdSpend.id).where(
                AdSpend.site_id == site_id, AdSpend.origin == IMPORT_ORIGIN, condition
            )
        )
        found += len(rows.all())
    return found


async def import_spend(session: AsyncSession, site: Site, batch: Batch[SpendRow]) -> SpendImport:
    """Store the rows under the replacement rule (module docstring), in the caller's transaction."""
    rows = batch.items
    batch.check(currency_errors(rows))
    currency = await money.ensure_currency(session, site.id, rows[0].currency)
    totals = aggregate(rows)
    keys = list(totals)
    replaced = await _stored_keys(session, site.id, keys)
    insert = insert_for(session)
    for start in range(0, len(keys), 1000):
        values = [
            {
                "site_id": site.id,
                "origin": IMPORT_ORIGIN,
                "account_id": None,
                "spend_date": d,
                "source": s,
                "medium": m,
                "campaign": c,
                "keyword": k,
                "amount": totals[(d, s, m, c, k)].amount,
                "currency": totals[(d, s, m, c, k)].currency,
                "impressions": totals[(d, s, m, c, k)].impressions,
                "clicks": totals[(d, s, m, c, k)].clicks,
                "imported_at": utcnow(),
            }
            for d, s, m, c, k in keys[start : start + 1000]
        ]
        stmt = insert(AdSpend).values(values)
        # An upsert rather than delete-then-insert: two imports of one key racing each other
        # then end with one row, never a unique-constraint error.
        stmt = stmt.on_conflict_do_update(
            index_elements=[
                "site_id",
                "origin",
                "spend_date",
                "source",
                "medium",
                "campaign",
                "keyword",
            ],
            set_={
                "amount": stmt.excluded.amount,
                "currency": stmt.excluded.currency,
                "impressions": stmt.excluded.impressions,
                "clicks": stmt.excluded.clicks,
                "imported_at": stmt.excluded.imported_at,
            },
        )
        await session.execute(stmt)
    days = [k[0] for k in keys]
    return SpendImport(
        rows=len(rows),
        keys=len(keys),
        replaced=replaced,
        currency=currency,
        first_day=min(days),
        last_day=max(days),
        currencies=tuple(sorted({r.currency for r in rows})),
    )


async def list_spend(
    session: AsyncSession, site_id: int, first_day: date, last_day: date
) -> Sequence[AdSpend]:
    query = (
        select(AdSpend)
        .where(
            AdSpend.site_id == site_id,
            AdSpend.spend_date >= first_day,
            AdSpend.spend_date <= last_day,
        )
        .order_by(
            AdSpend.spend_date,
            AdSpend.source,
            AdSpend.medium,
            AdSpend.campaign,
            AdSpend.keyword,
        )
    )
    return (await session.scalars(query)).all()


async def latest_spend(session: AsyncSession, site_id: int, limit: int = 200) -> Sequence[AdSpend]:
    """The site's spend rows for its latest days, newest first: what the spend page lists."""
    query = (
        select(AdSpend)
        .where(AdSpend.site_id == site_id)
        .order_by(
            AdSpend.spend_date.desc(),
            AdSpend.source,
            AdSpend.medium,
            AdSpend.campaign,
            AdSpend.keyword,
        )
        .limit(limit)
    )
    return (await session.scalars(query)).all()
