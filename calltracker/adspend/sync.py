"""The sync's decisions, pure: which days a round pulls, when the next round is due, and how
a pull replaces what was stored.

- A scheduled round pulls the account's last `lookback_days` days up to today (default 7:
  platforms correct yesterday's figures for days, e.g. Direct's invalid-click refunds), and
  starts earlier, at the day after `pulled_through`, when an outage has left days unpulled
  (up to MAX_CATCHUP_DAYS back; older gaps are for the backfill command).
- A pulled day replaces every row the account stored for that day: a re-pull never doubles
  spend, a corrected figure overwrites the old one, and a keyword the platform no longer
  reports for the day disappears.
- Failures: a temporary one is retried with backoff (or when the platform said); refused
  credentials alert the admin and are tried again at the normal interval, and at once when the
  config changes; nothing is lost, as `pulled_through` stays where the last success left it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from calltracker.adspend.base import StatRow

MAX_CATCHUP_DAYS = 90
BACKOFF_FIRST_SECONDS = 300.0
TEMPORARY = "temporary"
AUTH = "auth"
PERMANENT = "permanent"
CONFIG = "config"
ERROR_KINDS = (TEMPORARY, AUTH, PERMANENT, CONFIG)


@dataclass(frozen=True)
class Window:
    first: date
    last: date

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]


def plan_window(
    today: date,
    lookback_days: int,
    pulled_through: date | None,
    *,
    max_catchup_days: int = MAX_CATCHUP_DAYS,
) -> Window:
    """The days a scheduled round pulls (module docstring)."""
    first = today - timedelta(days=max(1, lookback_days) - 1)
    if pulled_through is not None and pulled_through + timedelta(days=1) < first:
        first = pulled_through + timedelta(days=1)
    floor = today - timedelta(days=max_catchup_days - 1)
    return Window(max(first, floor), today)


def advance(pulled_through: date | None, window: Window) -> date | None:
    """`pulled_through` after a successful pull of `window`: moved only over contiguous days,
    so a backfill of older months never hides a gap before today."""
    if pulled_through is None:
        return window.last
    if window.first <= pulled_through + timedelta(days=1):
        return max(pulled_through, window.last)
    return pulled_through


def chunks(first: date, last: date, size: int) -> list[Window]:
    """first..last in windows of at most `size` days, oldest first (the backfill's steps)."""
    if last < first:
        return []
    out = []
    start = first
    while start <= last:
        end = min(last, start + timedelta(days=size - 1))
        out.append(Window(start, end))
        start = end + timedelta(days=1)
    return out


def next_attempt(
    now: datetime,
    *,
    kind: str,
    failures: int,
    interval: timedelta,
    retry_after: float | None = None,
) -> datetime:
    """When the next round is due after a round that ended with `kind` ("" = success);
    `failures` counts this one."""
    if kind == TEMPORARY:
        backoff = BACKOFF_FIRST_SECONDS * 2 ** max(0, failures - 1)
        wait = min(timedelta(seconds=backoff), interval)
        if retry_after is not None:
            wait = max(wait, timedelta(seconds=retry_after))
        return now + wait
    return now + interval


@dataclass(frozen=True)
class Totals:
    impressions: int = 0
    clicks: int = 0
    cost: int = 0

    def __add__(self, other: Totals) -> Totals:
        return Totals(
            self.impressions + other.impressions,
            self.clicks + other.clicks,
            self.cost + other.cost,
        )


def merge_rows(rows: Iterable[StatRow]) -> list[StatRow]:
    """One row per (day, campaign, ad group, keyword): a platform listing a key twice (e.g.
    two match types of one keyword) is added up, never stored as two."""
    merged: dict[tuple[date, str, str, str], StatRow] = {}
    for row in rows:
        old = merged.get(row.key)
        if old is None:
            merged[row.key] = row
            continue
        merged[row.key] = StatRow(
            day=row.day,
            campaign_id=row.campaign_id,
            campaign_name=row.campaign_name or old.campaign_name,
            ad_group_id=row.ad_group_id,
            ad_group_name=row.ad_group_name or old.ad_group_name,
            keyword_id=row.keyword_id,
            keyword=row.keyword or old.keyword,
            impressions=old.impressions + row.impressions,
            clicks=old.clicks + row.clicks,
            cost=old.cost + row.cost,
        )
    return list(merged.values())


def outside(rows: Iterable[StatRow], window: Window) -> list[StatRow]:
    """Rows a platform sent for days it was not asked for (they are not stored)."""
    return [r for r in rows if not window.first <= r.day <= window.last]
