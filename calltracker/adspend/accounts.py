"""Ad accounts per site: config checked by the platform's parser, secrets never shown back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields, is_dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from calltracker.adspend import registry
from calltracker.adspend.sync import AUTH
from calltracker.clock import utcnow
from calltracker.db.adspend_models import AdAccount
from calltracker.errors import Conflict, Invalid, NotFound
from calltracker.integrations.config import merge_config
from calltracker.integrations.errors import ConfigError
from calltracker.settings import Secret

_SECRET_WORDS = ("secret", "token", "password")
MIN_INTERVAL_MINUTES = 30
MAX_LOOKBACK_DAYS = 60


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


def _secret_fields(platform: str, raw: Mapping[str, Any]) -> set[str]:
    try:
        parsed = registry.parse_config(platform, raw)
    except ConfigError:
        return set(raw)  # unreadable: hide every field, to be safe
    typed = (
        {f.name for f in fields(parsed) if isinstance(getattr(parsed, f.name), Secret)}
        if is_dataclass(parsed)
        else set()
    )
    return {k for k in raw if k in typed or any(w in k.lower() for w in _SECRET_WORDS)}


def masked_config(platform: str, raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(the config without its secrets, the secret fields that are set)."""
    secret = _secret_fields(platform, raw)
    shown = {k: v for k, v in raw.items() if k not in secret}
    return shown, sorted(k for k in secret if raw.get(k) not in (None, ""))


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
    interval_minutes: int = 180,
    lookback_days: int = 7,
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


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def public_view(account: AdAccount) -> dict[str, Any]:
    """What the API, the CLI and the page show: everything but secret values."""
    config, secrets_set = masked_config(account.platform, account.config)
    return {
        "id": account.id,
        "site_id": account.site_id,
        "platform": account.platform,
        "name": account.name,
        "enabled": account.enabled,
        "interval_minutes": account.interval_minutes,
        "lookback_days": account.lookback_days,
        "config": config,
        "secrets_set": secrets_set,
        "status": {
            "pulled_through": account.pulled_through.isoformat()
            if account.pulled_through
            else None,
            "next_sync_at": _iso(account.next_sync_at),
            "last_attempt_at": _iso(account.last_attempt_at),
            "last_success_at": _iso(account.last_success_at),
            "last_error": account.last_error,
            "error_kind": account.error_kind,
            "failures": account.failures,
            "alert": alert(account) or None,
        },
        "created_at": _iso(account.created_at),
        "updated_at": _iso(account.updated_at),
    }
