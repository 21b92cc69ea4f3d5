"""Which of our labels a platform row's spend belongs to (pure).

Our labels are what the visit classifier reads from the landing URL: utm_source and
utm_medium (lowercased), utm_campaign, utm_term. A platform row gets them, in this order:

1. from the mapping table, (platform, campaign id) -> source / medium / campaign, which the
   admin keeps; the keyword is the platform's keyword text (what utm_term={keyword} sends);
2. from the tracking parameters the platform keeps for the ad group or the campaign (Direct's
   TrackingParams, Google's final URL suffix or tracking template, VK's ad group utm), with the
   platform's macros for ids, names and the keyword filled in;
3. else none: the row is unmapped, listed for the admin, never dropped or guessed.

A source, medium or campaign whose tracking value still holds a macro we cannot fill in (it
depends on the click, e.g. {source}) makes the row unmapped; such a macro in utm_term leaves
the keyword empty (the campaign's figures stay right).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from calltracker.adspend.base import CampaignInfo, StatRow

MAX_LABEL = 256
_MACRO = re.compile(r"\{+[^{}]*\}+")

# Platform macro -> which of the row's values it stands for. Direct's and Google's are from
# their documentation; VK Ads names ad groups "campaigns" in its legacy macros (docs/adspend.md).
MACROS: Mapping[str, Mapping[str, str]] = {
    "yandex_direct": {
        "{campaign_id}": "campaign_id",
        "{campaign_name}": "campaign_name",
        "{gbid}": "ad_group_id",
        "{keyword}": "keyword",
    },
    "google_ads": {
        "{campaignid}": "campaign_id",
        "{adgroupid}": "ad_group_id",
        "{keyword}": "keyword",
    },
    "vk_ads": {
        "{{ad_plan_id}}": "campaign_id",
        "{{campaign_id}}": "ad_group_id",
        "{{campaign_name}}": "ad_group_name",
    },
}
DEFAULT_MEDIUM = "cpc"


@dataclass(frozen=True)
class Labels:
    source: str
    medium: str
    campaign: str
    keyword: str
    how: str  # "table" | "tracking"

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.source, self.medium, self.campaign, self.keyword)


@dataclass(frozen=True)
class TableEntry:
    """One row of the admin's mapping table."""

    source: str
    medium: str
    campaign: str


def keyword_text(raw: str) -> str:
    """A keyword as utm_term={keyword} sends it: without Direct's minus-words and operators."""
    words = [w for w in raw.split() if not w.startswith("-")]
    text = " ".join(words)
    for operator in ('"', "[", "]", "!", "+"):
        text = text.replace(operator, "")
    return " ".join(text.split())[:MAX_LABEL]


def tracking_params(tracking: str) -> dict[str, str]:
    """utm_* values from a query string or a URL template ({lpurl}?utm_source=...)."""
    text = tracking.strip()
    if "?" in text:
        text = text.split("?", 1)[1]
    elif "://" in text:
        text = urlsplit(text).query
    params: dict[str, str] = {}
    for key, value in parse_qsl(text.lstrip("&"), keep_blank_values=True, errors="replace"):
        key = key.strip().lower()
        if key.startswith("utm_") and key not in params:
            params[key] = value.strip()
    return params


def _fill(value: str, platform: str, row: StatRow) -> str | None:
    """The value with the platform's macros filled in; None if one cannot be."""
    values = {
        "campaign_id": row.campaign_id,
        "campaign_name": row.campaign_name,
        "ad_group_id": row.ad_group_id,
        "ad_group_name": row.ad_group_name,
        "keyword": keyword_text(row.keyword),
    }
    for macro, field in MACROS.get(platform, {}).items():
        value = value.replace(macro, values[field])
    if _MACRO.search(value):
        return None
    return value


def _cap(value: str) -> str:
    return value.strip()[:MAX_LABEL]


def resolve(
    platform: str,
    row: StatRow,
    *,
    table: TableEntry | None,
    campaign: CampaignInfo | None,
    ad_group: CampaignInfo | None,
) -> Labels | None:
    """The row's labels (module docstring), or None when it is unmapped."""
    if table is not None:
        return Labels(
            _cap(table.source.lower()),
            _cap(table.medium.lower()),
            _cap(table.campaign),
            keyword_text(row.keyword),
            "table",
        )
    for info in (ad_group, campaign):
        if info is None or not info.tracking:
            continue
        params = tracking_params(info.tracking)
        if not params.get("utm_source"):
            continue
        source = _fill(params["utm_source"], platform, row)
        medium = _fill(params.get("utm_medium") or DEFAULT_MEDIUM, platform, row)
        name = _fill(params.get("utm_campaign", ""), platform, row)
        if source is None or medium is None or name is None:
            return None
        term = _fill(params.get("utm_term", ""), platform, row) or ""
        return Labels(
            _cap(source.lower()), _cap(medium.lower()), _cap(name), _cap(term), "tracking"
        )
    return None
