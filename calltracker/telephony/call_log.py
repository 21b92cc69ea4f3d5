"""The calls list: filtered, paged queries over the call table with each call's visit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from calltracker.clock import local_midnight
from calltracker.db.models import Call, Site, Visit
from calltracker.errors import Invalid, NotFound

STATUSES = ("answered", "missed", "busy", "failed", "ringing")
ATTRIBUTIONS = ("exact", "probable", "ambiguous", "static", "default", "none")
MAX_PAGE = 200
AUDIO_TYPES = {".mp3": "audio/mpeg", ".wav": "audio/wav", ".ogg": "audio/ogg", ".m4a": "audio/mp4"}


class UnknownCall(NotFound):
    code = "unknown_call"


@dataclass(frozen=True)
class CallFilter:
    site_id: int | None = None
    date_from: date | None = None  # inclusive, in the site's time zone (UTC without a site)
    date_to: date | None = None  # inclusive
    status: str | None = None
    source: str | None = None
    medium: str | None = None
    campaign: str | None = None
    attribution: str | None = None
    caller: str | None = None  # digits anywhere in the caller's number
    tracking_number: str | None = None
    operator: str | None = None
    unique_only: bool = False
    target_only: bool = False
    limit: int = 50
    offset: int = 0

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in STATUSES:
            raise Invalid(f"unknown status {self.status!r}; use one of {', '.join(STATUSES)}")
        if self.attribution is not None and self.attribution not in ATTRIBUTIONS:
            raise Invalid(
                f"unknown attribution {self.attribution!r}; use one of {', '.join(ATTRIBUTIONS)}"
            )
        if not 1 <= self.limit <= MAX_PAGE:
            raise Invalid(f"limit must be 1..{MAX_PAGE}", code="invalid_field")
        if self.offset < 0:
            raise Invalid("offset must be zero or more", code="invalid_field")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise Invalid("date_from is after date_to", code="invalid_field")


@dataclass(frozen=True)
class CallView:
    """A call as the list shows it, with the site's time zone and the visit behind it."""

    call: Call
    site_key: str
    site_timezone: str
    visit: Visit | None

    @property
    def local_started_at(self) -> datetime:
        return self.call.started_at.astimezone(ZoneInfo(self.site_timezone))


@dataclass(frozen=True)
class CallPage:
    calls: list[CallView]
    total: int
    filter: CallFilter

    @property
    def next_offset(self) -> int | None:
        end = self.filter.offset + len(self.calls)
        return end if end < self.total else None


async def _apply(
    session: AsyncSession, query: Select[tuple[Call]], f: CallFilter
) -> Select[tuple[Call]]:
    tz = "UTC"
    if f.site_id is not None:
        query = query.where(Call.site_id == f.site_id)
        tz = await session.scalar(select(Site.timezone).where(Site.id == f.site_id)) or "UTC"
    if f.date_from is not None:
        query = query.where(Call.started_at >= local_midnight(ZoneInfo(tz), f.date_from))
    if f.date_to is not None:
        query = query.where(
            Call.started_at < local_midnight(ZoneInfo(tz), f.date_to + timedelta(days=1))
        )
    for column, value in (
        (Call.status, f.status),
        (Call.source, f.source),
        (Call.medium, f.medium),
        (Call.campaign, f.campaign),
        (Call.attribution, f.attribution),
        (Call.tracking_number, f.tracking_number),
        (Call.operator, f.operator),
    ):
        if value is not None:
            query = query.where(column == value)
    if f.caller:
        digits = "".join(ch for ch in f.caller if ch.isdigit())
        if digits:
            query = query.where(Call.caller.contains(digits, autoescape=True))
    if f.unique_only:
        query = query.where(Call.unique.is_(True))
    if f.target_only:
        query = query.where(Call.target.is_(True))
    return query


async def list_calls(session: AsyncSession, f: CallFilter) -> CallPage:
    """Newest first; `total` counts every call matching the filter."""
    ids = await _apply(session, select(Call), f)
    total = await session.scalar(select(func.count()).select_from(ids.subquery())) or 0
    rows = (
        await session.execute(
            select(Call, Site.key, Site.timezone, Visit)
            .outerjoin(Site, Site.id == Call.site_id)
            .outerjoin(Visit, Visit.id == Call.visit_id)
            .where(Call.id.in_(ids.with_only_columns(Call.id).scalar_subquery()))
            .order_by(Call.started_at.desc(), Call.id.desc())
            .limit(f.limit)
            .offset(f.offset)
        )
    ).all()
    views = [CallView(call, key or "", tz or "UTC", visit) for call, key, tz, visit in rows]
    return CallPage(views, total, f)


async def get_call(session: AsyncSession, call_id: int) -> CallView:
    row = (
        await session.execute(
            select(Call, Site.key, Site.timezone, Visit)
            .outerjoin(Site, Site.id == Call.site_id)
            .outerjoin(Visit, Visit.id == Call.visit_id)
            .where(Call.id == call_id)
        )
    ).first()
    if row is None:
        raise UnknownCall(f"unknown call {call_id}")
    call, key, tz, visit = row
    return CallView(call, key or "", tz or "UTC", visit)


def recording_file(recordings_dir: Path, call: Call) -> Path:
    """The call's recording, which must lie inside recordings_dir (no ../ escapes)."""
    if not call.recording:
        raise NotFound(f"call {call.id} has no recording", code="no_recording")
    root = recordings_dir.resolve()
    path = (root / call.recording).resolve()
    if not path.is_relative_to(root) or path.suffix.lower() not in AUDIO_TYPES:
        raise NotFound(f"call {call.id} has no playable recording", code="no_recording")
    if not path.is_file():
        raise NotFound(f"the recording of call {call.id} is missing", code="no_recording")
    return path


async def distinct_values(session: AsyncSession, column: str) -> Sequence[str]:
    """Values seen in a label column, for the filter form's suggestions."""
    col = {"source": Call.source, "medium": Call.medium, "campaign": Call.campaign}[column]
    query = select(col).where(col != "").distinct().order_by(col).limit(200)
    return (await session.scalars(query)).all()
