"""The LeadCall adapters get, built from our stored call, its visit and its site."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from calltracker import phones
from calltracker.db.models import Call, Site, Visit
from calltracker.integrations import base

# The call's signed recording URL, or "" when it has none.
RecordingLink = Callable[[Call], str]


@dataclass(frozen=True)
class StoredCall:
    call: Call
    visit: Visit | None
    site: Site | None


async def load_calls(session: AsyncSession, call_ids: Sequence[int]) -> dict[int, StoredCall]:
    """Calls by id, each with its attributed visit and its site (either may be missing)."""
    if not call_ids:
        return {}
    query = (
        select(Call, Visit, Site)
        .outerjoin(Visit, Visit.id == Call.visit_id)
        .outerjoin(Site, Site.id == Call.site_id)
        .where(Call.id.in_(call_ids))
    )
    rows = (await session.execute(query)).all()
    return {call.id: StoredCall(call, visit, site) for call, visit, site in rows}


def _e164(number: str, region: str) -> str:
    if not number:
        return ""
    if base.E164.match(number):
        return number
    # The recorder keeps a caller id it could not normalise as sent; adapters need E.164.
    return phones.try_normalise(number, region) or ""


def lead_call(stored: StoredCall, stage: str, recording_link: RecordingLink) -> base.LeadCall:
    """The call as of ``stage``; ValueError when our own data cannot make a valid LeadCall."""
    call, visit, site = stored.call, stored.visit, stored.site
    region = site.country if site is not None else "RU"
    ringing = stage == "ring"
    if call.status in base.CALL_STATUSES and not ringing:
        status = call.status
    else:
        # LeadCall has no "ringing": at ring time the call is answered or not (yet).
        status = "answered" if call.answered_at is not None else "missed"
    attribution = call.attribution if call.attribution in base.ATTRIBUTIONS else "none"
    return base.LeadCall(
        call_id=call.id,
        linkedid=call.linkedid,
        site_id=call.site_id or 0,
        site_name=site.name if site is not None else "",
        tracking_number=_e164(call.tracking_number, region) or call.tracking_number,
        caller=_e164(call.caller, region),
        started_at=call.started_at,
        answered_at=call.answered_at,
        ended_at=None if ringing else call.ended_at,
        wait_seconds=0 if ringing else call.wait_seconds,
        talk_seconds=0 if ringing else call.talk_seconds,
        status=status,  # type: ignore[arg-type]  # checked against CALL_STATUSES above
        operator=call.operator,
        recording_url="" if ringing else recording_link(call),
        visit=_visit(visit),
        source=call.source,
        medium=call.medium,
        campaign=call.campaign,
        keyword=call.keyword,
        content=visit.content if visit is not None else "",
        attribution=attribution,  # type: ignore[arg-type]  # checked against ATTRIBUTIONS
        unique=call.unique,
        target=call.target,
        stage=stage,  # type: ignore[arg-type]  # LeadCall checks it
    )


def ga_sessions(stored: str) -> dict[str, str]:
    """The visit's "STREAM.SESSION ..." column as {stream: session id}."""
    pairs = (item.partition(".") for item in stored.split())
    return {stream: session for stream, _, session in pairs if stream and session}


def _visit(visit: Visit | None) -> base.Visit | None:
    if visit is None:
        return None
    return base.Visit(
        visit_id=visit.id,
        landing_url=visit.url,
        referrer=visit.referrer,
        ga_client_id=visit.ga_client_id,
        ym_client_id=visit.ym_client_id,
        visited_at=visit.started_at,
        ga_sessions=ga_sessions(visit.ga_sessions),
        click_id=visit.click_id,
        click_id_type=visit.click_id_type,
    )
