"""Ad accounts per site: config checked by the platform's parser, secrets never shown back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from calltracker.adspend import registry
from calltracker.adspend.sync import AUTH
from calltracker.clock import utcnow
from calltracker.db.adspend_models import AdAccount
from calltracker.errors import Conflict, Invalid, NotFound
from calltracker.integrations.config import mask, merge_config
from calltracker.integrations.errors import ConfigError

MIN_INTERVAL_MINUTES = 30
MAX_LOOKBACK_DAYS = 60
DEFAULT_INTERVAL_MINUTES = 180  # a round every three hours
DEFAULT_LOOKBACK_DAYS = 7  # yesterday, today and the days the platforms still correct


class UnknownAccount(NotFound):
    code = "unknown_ad_account"


def parse_config(platform: str, raw: Any) -> Any:
    """The connector's typed config; Invalid names the bad field, never a secret's value."""
    if platform not in registry.PLATFORMS:
        raise Invalid(
            f"platform must be one of {', '.join(registry.PLATFORMS)}", code="invalid_platform"
        )
    if not isinstance(raw, Mapping):
        raise Invalid("config must be a JSON object", code="invalid_config")
    try:
        return registry.parse_config(platform, raw)
    except ConfigError as err:
        raise Invalid(f"config: {err}", code="invalid_config") from None


def masked_config(platform: str, raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(the config without its secrets, the secret fields that are set)."""
    known = registry.PLATFORMS.get(platform)
    return mask(raw, known.config if known is not None else None)


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > 200:
        raise Invalid("name must be 1 to 200 characters", code="invalid_field")
    return name.strip()


def _check_schedule(interval_minutes: Any, lookback_days: Any) -> None:
    if isinstance(interval_minutes, bool) or not isinstance(interval_minutes, int):
        raise Invalid("interval_minutes must be a whole number", code="invalid_field")
    if not MIN_INTERVAL_MINUTES <= interval_minutes <= 24 * 60:
        raise Invalid(
            f"interval_minutes must be from {MIN_INTERVAL_MINUTES} to 1440", code="invalid_field"
        )
    if isinstance(lookback_days, bool) or not isinstance(lookback_days, int):
        raise Invalid("lookback_days must be a whole number", code="invalid_field")
    if not 1 <= lookback_days <= MAX_LOOKBACK_DAYS:
        raise Invalid(f"lookback_days must be from 1 to {MAX_LOOKBACK_DAYS}", code="invalid_field")


async def _check_unique_name(
    session: AsyncSession, site_id: int, name: str, own_id: int | None = None
) -> None:
    other = await session.scalar(
        select(AdAccount.id).where(AdAccount.site_id == site_id, AdAccount.name == name)
    )
    if other is not None and other != own_id:
        raise Conflict(f"site {site_id} already has an ad account named {name!r}")


