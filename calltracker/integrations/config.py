"""Integrations per site: config checked by its kind's model, secrets never shown back."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from msgspec import inspect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from calltracker.clock import utcnow
from calltracker.db.integration_models import Integration
from calltracker.errors import Conflict, Invalid, NotFound
from calltracker.integrations import registry
from calltracker.integrations.base import STAGES
from calltracker.integrations.errors import ConfigError
from calltracker.integrations.outbox import store
from calltracker.settings import Secret

TRIGGERS = ("every", "unique", "target")


class UnknownIntegration(NotFound):
    code = "unknown_integration"


def parse_config(kind: str, raw: Any) -> Any:
    """The adapter's typed config; Invalid names the bad field (never a secret's value)."""
    if kind not in registry.KINDS:
        raise Invalid(f"kind must be one of {', '.join(registry.KINDS)}", code="invalid_kind")
    if not isinstance(raw, Mapping):
        raise Invalid("config must be a JSON object", code="invalid_config")
    try:
        return registry.parse_config(kind, raw)
    except ConfigError as err:
        raise Invalid(f"config: {err}", code="invalid_config") from None


def adapter_stages(kind: str, raw: Mapping[str, Any]) -> frozenset[str]:
    """The call stages this config's adapter sends."""
    stages: frozenset[str] = parse_config(kind, raw).stages
    return stages


def _is_secret(kind: inspect.Type) -> bool:
    if isinstance(kind, inspect.UnionType):
        return any(_is_secret(member) for member in kind.types)
    return isinstance(kind, inspect.CustomType) and kind.cls is Secret


def _section(kind: inspect.Type) -> inspect.StructType | None:
    """The struct a field holds (``app: Bitrix24App | None``), if it holds one."""
    if isinstance(kind, inspect.UnionType):
        return next((m for m in kind.types if isinstance(m, inspect.StructType)), None)
    return kind if isinstance(kind, inspect.StructType) else None


def _paths(
    raw: Mapping[str, Any], model: inspect.StructType | None, prefix: str = ""
) -> Iterator[tuple[str, bool]]:
    """(dotted path, is secret) of every leaf in ``raw``, by the field types of its model."""
    fields = {f.encode_name: f.type for f in model.fields} if model is not None else {}
    for key, value in raw.items():
        path = f"{prefix}{key}"
        kind = fields.get(str(key))
        if kind is None:
            # Not a field of the model (or no model): perhaps a mistyped secret, so hidden.
            if isinstance(value, Mapping):
                yield from _paths(value, None, f"{path}.")
            else:
                yield path, True
        elif _is_secret(kind):
            yield path, True
        elif isinstance(value, Mapping) and (section := _section(kind)) is not None:
            yield from _paths(value, section, f"{path}.")
        else:
            yield path, False


def _without(raw: Mapping[str, Any], hidden: set[str], prefix: str = "") -> dict[str, Any]:
    shown: dict[str, Any] = {}
    for key, value in raw.items():
        path = f"{prefix}{key}"
        if path in hidden:
            continue
        if isinstance(value, Mapping):
            inner = _without(value, hidden, f"{path}.")
            if inner:
                shown[key] = inner
        else:
            shown[key] = value
    return shown


