"""The sync's SQL: claim an account for a round, store a pull by replacing its days, record
the outcome, re-map stored rows when the mapping table changes, list unmapped spend.

One process at a time pulls an account: a round claims it by setting a lease (a conditional
UPDATE, after `FOR UPDATE SKIP LOCKED` on PostgreSQL so that concurrent workers pass over a
row another is claiming), and every write of the round is fenced by the lease's token, so a
round whose lease ran out writes nothing.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import and_, delete, func, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from calltracker.adspend import mapping
from calltracker.adspend.base import CampaignInfo, Pull, StatRow
from calltracker.adspend.registry import PLATFORMS
from calltracker.adspend.sync import Window, advance, merge_rows, next_attempt, outside
from calltracker.clock import as_date
from calltracker.db.adspend_models import AdAccount, AdCampaign, CampaignMapping, PlatformSpend
from calltracker.db.base import UTCDateTime
from calltracker.db.report_models import AdSpend
from calltracker.db.upsert import insert_for
from calltracker.errors import Invalid, NotFound
from calltracker.integrations.errors import PermanentError
from calltracker.reports import money

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """Another process holds the account now: this round must not write."""


@dataclass(frozen=True)
class Claim:
    account_id: int
    token: str


def _free(now: datetime) -> ColumnElement[bool]:
    return or_(AdAccount.lease_until.is_(None), AdAccount.lease_until < now)


async def claim_due(
    session: AsyncSession, now: datetime, lease: timedelta, limit: int = 20
) -> list[Claim]:
    """Lease up to `limit` enabled accounts whose round is due and that nobody holds."""
    ids = (
        await session.scalars(
            select(AdAccount.id)
            .where(AdAccount.enabled.is_(True), AdAccount.next_sync_at <= now, _free(now))
            .order_by(AdAccount.next_sync_at, AdAccount.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    claims = []
    for account_id in ids:
        claim = await claim_account(session, account_id, now, lease)
        if claim is not None:
            claims.append(claim)
    return claims


async def claim_account(
    session: AsyncSession, account_id: int, now: datetime, lease: timedelta
) -> Claim | None:
    """Lease one account (due or not); None while another process holds it."""
    token = secrets.token_hex(8)
    result = await session.execute(
        update(AdAccount)
        .where(AdAccount.id == account_id, _free(now))
        .values(lease_until=now + lease, lease_token=token)
        .execution_options(synchronize_session=False)
    )
    return Claim(account_id, token) if result.rowcount else None  # type: ignore[attr-defined]


async def _fence(session: AsyncSession, claim: Claim, now: datetime, lease: timedelta) -> None:
    """Renew the lease inside the writing transaction, or raise LeaseLost."""
    result = await session.execute(
        update(AdAccount)
        .where(AdAccount.id == claim.account_id, AdAccount.lease_token == claim.token)
        .values(lease_until=now + lease)
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise LeaseLost(f"ad account {claim.account_id}: the lease passed to another process")


@dataclass(frozen=True)
class Stored:
    rows: int
    mapped: int
    unmapped: int
    cost: int  # minor units, all rows
    unmapped_cost: int
    currency: str


async def _upsert_campaigns(
    session: AsyncSession, account_id: int, infos: Iterable[CampaignInfo], now: datetime
) -> None:
    values = {
        (i.campaign_id, i.ad_group_id): {
            "account_id": account_id,
            "campaign_id": i.campaign_id[:64],
            "ad_group_id": i.ad_group_id[:64],
            "name": i.name[:512],
            "tracking": i.tracking,
            "updated_at": now,
        }
        for i in infos
        if i.campaign_id
    }
    rows = list(values.values())
    insert_ = insert_for(session)
    for start in range(0, len(rows), 500):
        stmt = insert_(AdCampaign).values(rows[start : start + 500])
        stmt = stmt.on_conflict_do_update(
            index_elements=["account_id", "campaign_id", "ad_group_id"],
            set_={
                "name": stmt.excluded.name,
                "tracking": stmt.excluded.tracking,
                "updated_at": stmt.excluded.updated_at,
            },
        )
        await session.execute(stmt)


@dataclass(frozen=True)
class _Context:
    """What resolving an account's rows needs: its campaigns and the mapping table."""

    platform: str
    infos: dict[tuple[str, str], CampaignInfo]
    table: dict[str, mapping.TableEntry]

    def resolve(self, row: StatRow) -> mapping.Labels | None:
        return mapping.resolve(
            self.platform,
            row,
            table=self.table.get(row.campaign_id),
            campaign=self.infos.get((row.campaign_id, "")),
            ad_group=self.infos.get((row.campaign_id, row.ad_group_id))
            if row.ad_group_id
            else None,
        )


