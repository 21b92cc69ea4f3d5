"""Deals in the database: one row per deal, replaced by newer reads; its stage history; and,
when a matched deal is won, one report of it queued for each ad platform of the site."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from calltracker.db.deal_models import CrmStage, Deal, DealStage
from calltracker.db.integration_models import Integration, OutboxRow
from calltracker.db.report_models import ReportCurrency
from calltracker.db.upsert import insert_for
from calltracker.deals import candidates
from calltracker.deals.matching import Match, decide, prefer
from calltracker.deals.snapshot import DealSnapshot, StageInfo
from calltracker.integrations import registry
from calltracker.integrations.errors import ConfigError
from calltracker.integrations.outbox import store as outbox
from calltracker.integrations.outbox.policy import DEAD, INVALID, PENDING

log = logging.getLogger(__name__)

# What a new read of a deal may change; equal values mean the read changes nothing.
_FIELDS = (
    "title",
    "pipeline_id",
    "pipeline_name",
    "stage_id",
    "stage_name",
    "status",
    "amount",
    "currency",
    "manager_id",
    "manager_name",
    "opened_at",
    "closed_at",
    "lead_remote_id",
    "contact_remote_id",
    "phones",
    "tracking",
    "call_id",
    "visit_id",
    "match",
    "attributed_at",
    "source",
    "medium",
    "campaign",
    "keyword",
)


@dataclass(frozen=True)
class Origin:
    """Where deals come from: a CRM integration of a site, or the site's own posts."""

    site_id: int
    region: str  # the site's country, for the contact's phones
    crm: str
    integration_id: int | None = None
    window: timedelta | None = timedelta(days=30)

    @property
    def key(self) -> str:
        return "api" if self.integration_id is None else f"integration:{self.integration_id}"


@dataclass(frozen=True)
class Upserted:
    deal_id: int
    created: bool
    changed: bool  # False: the same read again, or an older one; nothing was written
    match: Match
    won_queued: int = 0  # reports of the won deal queued for ad platforms


def _stored_match(row: Deal) -> Match | None:
    if row.match == "none":
        return None
    if row.match in ("call", "own", "phone", "window") and row.call_id is None:
        return None  # its call is gone: match again
    labels = (row.source, row.medium, row.campaign, row.keyword)
    return Match(row.match, row.call_id, row.visit_id, row.attributed_at, labels)  # type: ignore[arg-type]


async def upsert(
    session: AsyncSession,
    origin: Origin,
    deal: DealSnapshot,
    *,
    seen_via: str,
    now: datetime,
) -> Upserted:
    """Store one read of a deal in the caller's transaction: a deal never counts twice, and a
    reopened or re-valued deal replaces its old figures."""
    insert = insert_for(session)
    fresh = (
        insert(Deal)
        .values(
            site_id=origin.site_id,
            integration_id=origin.integration_id,
            origin=origin.key,
            crm=origin.crm,
            remote_id=deal.remote_id,
            opened_at=deal.opened_at,
            status=deal.status,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["site_id", "origin", "remote_id"])
        .returning(Deal.id)
    )
    created_id = (await session.execute(fresh)).scalar_one_or_none()
    row = await session.scalar(
        select(Deal)
        .where(
            Deal.site_id == origin.site_id,
            Deal.origin == origin.key,
            Deal.remote_id == deal.remote_id,
        )
        .with_for_update()
    )
    assert row is not None
    created = created_id is not None
    if (
        not created
        and deal.updated_at is not None
        and row.remote_updated_at is not None
        and deal.updated_at < row.remote_updated_at
    ):
        # A late webhook's read is older than what we have: it changes nothing.
        return Upserted(row.id, False, False, _stored_match(row) or Match("none"))
    numbers = candidates.normalised(deal.phones, origin.region)
    found = await candidates.gather(session, origin.site_id, origin.integration_id, deal, numbers)
    match = prefer(
        None if created else _stored_match(row), decide(deal.opened_at, found, origin.window)
    )
    values: dict[str, Any] = {
        "title": deal.title,
        "pipeline_id": deal.pipeline_id,
        "pipeline_name": deal.pipeline_name,
        "stage_id": deal.stage_id,
        "stage_name": deal.stage_name,
        "status": deal.status,
        "amount": deal.amount,
        "currency": deal.currency,
        "manager_id": deal.manager_id,
        "manager_name": deal.manager_name,
        "opened_at": deal.opened_at,
        "closed_at": deal.closed_at,
        "lead_remote_id": deal.lead_remote_id,
        "contact_remote_id": deal.contact_remote_id,
        "phones": list(numbers),
        "tracking": dict(deal.tracking),
        "call_id": match.call_id,
        "visit_id": match.visit_id,
        "match": match.basis,
        "attributed_at": match.attributed_at,
        "source": match.labels[0][:256],
        "medium": match.labels[1][:256],
        "campaign": match.labels[2][:256],
        "keyword": match.labels[3][:256],
    }
    moved = created or (row.stage_id, row.status, row.amount) != (
        deal.stage_id,
        deal.status,
        deal.amount,
    )
    changed = created or any(getattr(row, name) != values[name] for name in _FIELDS)
    if not changed:
        return Upserted(row.id, False, False, match)
    was_won = not created and row.status == "won"
    for name, value in values.items():
        setattr(row, name, value)
    if deal.updated_at is not None:
        row.remote_updated_at = deal.updated_at
    row.updated_at = now
    if moved:
        session.add(
            DealStage(
                deal_id=row.id,
                stage_id=deal.stage_id,
                stage_name=deal.stage_name,
                status=deal.status,
                amount=deal.amount,
                at=(deal.closed_at if deal.status != "open" else None) or deal.updated_at or now,
                seen_via=seen_via,
            )
        )
    if deal.currency and deal.amount:
        await _first_currency(session, origin.site_id, deal.currency, now)
    await session.flush()
    queued = 0
    if row.status == "won" and row.call_id is not None:
        queued = await queue_won(session, row, now)
    if row.status == "won" and not was_won:
        log.info(
            "event=deal_won deal_id=%s origin=%s remote_id=%s match=%s queued=%s",
            row.id,
            origin.key,
            row.remote_id,
            row.match,
            queued,
        )
    return Upserted(row.id, created, True, match, queued)


