"""One adapter per integration, built once and reused, rebuilt when its stored config changes."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from calltracker.db.integration_models import Integration
from calltracker.integrations.base import Adapter, TokenStore
from calltracker.integrations.registry import build_adapter

log = logging.getLogger(__name__)

# Merges a config patch (refreshed OAuth tokens) into one integration's stored config.
PatchConfig = Callable[[int, Mapping[str, Any]], Awaitable[None]]
# Reads one integration's stored config.
LoadConfig = Callable[[int], Awaitable[Mapping[str, Any]]]


class Builder(Protocol):
    def __call__(
        self,
        name: str,
        raw: Any,
        session: aiohttp.ClientSession,
        *,
        tokens: TokenStore | None = None,
    ) -> Adapter: ...


@dataclass(frozen=True)
class StoredTokens:
    """One integration's TokenStore: its row in the integration table."""

    integration_id: int
    patch: PatchConfig
    read: LoadConfig

    async def save(self, patch: Mapping[str, Any]) -> None:
        await self.patch(self.integration_id, patch)

    async def load(self) -> Mapping[str, Any]:
        return await self.read(self.integration_id)


def fingerprint(integration: Integration) -> str:
    """Changes whenever the kind or any config value does (secrets included, never shown)."""
    blob = json.dumps([integration.kind, integration.config], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class AdapterCache:
    """Adapters keep state worth keeping (rate limiters, tokens, field lists): reuse them."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        patch_config: PatchConfig | None = None,
        load_config: LoadConfig | None = None,
        build: Builder = build_adapter,
    ) -> None:
        self._http = http
        self._patch = patch_config
        self._load = load_config
        self._build = build
        self._adapters: dict[int, tuple[str, Adapter]] = {}

    def get(self, integration: Integration) -> Adapter:
        """The adapter for the integration as stored now; ConfigError if that is invalid."""
        stamp = fingerprint(integration)
        cached = self._adapters.get(integration.id)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        adapter = self._build(
            integration.kind,
            integration.config,
            self._http,
            tokens=self._store(integration.id),
        )
        self._adapters[integration.id] = (stamp, adapter)
        if cached is not None:
            log.info(
                "event=adapter_rebuilt integration_id=%s kind=%s", integration.id, integration.kind
            )
        return adapter

    def forget(self, integration_id: int) -> None:
        self._adapters.pop(integration_id, None)

    def _store(self, integration_id: int) -> TokenStore | None:
        if self._patch is None or self._load is None:
            return None
        return StoredTokens(integration_id, self._patch, self._load)