async def _context(session: AsyncSession, account: AdAccount) -> _Context:
    infos = {
        (c.campaign_id, c.ad_group_id): CampaignInfo(
            c.campaign_id, c.ad_group_id, c.name, c.tracking
        )
        for c in await session.scalars(
            select(AdCampaign).where(AdCampaign.account_id == account.id)
        )
    }
    table = {
        m.campaign_id: mapping.TableEntry(m.source, m.medium, m.campaign)
        for m in await session.scalars(
            select(CampaignMapping).where(
                CampaignMapping.site_id == account.site_id,
                CampaignMapping.platform == account.platform,
            )
        )
    }
    return _Context(account.platform, infos, table)


def _row_values(
    account_id: int, row: StatRow, labels: mapping.Labels | None, currency: str, now: datetime
) -> dict[str, object]:
    return {
        "account_id": account_id,
        "spend_date": row.day,
        "campaign_id": row.campaign_id[:64],
        "campaign_name": row.campaign_name[:512],
        "ad_group_id": row.ad_group_id[:64],
        "ad_group_name": row.ad_group_name[:512],
        "keyword_id": row.keyword_id[:64],
        "keyword_text": row.keyword[:512],
        "impressions": row.impressions,
        "clicks": row.clicks,
        "cost": row.cost,
        "currency": currency,
        "mapped": labels is not None,
        "mapped_by": labels.how if labels else "",
        "source": labels.source if labels else "",
        "medium": labels.medium if labels else "",
        "campaign": labels.campaign if labels else "",
        "keyword": labels.keyword if labels else "",
        "pulled_at": now,
    }


async def _rebuild_spend(
    session: AsyncSession, account: AdAccount, first: date, last: date, now: datetime
) -> None:
    """The account's ad_spend rows of first..last, summed again from its mapped rows."""
    await session.execute(
        delete(AdSpend).where(
            AdSpend.account_id == account.id,
            AdSpend.spend_date >= first,
            AdSpend.spend_date <= last,
        )
    )
    p = PlatformSpend
    summed = (
        select(
            literal(account.site_id),
            literal(account.id),
            literal(account.id),
            p.spend_date,
            p.source,
            p.medium,
            p.campaign,
            p.keyword,
            func.sum(p.cost),
            func.min(p.currency),  # an account reports in one currency
            func.sum(p.impressions),
            func.sum(p.clicks),
            literal(now, UTCDateTime()),
        )
        .where(
            p.account_id == account.id,
            p.mapped.is_(True),
            p.spend_date >= first,
            p.spend_date <= last,
        )
        .group_by(p.spend_date, p.source, p.medium, p.campaign, p.keyword)
    )
    columns = [
        "site_id",
        "origin",
        "account_id",
        "spend_date",
        "source",
        "medium",
        "campaign",
        "keyword",
        "amount",
        "currency",
        "impressions",
        "clicks",
        "imported_at",
    ]
    await session.execute(insert(AdSpend).from_select(columns, summed))


async def store_pull(
    session: AsyncSession,
    claim: Claim,
    window: Window,
    pull: Pull,
    now: datetime,
    lease: timedelta,
) -> Stored:
    """Replace the account's rows of every day of `window` with the pull (sync.py's rule)."""
    await _fence(session, claim, now, lease)
    account = await session.get(AdAccount, claim.account_id)
    if account is None:
        raise LeaseLost(f"ad account {claim.account_id} was deleted")
    try:
        currency = money.parse_currency(pull.currency)
    except ValueError:
        raise PermanentError(f"the platform reported the currency {pull.currency!r}") from None
    await money.ensure_currency(session, account.site_id, currency)
    if pull.campaigns is not None:
        await _upsert_campaigns(session, account.id, pull.campaigns, now)
    context = await _context(session, account)
    stray = outside(pull.rows, window)
    if stray:
        log.warning("event=adspend_rows_outside_window account=%s rows=%d", account.id, len(stray))
    rows = merge_rows(r for r in pull.rows if window.first <= r.day <= window.last)
    await session.execute(
        delete(PlatformSpend).where(
            PlatformSpend.account_id == account.id,
            PlatformSpend.spend_date >= window.first,
            PlatformSpend.spend_date <= window.last,
        )
    )
    values = []
    mapped = unmapped_cost = 0
    for row in rows:
        labels = context.resolve(row)
        mapped += labels is not None
        unmapped_cost += row.cost if labels is None else 0
        values.append(_row_values(account.id, row, labels, currency, now))
    for start in range(0, len(values), 1000):
        await session.execute(insert(PlatformSpend).values(values[start : start + 1000]))
    await _rebuild_spend(session, account, window.first, window.last, now)
    return Stored(
        rows=len(rows),
        mapped=mapped,
        unmapped=len(rows) - mapped,
        cost=sum(r.cost for r in rows),
        unmapped_cost=unmapped_cost,
        currency=currency,
    )