async def _first_currency(
    session: AsyncSession, site_id: int, currency: str, now: datetime
) -> None:
    """A site's first deal with an amount fixes its report currency, as a spend import does."""
    known = await session.scalar(
        select(ReportCurrency.currency).where(ReportCurrency.site_id == site_id)
    )
    if known is None:
        insert = insert_for(session)
        await session.execute(
            insert(ReportCurrency)
            .values(site_id=site_id, currency=currency, set_at=now)
            .on_conflict_do_nothing(index_elements=["site_id"])
        )


async def queue_won(session: AsyncSession, deal: Deal, now: datetime) -> int:
    """One "won" outbox row per ad platform of the site that takes revenue; a row queued
    before (the deal won again, re-read, re-valued) is not queued twice."""
    assert deal.call_id is not None
    integrations = (
        await session.scalars(
            select(Integration).where(
                Integration.site_id == deal.site_id, Integration.enabled.is_(True)
            )
        )
    ).all()
    rows = []
    for integration in integrations:
        try:
            config = registry.parse_config(integration.kind, integration.config)
        except ConfigError:
            continue
        if getattr(config, "sends_revenue", False):
            rows.append(outbox.new_row(integration.id, deal.call_id, outbox.WON, now, deal.id))
    if not rows:
        return 0
    keys = [r["idempotency_key"] for r in rows]
    before = set(
        await session.scalars(
            select(OutboxRow.idempotency_key).where(OutboxRow.idempotency_key.in_(keys))
        )
    )
    await outbox.insert_rows(session, rows)
    # A report given up because the deal was reopened before it went out: won again, it goes.
    revived = await session.execute(
        update(OutboxRow)
        .where(
            OutboxRow.idempotency_key.in_(keys),
            OutboxRow.state == DEAD,
            OutboxRow.error_kind == INVALID,
        )
        .values(state=PENDING, attempts=0, next_attempt_at=now, updated_at=now, last_error="")
        .execution_options(synchronize_session=False)
    )
    return len([k for k in keys if k not in before]) + int(revived.rowcount)  # type: ignore[attr-defined]


async def forget(session: AsyncSession, origin: Origin, remote_id: str) -> bool:
    """The CRM deleted the deal: it leaves the report (what the ad platforms got stays)."""
    row = await session.scalar(
        select(Deal).where(
            Deal.site_id == origin.site_id,
            Deal.origin == origin.key,
            Deal.remote_id == remote_id,
        )
    )
    if row is None:
        return False
    await session.delete(row)
    return True


async def save_stages(
    session: AsyncSession, integration_id: int, stages: list[StageInfo], now: datetime
) -> None:
    """The CRM's pipelines and stages as it lists them now (the funnel's order)."""
    insert = insert_for(session)
    for stage in stages:
        stmt = insert(CrmStage).values(
            integration_id=integration_id,
            pipeline_id=stage.pipeline_id,
            pipeline_name=stage.pipeline_name,
            stage_id=stage.stage_id,
            name=stage.name,
            sort=stage.sort,
            status=stage.status,
            updated_at=now,
        )
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=["integration_id", "pipeline_id", "stage_id"],
                set_={
                    k: stmt.excluded[k]
                    for k in ("pipeline_name", "name", "sort", "status", "updated_at")
                },
            )
        )
