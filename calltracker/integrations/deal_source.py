"""What a CRM that sends deals back offers: its reader's protocol and the shared config."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Protocol

from msgspec import Meta

from calltracker.deals.snapshot import DealSnapshot, StageInfo
from calltracker.integrations.base import ConfigShape


class DealSyncConfig(ConfigShape, frozen=True):
    """Deals back from a CRM: present in a CRM's config means its deals are read."""

    poll_minutes: Annotated[int, Meta(ge=1, le=1440)] = 10  # the backstop for lost webhooks
    lookback_days: Annotated[int, Meta(ge=1, le=365)] = 30  # the first poll reads this far back
    # A deal the CRM made on its own matches the caller's latest call this many days before.
    match_window_days: Annotated[int, Meta(ge=1, le=365)] = 30
    pipelines: tuple[Annotated[str, Meta(max_length=64)], ...] = ()  # only these; () all


@dataclass(frozen=True)
class Page:
    """Deals modified since a moment, oldest change first, and where the next read starts."""

    deals: Sequence[DealSnapshot]
    next_since: datetime | None  # None: nothing newer was read; keep the old cursor
    more: bool = False  # the CRM has more right now; read again soon


class DealSource(Protocol):
    """Reads deals from one CRM account, through that integration's adapter."""

    @property
    def sync(self) -> DealSyncConfig | None:
        """The deal config; None when this integration's deals are not read."""
        ...

    async def deal(self, remote_id: str) -> DealSnapshot | None:
        """The deal as it is now; None when the CRM no longer has it."""
        ...

    async def lead_deals(self, lead_id: str) -> Sequence[DealSnapshot]:
        """Deals made from a lead (Bitrix24 converts leads into deals); () elsewhere."""
        ...

    async def modified_since(self, since: datetime, limit: int) -> Page:
        """Up to about ``limit`` deals changed at or after ``since``."""
        ...

    async def contact_phones(self, contact_id: str) -> tuple[str, ...]:
        """The contact's phone numbers as the CRM keeps them."""
        ...

    async def stages(self) -> Sequence[StageInfo]:
        """Every pipeline's stages, in the CRM's order."""
        ...
