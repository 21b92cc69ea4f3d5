"""A TokenStore in memory: what an adapter saved, and a config another process may have saved."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from calltracker.integrations.config import merge_config


class MemoryTokens:
    def __init__(self, stored: Mapping[str, Any] | None = None) -> None:
        self.stored: dict[str, Any] = dict(stored or {})
        self.saved: list[Mapping[str, Any]] = []

    async def save(self, patch: Mapping[str, Any]) -> None:
        self.saved.append(patch)
        self.stored = merge_config(self.stored, patch)

    async def load(self) -> Mapping[str, Any]:
        return self.stored