def masked_config(kind: str, raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(the config without its secrets, the secret fields that are set)."""
    known = registry.KINDS.get(kind)
    return mask(raw, known.config if known is not None else None)


def mask(raw: Mapping[str, Any], shape: type | None) -> tuple[dict[str, Any], list[str]]:
    """(``raw`` without the fields ``shape`` types as Secret or does not know, those set)."""
    # Ad accounts (adspend/accounts.py) mask their configs the same way.
    model = inspect.type_info(shape) if shape is not None else None
    secrets = {
        path
        for path, secret in _paths(raw, model if isinstance(model, inspect.StructType) else None)
        if secret
    }
    is_set = {path for path in secrets if _value_at(raw, path) not in (None, "")}
    return _without(raw, secrets), sorted(is_set)


def _value_at(raw: Mapping[str, Any], path: str) -> Any:
    value: Any = raw
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def merge_config(stored: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``patch`` over ``stored``, nested mappings merged; a null removes the field."""
    # So a PATCH that leaves a secret out keeps it: clients never see secrets to send back.
    merged = copy.deepcopy(dict(stored))
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_config(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def check_rules(kind: str, config: Mapping[str, Any], trigger: str, stage: str) -> None:
    """Trigger and stage must make sense together and for this adapter."""
    if trigger not in TRIGGERS:
        raise Invalid(f"trigger must be one of {', '.join(TRIGGERS)}", code="invalid_field")
    if stage not in STAGES:
        raise Invalid(f"stage must be one of {', '.join(STAGES)}", code="invalid_field")
    stages = adapter_stages(kind, config)
    if not stages:
        return  # no call stage at all (Google Ads takes won deals only)
    if stage not in stages:
        raise Invalid(
            f"stage {stage!r} is not one of the stages this {kind} config sends "
            f"({', '.join(sorted(stages))}); see config.stages",
            code="invalid_field",
        )
    if trigger == "target" and stage == "ring":
        raise Invalid(
            "trigger 'target' needs stage 'hangup': a call is a target only once it ended",
            code="invalid_field",
        )


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > 200:
        raise Invalid("name must be 1 to 200 characters", code="invalid_field")
    return name.strip()


async def _check_unique_name(
    session: AsyncSession, site_id: int, name: str, own_id: int | None = None
) -> None:
    query = select(Integration.id).where(Integration.site_id == site_id, Integration.name == name)
    other = await session.scalar(query)
    if other is not None and other != own_id:
        raise Conflict(f"site {site_id} already has an integration named {name!r}")


async def create_integration(
    session: AsyncSession,
    *,
    site_id: int,
    kind: str,
    name: str,
    config: Mapping[str, Any],
    trigger: str = "every",
    stage: str = "hangup",
    enabled: bool = True,
) -> Integration:
    name = _check_name(name)
    parse_config(kind, config)
    check_rules(kind, config, trigger, stage)
    await _check_unique_name(session, site_id, name)
    now = utcnow()
    integration = Integration(
        site_id=site_id,
        kind=kind,
        name=name,
        config=dict(config),
        trigger=trigger,
        stage=stage,
        enabled=enabled,
        created_at=now,
        updated_at=now,
    )
    session.add(integration)
    await session.flush()
    return integration


async def get_integration(session: AsyncSession, integration_id: int) -> Integration:
    integration = await session.get(Integration, integration_id)
    if integration is None:
        raise UnknownIntegration(f"unknown integration {integration_id}")
    return integration


async def list_integrations(
    session: AsyncSession, site_id: int | None = None
) -> Sequence[Integration]:
    query = select(Integration).order_by(Integration.id)
    if site_id is not None:
        query = query.where(Integration.site_id == site_id)
    return (await session.scalars(query)).all()


async def update_integration(
    session: AsyncSession,
    integration: Integration,
    *,
    name: str | None = None,
    config_patch: Mapping[str, Any] | None = None,
    trigger: str | None = None,
    stage: str | None = None,
    enabled: bool | None = None,
) -> Integration:
    """Apply the given changes; new credentials make rows that failed on the old ones due now."""
    config = integration.config
    if config_patch is not None:
        config = merge_config(integration.config, config_patch)
        parse_config(integration.kind, config)
    check_rules(
        integration.kind, config, trigger or integration.trigger, stage or integration.stage
    )
    now = utcnow()
    if name is not None:
        name = _check_name(name)
        await _check_unique_name(session, integration.site_id, name, integration.id)
        integration.name = name
    if config != integration.config:
        integration.config = config  # a new dict, so the JSON column sees the change
        await store.retry_auth_failures(session, integration.id, now)
    if trigger is not None:
        integration.trigger = trigger
    if stage is not None:
        integration.stage = stage
    if enabled is not None:
        integration.enabled = enabled
    integration.updated_at = now
    await session.flush()
    return integration


async def delete_integration(session: AsyncSession, integration: Integration) -> None:
    """Remove it; its outbox rows go with it (ON DELETE CASCADE)."""
    await session.delete(integration)
    await session.flush()


async def patch_config(
    session: AsyncSession, integration_id: int, patch: Mapping[str, Any]
) -> None:
    """Merge ``patch`` (OAuth tokens an adapter refreshed) into the stored config, under a row
    lock: a refresh token is single use, so the new one must be stored whole or not at all."""
    integration = await session.scalar(
        select(Integration).where(Integration.id == integration_id).with_for_update()
    )
    if integration is None:
        raise UnknownIntegration(f"unknown integration {integration_id}")
    integration.config = merge_config(integration.config, patch)
    integration.updated_at = utcnow()


async def stored_config(session: AsyncSession, integration_id: int) -> dict[str, Any]:
    """The config as stored now (another process may have refreshed its tokens)."""
    config = await session.scalar(
        select(Integration.config).where(Integration.id == integration_id)
    )
    return dict(config or {})
