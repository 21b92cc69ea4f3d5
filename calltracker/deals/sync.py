"""Deals read from the CRMs: what webhooks named, and a polling backstop for what they missed.

Webhooks only name a record (crm_fetch rows, written by web/crm_hooks.py); this service reads
each one through the CRM's own API, and polls every CRM for deals changed since its cursor,
so a webhook that never arrived delays a deal by one poll at most. Claims are leases written
with one UPDATE, so with several processes one fetches a record and one polls a CRM at a time.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from calltracker.clock import utcnow
from calltracker.db.deal_models import CrmCursor, CrmFetch, Deal
from calltracker.db.engine import SessionMaker
from calltracker.db.integration_models import Integration
from calltracker.db.models import Site
from calltracker.db.upsert import insert_for
from calltracker.deals import store
from calltracker.deals.snapshot import DealSnapshot
from calltracker.integrations import registry
from calltracker.integrations.deal_source import DealSource
from calltracker.integrations.errors import ConfigError, IntegrationError
from calltracker.integrations.outbox.adapters import AdapterCache

log = logging.getLogger(__name__)

ENTITIES = ("deal", "lead")  # what a webhook may name: a deal, or a lead that became deals


@dataclass(frozen=True)
class DealSyncSettings:
    """How often the service looks, and how hard it tries."""

    interval: float = 3.0  # seconds between looks for named records and due polls
    fetch_batch: int = 20  # records read per look
    lease_seconds: float = 300.0  # a claim's life: past it, another process takes over
    poll_limit: int = 500  # deals read per poll of one CRM (more: polled again soon)
    # The cursor steps back this much: a change committed late, with an earlier time, is
    # still read. Deals read twice change nothing.
    overlap: timedelta = timedelta(minutes=2)
    retry_base: float = 30.0
    retry_cap: float = 3600.0
    max_attempts: int = 50  # a record still unreadable after this is left to the polls


@dataclass(frozen=True)
class _Claimed:
    id: int
    integration_id: int
    entity: str
    remote_id: str
    generation: int
    attempts: int


async def name_records(
    session: AsyncSession,
    integration_id: int,
    records: Sequence[tuple[str, str]],
    now: datetime,
    seen_via: str = "webhook",
) -> int:
    """Queue (entity, remote id) pairs to read; a pair queued already is due again now."""
    insert = insert_for(session)
    for entity, remote_id in dict.fromkeys(records):
        stmt = insert(CrmFetch).values(
            integration_id=integration_id,
            entity=entity,
            remote_id=remote_id,
            seen_via=seen_via,
            generation=1,
            attempts=0,
            due_at=now,
            last_error="",
            created_at=now,
        )
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=["integration_id", "entity", "remote_id"],
                set_={"generation": CrmFetch.generation + 1, "due_at": now, "attempts": 0},
            )
        )
    return len(set(records))


class DealSync:
    """Reads named records and polls every CRM whose config has a ``deals`` section."""

    def __init__(
        self,
        sessionmaker: SessionMaker,
        adapters: AdapterCache,
        settings: DealSyncSettings | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        on_won: Callable[[], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings or DealSyncSettings()
        self._sessionmaker = sessionmaker
        self._adapters = adapters
        self._clock = clock
        self._on_won = on_won  # wakes the outbox: a won deal's reports are queued
        self._rng = rng or random.Random()
        self._sources: dict[int, tuple[Any, DealSource]] = {}

    async def run_once(self) -> int:
        """One look: named records, then due polls; how many deals were read."""
        return await self.fetch_named() + await self.poll_due()

    # -- the CRM's reader --------------------------------------------------------------------

    def source(self, integration: Integration) -> DealSource | None:
        """The deal reader of a CRM integration with deals on; None otherwise."""
        kind = registry.KINDS.get(integration.kind)
        if kind is None or kind.deals is None:
            return None
        try:
            adapter = self._adapters.get(integration)
        except ConfigError:
            return None
        cached = self._sources.get(integration.id)
        if cached is not None and cached[0] is adapter:
            return cached[1]
        reader = kind.deals(adapter)
        if reader.sync is None:
            return None
        self._sources[integration.id] = (adapter, reader)
        return reader

    async def _context(self, integration_id: int) -> tuple[Integration, Site] | None:
        async with self._sessionmaker() as session:
            integration = await session.get(Integration, integration_id)
            site = await session.get(Site, integration.site_id) if integration else None
        if integration is None or site is None or not integration.enabled:
            return None
        return integration, site

    def _origin(self, integration: Integration, site: Site, source: DealSource) -> store.Origin:
        days = source.sync.match_window_days if source.sync is not None else 30
        return store.Origin(
            site_id=site.id,
            region=site.country,
            crm=integration.kind,
            integration_id=integration.id,
            window=timedelta(days=days),
        )

    # -- reading deals -----------------------------------------------------------------------

    async def ingest(
        self,
        integration: Integration,
        site: Site,
        source: DealSource,
        deals: Sequence[DealSnapshot],
        seen_via: str,
    ) -> int:
        """Store what was read; the contact's phones are read once per contact."""
        origin = self._origin(integration, site, source)
        won = 0
        for deal in deals:
            deal = await self._with_phones(origin, source, deal)
            async with self._sessionmaker.begin() as session:
                result = await store.upsert(
                    session, origin, deal, seen_via=seen_via, now=self._clock()
                )
            won += result.won_queued
        if won and self._on_won is not None:
            self._on_won()
        return len(deals)

    async def _with_phones(
        self, origin: store.Origin, source: DealSource, deal: DealSnapshot
    ) -> DealSnapshot:
        if deal.phones or not deal.contact_remote_id:
            return deal
        async with self._sessionmaker() as session:
            known = (
                await session.execute(
                    select(Deal.contact_remote_id, Deal.phones).where(
                        Deal.site_id == origin.site_id,
                        Deal.origin == origin.key,
                        Deal.remote_id == deal.remote_id,
                    )
                )
            ).first()
        if known is not None and known[0] == deal.contact_remote_id and known[1]:
            phones = tuple(known[1])
        else:
            phones = await source.contact_phones(deal.contact_remote_id)
        return replace(deal, phones=phones)

    # -- records named by webhooks -----------------------------------------------------------

    async def fetch_named(self) -> int:
        claimed = await self._claim_fetches()
        read = 0
        for item in claimed:
            try:
                read += await self._fetch(item)
            except IntegrationError as err:
                await self._fetch_failed(item, err.message)
            except Exception as err:  # our own fault: logged with its traceback, retried
                log.exception("event=deal_fetch_error fetch_id=%s", item.id)
                await self._fetch_failed(item, f"unexpected {type(err).__name__}")
            else:
                await self._fetch_done(item)
        return read

    async def _claim_fetches(self) -> list[_Claimed]:
        now = self._clock()
        lease = now + timedelta(seconds=self.settings.lease_seconds)
        async with self._sessionmaker.begin() as session:
            ids = (
                await session.scalars(
                    select(CrmFetch.id)
                    .where(CrmFetch.due_at <= now)
                    .order_by(CrmFetch.due_at, CrmFetch.id)
                    .limit(self.settings.fetch_batch)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not ids:
                return []
            result = await session.execute(
                update(CrmFetch)
                .where(CrmFetch.id.in_(ids), CrmFetch.due_at <= now)
                .values(due_at=lease, attempts=CrmFetch.attempts + 1)
                .returning(
                    CrmFetch.id,
                    CrmFetch.integration_id,
                    CrmFetch.entity,
                    CrmFetch.remote_id,
                    CrmFetch.generation,
                    CrmFetch.attempts,
                )
                .execution_options(synchronize_session=False)
            )
            return [_Claimed(*row) for row in result.all()]

    async def _fetch(self, item: _Claimed) -> int:
        context = await self._context(item.integration_id)
        if context is None:
            return 0
        integration, site = context
        source = self.source(integration)
        if source is None:
            return 0
        if item.entity == "lead":
            deals = list(await source.lead_deals(item.remote_id))
        else:
            deal = await source.deal(item.remote_id)
            if deal is None:
                origin = self._origin(integration, site, source)
                async with self._sessionmaker.begin() as session:
                    if await store.forget(session, origin, item.remote_id):
                        log.info(
                            "event=deal_deleted integration_id=%s remote_id=%s",
                            integration.id,
                            item.remote_id,
                        )
                return 0
            deals = [deal]
        return await self.ingest(integration, site, source, deals, "webhook")

    async def _fetch_done(self, item: _Claimed) -> None:
        async with self._sessionmaker.begin() as session:
            # A newer event for the record (a higher generation) keeps it queued.
            await session.execute(
                delete(CrmFetch).where(
                    CrmFetch.id == item.id, CrmFetch.generation == item.generation
                )
            )

    async def _fetch_failed(self, item: _Claimed, message: str) -> None:
        log.warning(
            "event=deal_fetch_failed fetch_id=%s integration_id=%s attempt=%s error=%s",
            item.id,
            item.integration_id,
            item.attempts,
            message,
        )
        async with self._sessionmaker.begin() as session:
            if item.attempts >= self.settings.max_attempts:
                # The polls still read the deal once it changes again.
                await session.execute(delete(CrmFetch).where(CrmFetch.id == item.id))
                return
            await session.execute(
                update(CrmFetch)
                .where(CrmFetch.id == item.id, CrmFetch.generation == item.generation)
                .values(
                    due_at=self._clock() + self._backoff(item.attempts), last_error=message[:2000]
                )
                .execution_options(synchronize_session=False)
            )

    def _backoff(self, attempt: int) -> timedelta:
        step = self.settings.retry_base * 2 ** min(attempt - 1, 20)
        return timedelta(seconds=self._rng.uniform(0.5, 1.0) * min(self.settings.retry_cap, step))

    # -- the polling backstop ----------------------------------------------------------------

    async def poll_due(self) -> int:
        async with self._sessionmaker() as session:
            crms = (
                await session.scalars(
                    select(Integration).where(
                        Integration.enabled.is_(True),
                        Integration.kind.in_(
                            [k.name for k in registry.KINDS.values() if k.deals is not None]
                        ),
                    )
                )
            ).all()
        read = 0
        for integration in crms:
            if self.source(integration) is not None:
                read += await self.poll(integration.id)
        return read

    async def poll(self, integration_id: int, *, force: bool = False) -> int:
        """Read one CRM's deals changed since its cursor, if it is due and no one else does."""
        now = self._clock()
        if not await self._claim_cursor(integration_id, now, force=force):
            return 0
        context = await self._context(integration_id)
        source = self.source(context[0]) if context is not None else None
        if context is None or source is None or source.sync is None:
            await self._release_cursor(integration_id, now, None, error="")
            return 0
        integration, site = context
        sync = source.sync
        try:
            async with self._sessionmaker() as session:
                cursor = await session.get(CrmCursor, integration_id)
            since = (
                cursor.since if cursor is not None and cursor.since is not None else None
            ) or now - timedelta(days=sync.lookback_days)
            stages = list(await source.stages())
            async with self._sessionmaker.begin() as session:
                await store.save_stages(session, integration_id, stages, now)
            page = await source.modified_since(since, self.settings.poll_limit)
            read = await self.ingest(integration, site, source, page.deals, "poll")
        except IntegrationError as err:
            log.warning(
                "event=deal_poll_failed integration_id=%s error=%s", integration_id, err.message
            )
            await self._release_cursor(
                integration_id,
                now,
                None,
                error=err.message,
                due=now + min(timedelta(minutes=sync.poll_minutes), timedelta(minutes=5)),
            )
            return 0
        moved = since
        if page.next_since is not None:
            moved = max(since, page.next_since - self.settings.overlap)
            if page.more and page.next_since > since:
                moved = page.next_since  # the next page starts here; no overlap, no loop
        due = now + (timedelta(seconds=1) if page.more else timedelta(minutes=sync.poll_minutes))
        await self._release_cursor(integration_id, now, moved, error="", due=due)
        if read:
            log.info("event=deals_polled integration_id=%s deals=%s", integration_id, read)
        return read

    async def _claim_cursor(self, integration_id: int, now: datetime, *, force: bool) -> bool:
        lease = now + timedelta(seconds=self.settings.lease_seconds)
        async with self._sessionmaker.begin() as session:
            insert = insert_for(session)
            await session.execute(
                insert(CrmCursor)
                .values(integration_id=integration_id, last_error="")
                .on_conflict_do_nothing(index_elements=["integration_id"])
            )
            free = (CrmCursor.lease_until.is_(None)) | (CrmCursor.lease_until < now)
            due = (CrmCursor.due_at.is_(None)) | (CrmCursor.due_at <= now)
            result = await session.execute(
                update(CrmCursor)
                .where(CrmCursor.integration_id == integration_id, free, *(() if force else (due,)))
                .values(lease_until=lease)
                .execution_options(synchronize_session=False)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def _release_cursor(
        self,
        integration_id: int,
        now: datetime,
        since: datetime | None,
        *,
        error: str,
        due: datetime | None = None,
    ) -> None:
        values: dict[str, Any] = {
            "lease_until": None,
            "polled_at": now,
            "due_at": due,
            "last_error": error[:2000],
        }
        if since is not None:
            values["since"] = since
        async with self._sessionmaker.begin() as session:
            await session.execute(
                update(CrmCursor)
                .where(CrmCursor.integration_id == integration_id)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