async def finish(
    session: AsyncSession,
    claim: Claim,
    now: datetime,
    *,
    window: Window | None = None,
    error_kind: str = "",
    error: str = "",
    retry_after: float | None = None,
    reschedule: bool = True,
    release: bool = True,
) -> bool:
    """Record a round's outcome (a success when `window` is given); False if not ours."""
    account = await session.get(AdAccount, claim.account_id, populate_existing=True)
    if account is None or account.lease_token != claim.token:
        return False
    account.last_attempt_at = now
    if window is not None:
        account.pulled_through = advance(account.pulled_through, window)
        account.last_success_at = now
        account.last_error = ""
        account.error_kind = ""
        account.failures = 0
    else:
        account.last_error = error[:2000]
        account.error_kind = error_kind
        account.failures += 1
    if reschedule:
        account.next_sync_at = next_attempt(
            now,
            kind=account.error_kind,
            failures=account.failures,
            interval=timedelta(minutes=account.interval_minutes),
            retry_after=retry_after,
        )
    if release:
        account.lease_until = None
        account.lease_token = ""
    await session.flush()
    return True


async def release(session: AsyncSession, claim: Claim) -> None:
    """Give the account back (a backfill's end), if the lease is still ours."""
    await session.execute(
        update(AdAccount)
        .where(AdAccount.id == claim.account_id, AdAccount.lease_token == claim.token)
        .values(lease_until=None, lease_token="")
        .execution_options(synchronize_session=False)
    )


# --- mapping ------------------------------------------------------------------------------


async def remap(
    session: AsyncSession,
    site_id: int,
    platform: str,
    campaign_ids: Sequence[str] | None,
    now: datetime,
) -> int:
    """Resolve the stored rows of these campaigns (all, with None) again; rows changed."""
    accounts = (
        await session.scalars(
            select(AdAccount).where(AdAccount.site_id == site_id, AdAccount.platform == platform)
        )
    ).all()
    changed = 0
    for account in accounts:
        context = await _context(session, account)
        query = select(PlatformSpend).where(PlatformSpend.account_id == account.id)
        if campaign_ids is not None:
            query = query.where(PlatformSpend.campaign_id.in_(list(campaign_ids)))
        days: list[date] = []
        for stored in await session.scalars(query):
            row = StatRow(
                stored.spend_date,
                stored.campaign_id,
                stored.campaign_name,
                stored.ad_group_id,
                stored.ad_group_name,
                stored.keyword_id,
                stored.keyword_text,
            )
            labels = context.resolve(row)
            new = (labels.key if labels else ("", "", "", ""), labels.how if labels else "")
            old = (
                (stored.source, stored.medium, stored.campaign, stored.keyword),
                stored.mapped_by,
            )
            if new == old and stored.mapped == (labels is not None):
                continue
            stored.mapped = labels is not None
            stored.mapped_by = new[1]
            stored.source, stored.medium, stored.campaign, stored.keyword = new[0]
            days.append(stored.spend_date)
            changed += 1
        if days:
            await session.flush()
            await _rebuild_spend(session, account, min(days), max(days), now)
    return changed


def _label(value: str, name: str, *, required: bool, lower: bool) -> str:
    text = value.strip().lower() if lower else value.strip()
    if required and not text:
        raise Invalid(f"{name} is required", code="invalid_field")
    if len(text) > mapping.MAX_LABEL:
        raise Invalid(f"{name} is longer than {mapping.MAX_LABEL} characters", code="invalid_field")
    return text


