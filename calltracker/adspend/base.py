"""The one small interface every ad platform connector implements, and what they share.

A connector pulls one account's statistics for a range of days: rows by day, campaign, ad
group and keyword with impressions, clicks and cost, plus each campaign's (or ad group's)
tracking parameters where the platform exposes them. It raises from integrations.errors:
TemporaryError (retry later), AuthError (the token was refused: alert the admin),
PermanentError (the platform rejected the request), ConfigError (the stored config is bad).
No message carries a token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Annotated, Any, Protocol

import msgspec

from calltracker.shapes import INVALID

MICROS_PER_MINOR = 10_000  # platforms count money in millionths; we keep kopecks and cents

# New tokens a connector obtained (OAuth refresh): config fields to store, so that the next
# round, or another process, uses them instead of refreshing again.
TokenSaver = Callable[[Mapping[str, Any]], Awaitable[None]]

# A config's currency: an ISO 4217 code, in either case (stored upper case by the config).
CurrencyCode = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Za-z]{3}$",
        description="ISO 4217 code",
        extra={INVALID: "must be a three-letter code such as RUB"},
    ),
]


@dataclass(frozen=True)
class StatRow:
    """One day of one keyword (or ad group, or campaign: the ids left empty) as pulled."""

    day: date
    campaign_id: str
    campaign_name: str = ""
    ad_group_id: str = ""
    ad_group_name: str = ""
    keyword_id: str = ""
    keyword: str = ""
    impressions: int = 0
    clicks: int = 0
    cost: int = 0  # minor units of the pull's currency

    @property
    def key(self) -> tuple[date, str, str, str]:
        return (self.day, self.campaign_id, self.ad_group_id, self.keyword_id)


@dataclass(frozen=True)
class CampaignInfo:
    """A campaign's (ad_group_id "") or an ad group's name and tracking parameters."""

    campaign_id: str
    ad_group_id: str = ""
    name: str = ""
    tracking: str = ""  # a query string, e.g. "utm_source=yandex&utm_medium=cpc"; "" if none


@dataclass(frozen=True)
class Pull:
    """What one account reported for first..last."""

    currency: str
    rows: list[StatRow] = field(default_factory=list)
    # Campaign info as fresh as this pull; None: not refreshed this time (keep what is stored).
    campaigns: list[CampaignInfo] | None = None


class Connector(Protocol):
    """Pulls one ad account; built by registry.build_connector from its stored config."""

    @property
    def platform(self) -> str: ...

    async def pull(self, first: date, last: date) -> Pull:
        """Statistics of the days first..last (inclusive), in the account's time zone."""
        ...


def micros_to_minor(micros: int) -> int:
    """Millionths of a currency unit to kopecks/cents, half-up: what the platform shows."""
    quotient, remainder = divmod(micros, MICROS_PER_MINOR)
    return quotient + (1 if remainder * 2 >= MICROS_PER_MINOR else 0)


def decimal_to_minor(text: str) -> int:
    """A decimal amount such as '23328.92' to minor units, half-up; ValueError if not one."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"{text!r} is not an amount") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"{text!r} is not an amount")
    return int((value * 100).quantize(Decimal(1), ROUND_HALF_UP))


def count(text: object) -> int:
    """A whole count as platforms send it: 12, "12" or "" (none)."""
    if text is None or text == "":
        return 0
    if isinstance(text, bool):
        raise ValueError("a count is a whole number")
    value = int(str(text).strip())
    if value < 0:
        raise ValueError("a count cannot be negative")
    return value
