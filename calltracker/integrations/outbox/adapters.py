"""One adapter per integration, built once and reused, rebuilt when its stored config changes."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiohttp

from calltracker.db.integration_models import Integration
from calltracker.integrations.base import Adapter, TokenSaver
from calltracker.integrations.registry import build_adapter
from calltracker.settings import Secret

log = logging.getLogger(__name__)

# Persists refreshed OAuth tokens of one integration (its id first).
SaveTokens = Callable[[int, Secret, Secret], Awaitable[None]]


class Builder(Protocol):
    def __call__(
        self,
        name: str,
        raw: Any,
        session: aiohttp.ClientSession,
        *,
        on_tokens_refreshed: TokenSaver | None = None,
    ) -> Adapter: ...


def fingerprint(integration: Integration) -> str:
    """Changes whenever the kind or any config value does (secrets included, never shown)."""
    blob = json.dumps([integration.kind, integration.config], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class AdapterCache:
    """Adapters keep state worth keeping (rate limiters, tokens, field lists): reuse them."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        save_tokens: SaveTokens | None = None,
        build: Builder = build_adapter,
    ) -> None:
        self._http = http
        self._save_tokens = save_tokens
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
            on_tokens_refreshed=self._saver(integration.id),
        )
        self._adapters[integration.id] = (stamp, adapter)
        if cached is not None:
            log.info(
                "event=adapter_rebuilt integration_id=%s kind=%s", integration.id, integration.kind
            )
        return adapter

    def forget(self, integration_id: int) -> None:
        self._adapters.pop(integration_id, None)

    def _saver(self, integration_id: int) -> TokenSaver | None:
        save = self._save_tokens
        if save is None:
            return None

        async def saver(access_token: Secret, refresh_token: Secret) -> None:
            await save(integration_id, access_token, refresh_token)

        return saver
