"""Every ad platform in one table: its config model and its connector."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from calltracker.adspend import direct, google, vk
from calltracker.adspend.base import Connector, TokenSaver
from calltracker.clock import utcnow
from calltracker.integrations.base import ConfigShape, decode_config
from calltracker.integrations.errors import ConfigError


@dataclass(frozen=True)
class Platform:
    name: str
    title: str
    source: str  # the utm_source its ads usually carry, for the mapping form's default
    config: type[ConfigShape]  # the stored config's types, limits and secrets
    connector: Callable[..., Connector]  # (config, session, *, clock, on_tokens)

    def parse(self, raw: Mapping[str, Any]) -> Any:
        """A stored config, checked and typed; ConfigError names ``platform.field``."""
        return decode_config(self.name, self.config, raw)


PLATFORMS: Mapping[str, Platform] = {
    p.name: p
    for p in (
        Platform(
            direct.PLATFORM, "Yandex Direct", "yandex", direct.DirectConfig, direct.DirectConnector
        ),
        Platform(vk.PLATFORM, "VK Ads", "vk", vk.VkConfig, vk.VkConnector),
        Platform(
            google.PLATFORM, "Google Ads", "google", google.GoogleConfig, google.GoogleConnector
        ),
    )
}


def platform_of(name: str) -> Platform:
    platform = PLATFORMS.get(name)
    if platform is None:
        raise ConfigError(f"unknown platform {name!r}; use one of {', '.join(PLATFORMS)}")
    return platform


def parse_config(name: str, raw: Mapping[str, Any]) -> Any:
    """The stored config of one ad account, checked by its platform's model."""
    return platform_of(name).parse(raw)


def build_connector(
    name: str,
    raw: Mapping[str, Any],
    session: aiohttp.ClientSession,
    *,
    clock: Callable[[], datetime] = utcnow,
    on_tokens: TokenSaver | None = None,
) -> Connector:
    platform = platform_of(name)
    return platform.connector(platform.parse(raw), session, clock=clock, on_tokens=on_tokens)
