"""Won deals posted by hand or by a bridge (JSON or CSV): deals of origin "api".

They are deals like the CRMs' (deals/store.py), so a deal both posted here and read from a
CRM is two deals only if it has two ids. A deal is idempotent by its external id per site:
posting it again updates amount, time and match instead of adding revenue twice. It names its
call directly (call_id, matched as "call") or by the caller's phone, which matches that
caller's latest call to the site at or before the deal time ("window", a probable match). A
deal whose phone matches no call is kept (a later post can still match it) but adds no revenue
to the report, which has no label to put it under. Revenue counts on the matched call's labels
and local day. A batch is all or nothing, like spend imports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from calltracker import phones
from calltracker.clock import utcnow
from calltracker.db.models import Call, Site
from calltracker.deals import store
from calltracker.deals.snapshot import DealSnapshot
from calltracker.reports import money
from calltracker.reports.rows import Batch, Records, RowError, csv_records, json_records

MAX_DEAL_ID = 128
MAX_DEALS = 10_000  # one post; each deal is matched on its own, so batches stay modest
COLUMNS = ("deal_id", "call_id", "phone", "amount", "currency", "time")


@dataclass(frozen=True)
class DealIn:
    line: int
    external_id: str
    call_id: int | None
    phone: str  # E.164, or "" when the deal names its call
    amount: int  # minor units
    currency: str | None  # None: the site's currency
    converted_at: datetime


@dataclass(frozen=True)
class DealOut:
    external_id: str
    id: int
    call_id: int | None
    created: bool


def parse_time(raw: object, tz: ZoneInfo) -> datetime:
    """ISO 8601 (a time without offset is the site's local time) or epoch seconds."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return datetime.fromtimestamp(raw, UTC)
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError("time is required: ISO 8601, e.g. 2026-03-01T14:05:00+03:00")
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise ValueError(f"time {raw!r} is not ISO 8601") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value.astimezone(UTC)


def _call_id(raw: object) -> int | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        raise ValueError("call_id must be a whole number")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.strip().isdigit():
        return int(raw.strip())
    raise ValueError(f"call_id {raw!r} must be a whole number")


def parse_deal(record: Mapping[str, Any], line: int, region: str, tz: ZoneInfo) -> DealIn:
    raw_id = record.get("deal_id", record.get("external_id"))
    if isinstance(raw_id, int) and not isinstance(raw_id, bool):
        raw_id = str(raw_id)
    if not isinstance(raw_id, str) or not raw_id.strip():
        raise ValueError("deal_id is required: the CRM's id for the deal")
    if len(raw_id.strip()) > MAX_DEAL_ID:
        raise ValueError(f"deal_id is longer than {MAX_DEAL_ID} characters")
    call_id = _call_id(record.get("call_id"))
    raw_phone = record.get("phone") or ""
    if not isinstance(raw_phone, str):
        raise ValueError("phone must be text")
    phone = ""
    if raw_phone.strip():
        try:
            phone = phones.normalise(raw_phone, region)
        except phones.InvalidPhoneNumber as err:
            raise ValueError(str(err)) from None
    if call_id is None and not phone:
        raise ValueError("a deal needs call_id or phone to find its call")
    raw_currency = record.get("currency")
    return DealIn(
        line=line,
        external_id=raw_id.strip(),
        call_id=call_id,
        phone=phone,
        amount=money.parse_amount(record.get("amount")),
        currency=money.parse_currency(raw_currency) if raw_currency else None,
        converted_at=parse_time(record.get("time"), tz),
    )


def _collect(records: Records, site: Site) -> Batch[DealIn]:
    tz = ZoneInfo(site.timezone)
    batch: Batch[DealIn] = Batch()
    for line, record in records:
        if len(batch.items) + len(batch.errors) >= MAX_DEALS:
            batch.errors.append(RowError(line, f"too many deals; post at most {MAX_DEALS} at once"))
            break
        if isinstance(record, str):
            batch.errors.append(RowError(line, record))
            continue
        try:
            batch.items.append(parse_deal(record, line, site.country, tz))
        except ValueError as err:
            batch.errors.append(RowError(line, str(err)))
    return batch


def parse_csv(text: str, site: Site) -> Batch[DealIn]:
    return _collect(csv_records(text, ("deal_id", "amount", "time"), COLUMNS), site)


def parse_json(body: object, site: Site) -> Batch[DealIn]:
    """One deal object, or a batch: {"conversions": [...]} or a bare list."""
    if isinstance(body, dict) and "conversions" in body:
        return _collect(json_records(body["conversions"], "deal"), site)
    return _collect(json_records(body if isinstance(body, list) else [body], "deal"), site)


async def _check_call(session: AsyncSession, site_id: int, deal: DealIn) -> RowError | None:
    if deal.call_id is None:
        return None
    found = await session.scalar(
        select(Call.id).where(Call.id == deal.call_id, Call.site_id == site_id)
    )
    return (
        None if found is not None else RowError(deal.line, f"no call {deal.call_id} on this site")
    )


def snapshot(deal: DealIn, currency: str) -> DealSnapshot:
    return DealSnapshot(
        remote_id=deal.external_id,
        opened_at=deal.converted_at,
        closed_at=deal.converted_at,
        status="won",
        amount=deal.amount,
        currency=currency,
        phones=(deal.phone,) if deal.phone else (),
        call_id=deal.call_id,
    )


async def record_deals(session: AsyncSession, site: Site, batch: Batch[DealIn]) -> list[DealOut]:
    """Match and upsert the deals in the caller's transaction; any bad deal rejects them all."""
    deals = batch.items
    errors: list[RowError] = []
    current = await money.site_currency(session, site.id)
    wanted = current or next((d.currency for d in deals if d.currency), None)
    for deal in deals:
        if wanted is None:
            errors.append(RowError(deal.line, "currency is required until the site has one"))
        elif deal.currency is not None and deal.currency != wanted:
            errors.append(
                RowError(deal.line, f"currency {deal.currency} differs from the site's {wanted}")
            )
        problem = await _check_call(session, site.id, deal)
        if problem is not None:
            errors.append(problem)
    batch.check(errors)
    assert wanted is not None  # every deal had an error otherwise
    await money.lock_currency(session, site.id, wanted)
    # Posted deals name their call, or match the caller's latest call at any earlier time.
    origin = store.Origin(site_id=site.id, region=site.country, crm="api", window=None)
    out: list[DealOut] = []
    now = utcnow()
    for deal in deals:
        result = await store.upsert(
            session, origin, snapshot(deal, wanted), seen_via="api", now=now
        )
        out.append(DealOut(deal.external_id, result.deal_id, result.match.call_id, result.created))
    return out