async def create_account(
    session: AsyncSession,
    *,
    site_id: int,
    platform: str,
    name: str,
    config: Mapping[str, Any],
    enabled: bool = True,
    interval_minutes: int = DEFAULT_INTERVAL_MINUTES,
    lookback_days: int = DEFAULT_LOOKBACK_DAYS,
) -> AdAccount:
    name = _check_name(name)
    parse_config(platform, config)
    _check_schedule(interval_minutes, lookback_days)
    await _check_unique_name(session, site_id, name)
    now = utcnow()
    account = AdAccount(
        site_id=site_id,
        platform=platform,
        name=name,
        config=dict(config),
        enabled=enabled,
        interval_minutes=interval_minutes,
        lookback_days=lookback_days,
        next_sync_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(account)
    await session.flush()
    return account


async def get_account(session: AsyncSession, account_id: int) -> AdAccount:
    account = await session.get(AdAccount, account_id)
    if account is None:
        raise UnknownAccount(f"unknown ad account {account_id}")
    return account


async def list_accounts(session: AsyncSession, site_id: int | None = None) -> Sequence[AdAccount]:
    query = select(AdAccount).order_by(AdAccount.id)
    if site_id is not None:
        query = query.where(AdAccount.site_id == site_id)
    return (await session.scalars(query)).all()


async def update_account(
    session: AsyncSession,
    account: AdAccount,
    *,
    name: str | None = None,
    config_patch: Mapping[str, Any] | None = None,
    enabled: bool | None = None,
    interval_minutes: int | None = None,
    lookback_days: int | None = None,
) -> AdAccount:
    """Apply the changes; new credentials make the account due at once."""
    now = utcnow()
    if config_patch is not None:
        config = merge_config(account.config, config_patch)
        parse_config(account.platform, config)
        if config != account.config:
            account.config = config  # a new dict, so the JSON column sees the change
            account.next_sync_at = now
    _check_schedule(
        interval_minutes if interval_minutes is not None else account.interval_minutes,
        lookback_days if lookback_days is not None else account.lookback_days,
    )
    if name is not None:
        name = _check_name(name)
        await _check_unique_name(session, account.site_id, name, account.id)
        account.name = name
    if enabled is not None:
        if enabled and not account.enabled:
            account.next_sync_at = now
        account.enabled = enabled
    if interval_minutes is not None:
        account.interval_minutes = interval_minutes
    if lookback_days is not None:
        account.lookback_days = lookback_days
    account.updated_at = now
    await session.flush()
    return account


async def request_sync(session: AsyncSession, account: AdAccount) -> None:
    """Make the account due now: the sync loop pulls it within a tick."""
    account.next_sync_at = utcnow()
    await session.flush()


async def delete_account(session: AsyncSession, account: AdAccount) -> None:
    """Remove it with everything it pulled (its spend rows go too: ON DELETE CASCADE)."""
    await session.delete(account)
    await session.flush()


async def save_tokens(session: AsyncSession, account_id: int, tokens: Mapping[str, Any]) -> None:
    """Keep OAuth tokens a connector refreshed, so the next round and other processes use them."""
    account = await get_account(session, account_id)
    account.config = {**account.config, **tokens}
    account.updated_at = utcnow()


def alert(account: AdAccount) -> str:
    """What an admin must act on, or "": the platform refused the account's credentials."""
    if account.error_kind != AUTH:
        return ""
    since = (
        f"days after {account.pulled_through.isoformat()} are not pulled yet"
        if account.pulled_through
        else "nothing was pulled yet"
    )
    return (
        f"{account.last_error} — update the account's token (the spend is not lost: "
        f"{since}, and the first successful round pulls them)"
    )


class AccountStatus(msgspec.Struct, frozen=True, kw_only=True):
    """How an account's sync is going."""

    pulled_through: date | None  # every day up to this one is pulled
    next_sync_at: datetime
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    last_error: str
    error_kind: str  # "", or what kind of failure the last error was (AUTH: an alert)
    failures: int  # rounds failed in a row
    alert: str | None  # what an admin must act on


class AccountView(msgspec.Struct, frozen=True, kw_only=True):
    """An ad account as the API, the CLI and the page show it: no secret values."""

    id: int
    site_id: int
    platform: str
    name: str
    enabled: bool
    interval_minutes: int
    lookback_days: int
    config: dict[str, Any]  # every field but the secrets
    secrets_set: list[str]  # the secret fields that have a value
    status: AccountStatus
    created_at: datetime
    updated_at: datetime


def public_view(account: AdAccount) -> AccountView:
    """What the API, the CLI and the page show: everything but secret values."""
    config, secrets_set = masked_config(account.platform, account.config)
    return AccountView(
        id=account.id,
        site_id=account.site_id,
        platform=account.platform,
        name=account.name,
        enabled=account.enabled,
        interval_minutes=account.interval_minutes,
        lookback_days=account.lookback_days,
        config=config,
        secrets_set=secrets_set,
        status=AccountStatus(
            pulled_through=account.pulled_through,
            next_sync_at=account.next_sync_at,
            last_attempt_at=account.last_attempt_at,
            last_success_at=account.last_success_at,
            last_error=account.last_error,
            error_kind=account.error_kind,
            failures=account.failures,
            alert=alert(account) or None,
        ),
        created_at=account.created_at,
        updated_at=account.updated_at,
    )