async def set_mapping(
    session: AsyncSession,
    *,
    site_id: int,
    platform: str,
    campaign_id: str,
    source: str,
    medium: str,
    campaign: str,
    now: datetime,
) -> tuple[CampaignMapping, int]:
    """Map a platform campaign to labels (replacing an earlier mapping); (it, rows re-mapped)."""
    if platform not in PLATFORMS:
        raise Invalid(f"platform must be one of {', '.join(PLATFORMS)}", code="invalid_platform")
    cid = _label(campaign_id, "campaign_id", required=True, lower=False)
    if len(cid) > 64:
        raise Invalid("campaign_id is longer than 64 characters", code="invalid_field")
    values = {
        "source": _label(source, "source", required=True, lower=True),
        "medium": _label(medium, "medium", required=True, lower=True),
        "campaign": _label(campaign, "campaign", required=False, lower=False),
    }
    found = await session.scalar(
        select(CampaignMapping).where(
            CampaignMapping.site_id == site_id,
            CampaignMapping.platform == platform,
            CampaignMapping.campaign_id == cid,
        )
    )
    if found is None:
        found = CampaignMapping(site_id=site_id, platform=platform, campaign_id=cid, **values)
        session.add(found)
    else:
        for key, value in values.items():
            setattr(found, key, value)
    found.updated_at = now
    await session.flush()
    return found, await remap(session, site_id, platform, [cid], now)


async def delete_mapping(session: AsyncSession, mapping_id: int, now: datetime) -> int:
    found = await session.get(CampaignMapping, mapping_id)
    if found is None:
        raise NotFound(f"unknown campaign mapping {mapping_id}", code="unknown_mapping")
    site_id, platform, cid = found.site_id, found.platform, found.campaign_id
    await session.delete(found)
    await session.flush()
    return await remap(session, site_id, platform, [cid], now)


async def list_mappings(session: AsyncSession, site_id: int) -> Sequence[CampaignMapping]:
    query = (
        select(CampaignMapping)
        .where(CampaignMapping.site_id == site_id)
        .order_by(CampaignMapping.platform, CampaignMapping.campaign_id)
    )
    return (await session.scalars(query)).all()


# --- unmapped spend -----------------------------------------------------------------------


@dataclass(frozen=True)
class UnmappedCampaign:
    account_id: int
    account_name: str
    platform: str
    campaign_id: str
    campaign_name: str
    currency: str
    cost: int  # minor units
    impressions: int
    clicks: int
    first_day: date
    last_day: date
    tracking: str  # the campaign's tracking parameters as pulled, to show why it is unmapped


async def unmapped(
    session: AsyncSession, site_id: int, first: date, last: date
) -> list[UnmappedCampaign]:
    """Pulled spend of first..last that maps to no labels, per account and campaign."""
    p = PlatformSpend
    query = (
        select(
            p.account_id,
            AdAccount.name,
            AdAccount.platform,
            p.campaign_id,
            func.max(p.campaign_name),
            p.currency,
            func.sum(p.cost),
            func.sum(p.impressions),
            func.sum(p.clicks),
            func.min(p.spend_date),
            func.max(p.spend_date),
            func.max(AdCampaign.tracking),
        )
        .join(AdAccount, AdAccount.id == p.account_id)
        .outerjoin(
            AdCampaign,
            and_(
                AdCampaign.account_id == p.account_id,
                AdCampaign.campaign_id == p.campaign_id,
                AdCampaign.ad_group_id == "",
            ),
        )
        .where(
            AdAccount.site_id == site_id,
            p.mapped.is_(False),
            p.spend_date >= first,
            p.spend_date <= last,
        )
        .group_by(p.account_id, AdAccount.name, AdAccount.platform, p.campaign_id, p.currency)
        .order_by(func.sum(p.cost).desc(), p.campaign_id)
    )
    return [
        UnmappedCampaign(
            account_id=r[0],
            account_name=r[1],
            platform=r[2],
            campaign_id=r[3],
            campaign_name=r[4] or "",
            currency=r[5],
            cost=int(r[6] or 0),
            impressions=int(r[7] or 0),
            clicks=int(r[8] or 0),
            first_day=as_date(r[9]),
            last_day=as_date(r[10]),
            tracking=r[11] or "",
        )
        for r in (await session.execute(query)).all()
    ]
