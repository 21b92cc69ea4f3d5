"""Delivery loops: claim due outbox rows, send them through their adapter, record what happened."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from calltracker.clock import utcnow
from calltracker.db.deal_models import Deal
from calltracker.db.engine import SessionMaker
from calltracker.db.integration_models import Integration
from calltracker.deals import links
from calltracker.integrations import config as integration_config
from calltracker.integrations.base import (
    Adapter,
    BatchAdapter,
    BatchResult,
    DealFacts,
    LeadCall,
    RevenueAdapter,
)
from calltracker.integrations.errors import ConfigError, EndpointGone
from calltracker.integrations.outbox import policy, store
from calltracker.integrations.outbox.adapters import AdapterCache, Builder
from calltracker.integrations.outbox.lead import RecordingLink, StoredCall, lead_call, load_calls
from calltracker.integrations.outbox.settings import OutboxSettings
from calltracker.integrations.outbox.store import Claimed, Due
from calltracker.integrations.registry import build_adapter

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted: the server stopped during the delivery; it will be retried"


class OutboxWorkers:
    """``settings.workers`` delivery loops, each serving one integration at a time."""

    # One integration per loop: deliveries to one remote never overlap, so its adapter's rate
    # limit holds, while the other loops serve other remotes.

    def __init__(
        self,
        sessionmaker: SessionMaker,
        http: aiohttp.ClientSession,
        settings: OutboxSettings,
        *,
        recording_link: RecordingLink,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        build: Builder | None = None,
    ) -> None:
        self.settings = settings
        self._sessionmaker = sessionmaker
        self._recording_link = recording_link
        self._clock = clock
        self._rng = rng or random.Random()
        self.adapters = AdapterCache(
            http, self._patch_config, self._load_config, build or build_adapter
        )
        self._busy: set[int] = set()  # integrations a loop of this process is serving
        self._held: dict[int, Claimed] = {}  # rows claimed and not yet finished, by row id
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._bad_configs: dict[int, str] = {}  # integration id -> config error already logged

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        for number in range(self.settings.workers):
            self._tasks.append(asyncio.create_task(self._loop(), name=f"outbox-worker-{number}"))

    def wake(self) -> None:
        """Look for due rows now rather than at the next poll (a call was just enqueued)."""
        self._wake.set()

    async def stop(self) -> None:
        """Let deliveries in flight finish for a grace period, then cancel and release them."""
        self._stopping = True
        self._wake.set()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=self.settings.shutdown_grace)
            for task in late:
                task.cancel()
            for task in late:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._tasks.clear()
        if self._held:
            await self._release(list(self._held.values()))

    async def _loop(self) -> None:
        # Wait first: the app is still starting, and a loop that runs it on another thread
        # (tests' live servers) must not find a database call of ours half-way.
        worked = 0
        while not self._stopping:
            if not worked:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)
                self._wake.clear()
                if self._stopping:
                    break
            try:
                worked = await self.run_once()
            except Exception:  # the database went away, say: log, wait, try again
                log.exception("event=outbox_loop_failed")
                worked = 0

    # -- one pass ----------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Serve every integration with due rows that no other loop serves; rows handled."""
        async with self._sessionmaker() as session:
            due = await store.due_integrations(session, self._clock())
        handled = 0
        for item in due:
            if self._stopping:
                break
            if item.integration_id in self._busy:
                continue
            self._busy.add(item.integration_id)
            try:
                handled += await self._serve(item)
            finally:
                self._busy.discard(item.integration_id)
        return handled

    async def _serve(self, due: Due) -> int:
        async with self._sessionmaker() as session:
            integration = await session.get(Integration, due.integration_id)
        if integration is None or not integration.enabled:
            return 0
        adapter = self._adapter(integration)
        if adapter is None:
            return 0
        batch = isinstance(adapter, BatchAdapter)
        handled = 0
        # One row per claim: the lease then only has to cover one delivery. Won deals go one
        # at a time even to a batch adapter: they are few, and each is its own upload.
        while handled < self.settings.drain_limit and not self._stopping:
            claimed = await self._claim(integration.id, 1, won=True if batch else None)
            if not claimed:
                break
            row, stored = claimed[0]
            await self._deliver(integration, adapter, row, stored)
            handled += 1
        if isinstance(adapter, BatchAdapter) and not self._stopping:
            handled += await self._serve_batch(integration, adapter, due)
        return handled

    def _adapter(self, integration: Integration) -> Adapter | None:
        try:
            adapter = self.adapters.get(integration)
        except ConfigError as err:
            # The API validates configs, so this is an old or hand-edited one: say so once.
            stamp = str(err)
            if self._bad_configs.get(integration.id) != stamp:
                self._bad_configs[integration.id] = stamp
                log.error(
                    "event=integration_config_invalid integration_id=%s error=%s",
                    integration.id,
                    err,
                )
            return None
        self._bad_configs.pop(integration.id, None)
        return adapter

    async def _claim(
        self, integration_id: int, limit: int, won: bool | None = None
    ) -> list[tuple[Claimed, StoredCall | None]]:
        now = self._clock()
        lease_until = now + timedelta(seconds=self.settings.lease_seconds)
        async with self._sessionmaker.begin() as session:
            rows = await store.claim(
                session, integration_id, now=now, lease_until=lease_until, limit=limit, won=won
            )
            calls = await load_calls(session, [row.call_id for row in rows])
        for row in rows:
            self._held[row.row_id] = row
        return [(row, calls.get(row.call_id)) for row in rows]

    # -- one row -----------------------------------------------------------------------------

    async def _deliver(
        self,
        integration: Integration,
        adapter: Adapter,
        row: Claimed,
        stored: StoredCall | None,
    ) -> None:
        error: BaseException | None = None
        try:
            call = self._lead_call(row, stored)
            deal = await self._deal(row) if row.stage == store.WON else None
            if deal is not None and not isinstance(adapter, RevenueAdapter):
                raise ValueError(f"{integration.kind} takes no won deals")
        except ValueError as err:  # our own data, not the remote
            outcome = policy.invalid(err)
        else:
            try:
                if deal is not None:
                    assert isinstance(adapter, RevenueAdapter)
                    result = await adapter.deliver_revenue(call, deal, row.key)
                else:
                    result = await adapter.deliver(call, row.key)
                outcome = policy.delivered(result)
            except Exception as err:
                error = err
                outcome = policy.failed(err, row.attempt, self.settings.retry, self._rng.random())
        self._log(integration, row, outcome, error)
        await self._finish(
            row,
            outcome,
            disable=isinstance(error, EndpointGone),
            crm=(integration.kind, integration.id) if integration.kind in links.CRM_KINDS else None,
        )

    def _lead_call(self, row: Claimed, stored: StoredCall | None) -> LeadCall:
        if stored is None:
            raise ValueError(f"call {row.call_id} is gone")
        # A won deal's report carries the finished call it came from.
        stage = "hangup" if row.stage == store.WON else row.stage
        return lead_call(stored, stage, self._recording_link)

    async def _deal(self, row: Claimed) -> DealFacts:
        async with self._sessionmaker() as session:
            deal = await session.get(Deal, row.deal_id) if row.deal_id is not None else None
        if deal is None:
            raise ValueError(f"deal {row.deal_id} is gone")
        if deal.status != "won":
            raise ValueError(f"deal {row.deal_id} is no longer won")
        return DealFacts(
            deal_id=deal.id,
            crm=deal.crm,
            remote_id=deal.remote_id,
            amount=deal.amount,
            currency=deal.currency,
            won_at=deal.closed_at or deal.updated_at,
            title=deal.title,
        )

    def _log(
        self,
        integration: Integration,
        row: Claimed,
        outcome: policy.Outcome,
        error: BaseException | None,
    ) -> None:
        fields = (
            f"integration_id={integration.id} kind={integration.kind} row_id={row.row_id} "
            f"key={row.key} attempt={row.attempt} state={outcome.state}"
        )
        if outcome.state == policy.DONE:
            log.info("event=outbox_delivered %s remote_ids=%s", fields, outcome.remote_ids)
        elif outcome.error_kind == policy.INTERNAL:
            log.error("event=outbox_error %s", fields, exc_info=error)
        else:
            # Adapter messages carry no URL, token or secret (integrations/errors.py).
            log.warning("event=outbox_failed %s error=%s", fields, outcome.last_error)

    async def _finish(
        self,
        row: Claimed,
        outcome: policy.Outcome,
        *,
        disable: bool = False,
        crm: tuple[str, int] | None = None,
    ) -> None:
        async with self._sessionmaker.begin() as session:
            ours = await store.finish(session, row, outcome, self._clock())
            if ours and crm is not None and outcome.state == policy.DONE:
                # What the CRM now holds for the call: how its deals find their call later.
                await links.record(
                    session, crm[0], crm[1], row.call_id, outcome.remote_ids, self._clock()
                )
            if ours and disable:
                # The receiver said 410 Gone: stop sending it anything until an admin says so.
                await store.disable_integration(session, row, self._clock())
                log.warning("event=integration_disabled key=%s reason=gone", row.key)
        self._held.pop(row.row_id, None)
        if not ours:
            # Our lease ran out and another worker took the row: its result counts.
            log.warning("event=outbox_lease_lost row_id=%s key=%s", row.row_id, row.key)

    async def _release(self, rows: Sequence[Claimed]) -> None:
        outcome = policy.Outcome(policy.FAILED, policy.TEMPORARY, INTERRUPTED)
        try:
            for row in rows:
                await self._finish(row, outcome)
        except Exception:  # the lease will free them anyway
            log.exception("event=outbox_release_failed rows=%s", len(rows))

    async def _patch_config(self, integration_id: int, patch: Mapping[str, Any]) -> None:
        async with self._sessionmaker.begin() as session:
            await integration_config.patch_config(session, integration_id, patch)

    async def _load_config(self, integration_id: int) -> Mapping[str, Any]:
        async with self._sessionmaker() as session:
            return await integration_config.stored_config(session, integration_id)

    # -- batches -----------------------------------------------------------------------------

    async def _serve_batch(self, integration: Integration, adapter: BatchAdapter, due: Due) -> int:
        """One upload (Metrica) once ``batch_size`` rows are due or the oldest waited long."""
        waited = (self._clock() - due.oldest).total_seconds()
        if due.count < self.settings.batch_size and waited < self.settings.batch_interval:
            return 0
        claimed = await self._claim(integration.id, self.settings.batch_size, won=False)
        if not claimed:
            return 0
        calls: list[LeadCall] = []
        rows: dict[int, Claimed] = {}
        for row, stored in claimed:
            try:
                calls.append(self._lead_call(row, stored))
                rows[row.call_id] = row
            except ValueError as err:
                outcome = policy.invalid(err)
                self._log(integration, row, outcome, None)
                await self._finish(row, outcome)
        try:
            result = await adapter.deliver_batch(calls)
        except Exception as err:
            for row in rows.values():
                outcome = policy.failed(err, row.attempt, self.settings.retry, self._rng.random())
                self._log(integration, row, outcome, err)
                await self._finish(row, outcome)
            return len(claimed)
        for call_id, row in rows.items():
            outcome = _batch_outcome(result, call_id)
            self._log(integration, row, outcome, None)
            await self._finish(row, outcome)
        return len(claimed)


def _batch_outcome(result: BatchResult, call_id: int) -> policy.Outcome:
    if call_id in result.sent:
        # Which upload the call went into: Metrica has no dedupe, this is what prevents a resend.
        ids = {"upload_id": result.upload_id, "upload_status": result.status}
        return policy.Outcome(policy.DONE, remote_ids=ids)
    reason = result.skipped.get(call_id, "left out of the upload")
    return policy.Outcome(policy.DONE, policy.SKIPPED, f"skipped: {reason}")
