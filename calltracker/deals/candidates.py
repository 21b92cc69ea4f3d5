"""The database's side of matching: every call or visit that could have brought a deal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import phonenumbers
from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from calltracker import phones
from calltracker.db.deal_models import CrmLink
from calltracker.db.models import Call, Visit
from calltracker.deals.matching import CallRef, Candidates, VisitRef
from calltracker.deals.snapshot import CLICK_KEYS, DealSnapshot

MAX_CANDIDATES = 200  # a phone with more calls than this is a switchboard, not a customer


def caller_forms(e164: str) -> list[str]:
    """The ways a PBX may have written this caller: +7916..., 7916..., 8916..., 916..."""
    parsed = phonenumbers.parse(e164)
    national = "".join(
        ch
        for ch in phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
        if ch.isdigit()
    )
    forms = [e164, e164.removeprefix("+"), national, str(parsed.national_number)]
    return list(dict.fromkeys(forms))


def normalised(raw: Sequence[str], region: str) -> tuple[str, ...]:
    """The phones a CRM wrote, as E.164; the ones that are not phone numbers left out."""
    found = (phones.try_normalise(p, region) for p in raw)
    return tuple(dict.fromkeys(p for p in found if p))


def _ref(call: Call) -> CallRef:
    return CallRef(
        call.id,
        call.started_at,
        (call.source, call.medium, call.campaign, call.keyword),
        call.visit_id,
    )


async def _calls(session: AsyncSession, *where: Any) -> list[CallRef]:
    query = select(Call).where(*where).order_by(Call.started_at.desc()).limit(MAX_CANDIDATES)
    return [_ref(c) for c in await session.scalars(query)]


async def gather(
    session: AsyncSession,
    site_id: int,
    integration_id: int | None,
    deal: DealSnapshot,
    phone_numbers: Sequence[str],
) -> Candidates:
    """What could tie ``deal`` to a call of the site; ``phone_numbers`` are E.164."""
    named = None
    if deal.call_id is not None:
        found = await _calls(session, Call.id == deal.call_id, Call.site_id == site_id)
        named = found[0] if found else None
    own: list[CallRef] = []
    pushed: list[CallRef] = []
    if integration_id is not None:
        wanted = [("deal", deal.remote_id)]
        if deal.lead_remote_id:
            wanted.append(("lead", deal.lead_remote_id))
        linked = select(CrmLink.call_id).where(
            CrmLink.integration_id == integration_id,
            or_(*(and_(CrmLink.entity == e, CrmLink.remote_id == r) for e, r in wanted)),
        )
        own = await _calls(session, Call.id.in_(linked), Call.site_id == site_id)
        if deal.contact_remote_id:
            contact = select(CrmLink.call_id).where(
                CrmLink.integration_id == integration_id,
                CrmLink.entity == "contact",
                CrmLink.remote_id == deal.contact_remote_id,
            )
            pushed = await _calls(session, Call.id.in_(contact), Call.site_id == site_id)
    forms = [form for number in phone_numbers for form in caller_forms(number)]
    by_phone: list[CallRef] = []
    if forms:
        by_phone = await _calls(session, Call.caller.in_(forms), Call.site_id == site_id)
        if integration_id is not None and by_phone:
            sent = set(
                await session.scalars(
                    select(CrmLink.call_id).where(
                        CrmLink.integration_id == integration_id,
                        CrmLink.call_id.in_([c.call_id for c in by_phone]),
                    )
                )
            )
            pushed += [c for c in by_phone if c.call_id in sent]
    return Candidates(
        named=named,
        own=own,
        pushed=pushed,
        visits=await _visits(session, site_id, deal),
        by_phone=by_phone,
        utm=(
            deal.tracking.get("utm_source", ""),
            deal.tracking.get("utm_medium", ""),
            deal.tracking.get("utm_campaign", ""),
            deal.tracking.get("utm_term", ""),
        ),
    )


async def _visits(session: AsyncSession, site_id: int, deal: DealSnapshot) -> list[VisitRef]:
    """Visits a click id or analytics client id on the deal names, with their calls."""
    clauses: list[Any] = []
    clicks = [deal.tracking[k] for k in CLICK_KEYS if deal.tracking.get(k)]
    if clicks:
        clauses.append(Visit.click_id.in_(clicks))
    if deal.tracking.get("ym_client_id"):
        clauses.append(Visit.ym_client_id == deal.tracking["ym_client_id"])
    if deal.tracking.get("ga_client_id"):
        clauses.append(Visit.ga_client_id == deal.tracking["ga_client_id"])
    if not clauses:
        return []
    visits = list(
        await session.scalars(
            select(Visit)
            .where(Visit.site_id == site_id, or_(*clauses), Visit.is_bot.is_(False))
            .order_by(Visit.started_at.desc())
            .limit(MAX_CANDIDATES)
        )
    )
    if not visits:
        return []
    calls: dict[str, list[CallRef]] = {}
    for call in await session.scalars(
        select(Call).where(Call.visit_id.in_([v.id for v in visits]), Call.site_id == site_id)
    ):
        calls.setdefault(call.visit_id or "", []).append(_ref(call))
    return [
        VisitRef(
            v.id,
            v.started_at,
            (v.source, v.medium, v.campaign, v.keyword),
            calls.get(v.id, []),
        )
        for v in visits
    ]
