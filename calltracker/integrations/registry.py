"""Every kind of integration in one table: its config model, its adapter, its deal reader."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from calltracker.clock import utcnow
from calltracker.integrations import (
    amocrm,
    amocrm_deals,
    bitrix24,
    bitrix24_deals,
    ga4,
    google_ads,
    metrica,
    webhook,
)
from calltracker.integrations.base import Adapter, AdapterConfig, TokenStore, decode_config
from calltracker.integrations.deal_source import DealSource
from calltracker.integrations.errors import ConfigError


@dataclass(frozen=True)
class Kind:
    name: str
    config: type[AdapterConfig]  # a ConfigShape: the stored config's types, limits, secrets
    adapter: Callable[..., Adapter]  # (config, session, *, clock, tokens)
    # CRMs whose deals come back: the reader over that kind's adapter.
    deals: Callable[[Any], DealSource] | None = None
    # What an admin must act on soon (a token about to lapse), from the typed config.
    warnings: Callable[[Any, datetime], list[str]] | None = None

    def parse(self, raw: Mapping[str, Any]) -> AdapterConfig:
        """A stored config, checked and typed; ConfigError names ``kind.field``."""
        return decode_config(self.name, self.config, raw)


KINDS: Mapping[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            bitrix24.KIND,
            bitrix24.Bitrix24Config,
            bitrix24.Bitrix24Adapter,
            bitrix24_deals.Bitrix24Deals,
        ),
        Kind(
            amocrm.KIND,
            amocrm.AmoCrmConfig,
            amocrm.AmoCrmAdapter,
            amocrm_deals.AmoCrmDeals,
            amocrm.warnings,
        ),
        Kind(webhook.KIND, webhook.WebhookConfig, webhook.WebhookAdapter),
        Kind(ga4.KIND, ga4.Ga4Config, ga4.Ga4Adapter),
        Kind(metrica.KIND, metrica.MetricaConfig, metrica.MetricaAdapter),
        Kind(google_ads.KIND, google_ads.GoogleAdsConfig, google_ads.GoogleAdsAdapter),
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


def warnings(name: str, raw: Mapping[str, Any], now: datetime) -> list[str]:
    """What the integration's admin must act on soon; [] for a config that does not parse."""
    kind = KINDS.get(name)
    if kind is None or kind.warnings is None:
        return []
    try:
        return kind.warnings(kind.parse(raw), now)
    except ConfigError:
        return []


def build_adapter(
    name: str,
    raw: Mapping[str, Any],
    session: aiohttp.ClientSession,
    *,
    clock: Callable[[], datetime] = utcnow,
    tokens: TokenStore | None = None,
) -> Adapter:
    """The adapter for one stored integration."""
    kind = kind_of(name)
    return kind.adapter(kind.parse(raw), session, clock=clock, tokens=tokens)
