"""Time: UTC now, local days as exact UTC ranges (a DST day lasts 23 or 25 hours), and dates
as stored. Storage is UTC everywhere; a site's time zone matters only for its local days."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo


def utcnow() -> datetime:
    return datetime.now(UTC)


def local_midnight(tz: ZoneInfo, day: date) -> datetime:
    return datetime.combine(day, time(0), tz).astimezone(UTC)


def utc_bounds(tz: ZoneInfo, first_day: date, last_day: date) -> tuple[datetime, datetime]:
    """[start, end) in UTC of the local days first_day..last_day."""
    return local_midnight(tz, first_day), local_midnight(tz, last_day + timedelta(days=1))


def day_bounds(
    tz: ZoneInfo, first_day: date, last_day: date
) -> list[tuple[date, datetime, datetime]]:
    """(local day, its UTC start, its UTC end) for each day of the range."""
    days = [first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1)]
    return [(d, local_midnight(tz, d), local_midnight(tz, d + timedelta(days=1))) for d in days]


def as_date(value: Any) -> date:
    """A DATE column's value: a date on PostgreSQL, an ISO string on SQLite."""
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
