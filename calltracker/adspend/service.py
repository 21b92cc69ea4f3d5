"""Rounds of the sync: claim an account, pull its window, store it, record how it went.

The server runs `run_due` every tick (app.py); the CLI runs `sync_account` and `backfill`.
Errors never escape a round: each ends in the account's status (last error, an alert for
refused credentials) and the next round is scheduled by sync.next_attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from calltracker.adspend import accounts, registry, store
from calltracker.adspend.sync import AUTH, CONFIG, PERMANENT, TEMPORARY, Window, chunks, plan_window
from calltracker.clock import utcnow
from calltracker.db.engine import SessionMaker
from calltracker.db.models import Site
from calltracker.errors import CalltrackerError, Conflict
from calltracker.integrations.errors import (
    AuthError,
    ConfigError,
    IntegrationError,
    PermanentError,
    TemporaryError,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncSettings:
    tick_seconds: float = 60.0  # how often the server looks for due accounts
    lease_seconds: float = 1800.0  # a round longer than this loses the account to another
    batch: int = 20  # accounts claimed per tick
    max_catchup_days: int = 90
    backfill_chunk_days: int = 7

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.lease_seconds)


@dataclass(frozen=True)
class RoundResult:
    account_id: int
    window: Window
    stored: store.Stored | None = None
    error_kind: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.stored is not None


def error_kind(err: Exception) -> str:
    if isinstance(err, AuthError):
        return AUTH
    if isinstance(err, ConfigError):
        return CONFIG
    if isinstance(err, PermanentError):
        return PERMANENT
    return TEMPORARY


@dataclass
class SyncRunner:
    sessionmaker: SessionMaker
    http: aiohttp.ClientSession
    settings: SyncSettings = field(default_factory=SyncSettings)
    clock: Callable[[], datetime] = utcnow

    async def run_due(self) -> list[RoundResult]:
        """One tick: every due account this process can claim gets a round."""
        now = self.clock()
        async with self.sessionmaker.begin() as session:
            claims = await store.claim_due(session, now, self.settings.lease, self.settings.batch)
        return [await self._round(claim) for claim in claims]

    async def sync_account(self, account_id: int, window: Window | None = None) -> RoundResult:
        """A round now, due or not (its window, or the scheduled one)."""
        claim = await self._claim(account_id)
        return await self._round(claim, window)

    async def backfill(
        self,
        account_id: int,
        first: date,
        last: date,
        *,
        progress: Callable[[Window, RoundResult], Awaitable[None] | None] | None = None,
    ) -> list[RoundResult]:
        """Pull first..last in chunks, oldest first; stops at the first failed chunk."""
        claim = await self._claim(account_id)
        steps = chunks(first, last, self.settings.backfill_chunk_days)
        results: list[RoundResult] = []
        try:
            for window in steps:
                result = await self._round(claim, window, reschedule=False, release=False)
                results.append(result)
                if progress is not None:
                    maybe = progress(window, result)
                    if maybe is not None:
                        await maybe
                if not result.ok:
                    break
        finally:
            async with self.sessionmaker.begin() as session:
                await store.release(session, claim)
        return results

    async def _claim(self, account_id: int) -> store.Claim:
        async with self.sessionmaker.begin() as session:
            await accounts.get_account(session, account_id)
            claim = await store.claim_account(
                session, account_id, self.clock(), self.settings.lease
            )
        if claim is None:
            raise Conflict(
                f"ad account {account_id} is being pulled by another process; try again shortly"
            )
        return claim

    async def _window(self, account_id: int) -> tuple[str, dict[str, Any], Window]:
        async with self.sessionmaker() as session:
            account = await accounts.get_account(session, account_id)
            site = await session.get(Site, account.site_id)
            tz = ZoneInfo(site.timezone if site is not None else "UTC")
            today = self.clock().astimezone(tz).date()
            window = plan_window(
                today,
                account.lookback_days,
                account.pulled_through,
                max_catchup_days=self.settings.max_catchup_days,
            )
            return account.platform, dict(account.config), window

    async def _round(
        self,
        claim: store.Claim,
        window: Window | None = None,
        *,
        reschedule: bool = True,
        release: bool = True,
    ) -> RoundResult:
        account_id = claim.account_id
        try:
            platform, config, planned = await self._window(account_id)
        except CalltrackerError as err:  # deleted since it was claimed
            log.warning("event=adspend_account_gone account=%s error=%s", account_id, err)
            return RoundResult(account_id, window or Window(date.min, date.min), error=str(err))
        window = window or planned

        async def save_tokens(tokens: Mapping[str, Any]) -> None:
            async with self.sessionmaker.begin() as session:
                await accounts.save_tokens(session, account_id, tokens)

        try:
            connector = registry.build_connector(
                platform, config, self.http, clock=self.clock, on_tokens=save_tokens
            )
            pull = await connector.pull(window.first, window.last)
            async with self.sessionmaker.begin() as session:
                now = self.clock()
                stored = await store.store_pull(
                    session, claim, window, pull, now, self.settings.lease
                )
                await store.finish(
                    session, claim, now, window=window, reschedule=reschedule, release=release
                )
        except store.LeaseLost as err:
            log.warning("event=adspend_lease_lost account=%s error=%s", account_id, err)
            return RoundResult(account_id, window, error_kind=TEMPORARY, error=str(err))
        except (IntegrationError, ConfigError) as err:
            return await self._failed(claim, window, err, reschedule, release)
        except Exception as err:  # a bug or the database: recorded, retried, never fatal
            log.exception("event=adspend_round_crashed account=%s", account_id)
            return await self._failed(
                claim,
                window,
                TemporaryError(f"internal error ({type(err).__name__})"),
                reschedule,
                release,
            )
        log.info(
            "event=adspend_pulled account=%s platform=%s from=%s to=%s rows=%d unmapped=%d",
            account_id,
            platform,
            window.first,
            window.last,
            stored.rows,
            stored.unmapped,
        )
        return RoundResult(account_id, window, stored)

    async def _failed(
        self,
        claim: store.Claim,
        window: Window,
        err: Exception,
        reschedule: bool,
        release: bool,
    ) -> RoundResult:
        kind = error_kind(err)
        message = getattr(err, "message", None) or str(err)
        retry_after = err.retry_after if isinstance(err, TemporaryError) else None
        # Error messages never carry tokens (integrations/errors.py), so they can be logged.
        log.log(
            logging.ERROR if kind in (AUTH, CONFIG) else logging.WARNING,
            "event=adspend_pull_failed account=%s kind=%s error=%s",
            claim.account_id,
            kind,
            message,
        )
        try:
            async with self.sessionmaker.begin() as session:
                await store.finish(
                    session,
                    claim,
                    self.clock(),
                    error_kind=kind,
                    error=message,
                    retry_after=retry_after,
                    reschedule=reschedule,
                    release=release,
                )
        except Exception:
            log.exception("event=adspend_status_not_saved account=%s", claim.account_id)
        return RoundResult(claim.account_id, window, error_kind=kind, error=message)
