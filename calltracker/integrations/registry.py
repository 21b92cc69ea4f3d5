"""Every kind of integration in one table: its config model and its adapter."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from calltracker.clock import utcnow
from calltracker.integrations import amocrm, bitrix24, ga4, metrica, webhook
from calltracker.integrations.base import Adapter, AdapterConfig, TokenSaver, decode_config
from calltracker.integrations.errors import ConfigError


@dataclass(frozen=True)
class Kind:
    name: str
    config: type[AdapterConfig]  # a ConfigShape: the stored config's types, limits, secrets
    adapter: Callable[..., Adapter]  # (config, session, *, clock, on_tokens_refreshed)

    def parse(self, raw: Mapping[str, Any]) -> AdapterConfig:
        """A stored config, checked and typed; ConfigError names ``kind.field``."""
        return decode_config(self.name, self.config, raw)


KINDS: Mapping[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(bitrix24.KIND, bitrix24.Bitrix24Config, bitrix24.Bitrix24Adapter),
        Kind(amocrm.KIND, amocrm.AmoCrmConfig, amocrm.AmoCrmAdapter),
        Kind(webhook.KIND, webhook.WebhookConfig, webhook.WebhookAdapter),
        Kind(ga4.KIND, ga4.Ga4Config, ga4.Ga4Adapter),
        Kind(metrica.KIND, metrica.MetricaConfig, metrica.MetricaAdapter),
    )
}


def kind_of(name: str) -> Kind:
    kind = KINDS.get(name)
    if kind is None:
        raise ConfigError(f"unknown integration kind {name!r}; use one of {', '.join(KINDS)}")
    return kind


def parse_config(name: str, raw: Mapping[str, Any]) -> AdapterConfig:
    """The stored config of one integration, checked by its kind's model."""
    return kind_of(name).parse(raw)


def build_adapter(
    name: str,
    raw: Mapping[str, Any],
    session: aiohttp.ClientSession,
    *,
    clock: Callable[[], datetime] = utcnow,
    on_tokens_refreshed: TokenSaver | None = None,
) -> Adapter:
    """The adapter for one stored integration."""
    kind = kind_of(name)
    return kind.adapter(
        kind.parse(raw), session, clock=clock, on_tokens_refreshed=on_tokens_refreshed
    )
