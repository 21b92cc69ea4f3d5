"""Call cards for the operator console: built from stored calls, published to the hub."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select

from calltracker.db.engine import SessionMaker
from calltracker.db.integration_models import Integration, OutboxRow
from calltracker.db.models import Call, Visit
from calltracker.integrations.outbox.policy import DONE
from calltracker.operator.hub import LiveCard, OperatorHub
from calltracker.telephony.calls import CallAnswered, CallEnded, OperatorRinging
from calltracker.telephony.matching import CatalogSource
from calltracker.telephony.recorder import RINGING, CallChange

log = logging.getLogger(__name__)

HISTORY_LIMIT = 5
BUILD_TIMEOUT = 2.0  # the observer runs in the AMI listener's path: never hold it long
# Fields of a card that come from the visit and earlier calls: read once per call.
DETAIL_KEYS = ("site", "timezone", "visit", "history")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def card_state(call: Call) -> str:
    if call.status != RINGING:
        return "ended"
    return "answered" if call.answered_at is not None else "ringing"


def card_data(
    call: Call, details: Mapping[str, Any], lead: Mapping[str, str] | None, version: int
) -> dict[str, Any]:
    """The JSON the console renders. Every string in it is shown as text (operator.js)."""
    state = card_state(call)
    return {
        "id": call.linkedid,
        "call_id": call.id,
        "version": version,
        "state": state,
        "status": call.status,
        "caller": call.caller,
        "tracking_number": call.tracking_number,
        "started_at": _iso(call.started_at),
        "answered_at": _iso(call.answered_at),
        "ended_at": _iso(call.ended_at),
        "wait_seconds": call.wait_seconds,
        "talk_seconds": call.talk_seconds,
        "answered_by": call.operator if call.answered_at is not None else "",
        "source": call.source,
        "medium": call.medium,
        "campaign": call.campaign,
        "keyword": call.keyword,
        "attribution": call.attribution,
        "unique": call.unique,
        "lead": dict(lead) if lead else None,
        **{key: details.get(key) for key in DETAIL_KEYS},
    }


def lead_link(
    kind: str, config: Mapping[str, Any], remote_ids: Mapping[str, Any]
) -> dict[str, str]:
    """The CRM page of the lead (or contact) an outbox delivery made; {} if there is none.

    Only the portal's scheme and host are taken from the config: a Bitrix24 webhook URL
    carries its secret code in the path.
    """
    if kind == "bitrix24":
        app = config.get("app")
        portal = app.get("portal_url", "") if isinstance(app, Mapping) else ""
        base = _origin(str(portal or config.get("webhook_url", "")))
        pages = (
            ("lead_id", "crm/lead/details/{}/", "lead"),
            ("contact_id", "crm/contact/details/{}/", "contact"),
        )
        label = "Bitrix24"
    elif kind == "amocrm":
        base = _origin(str(config.get("base_url", "")))
        pages = (
            ("lead_id", "leads/detail/{}", "lead"),
            ("contact_id", "contacts/detail/{}", "contact"),
        )
        label = "amoCRM"
    else:
        return {}
    if not base:
        return {}
    for key, path, what in pages:
        value = str(remote_ids.get(key, ""))
        if value.isdigit():
            return {"url": f"{base}/{path.format(value)}", "label": f"{label} {what} {value}"}
    return {}


def _origin(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


class CardMaker:
    """The recorder's after-commit observer: one card per call, updated on each fact."""

    def __init__(
        self,
        sessionmaker: SessionMaker,
        catalog: CatalogSource,
        hub: OperatorHub,
        *,
        history_limit: int = HISTORY_LIMIT,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._catalog = catalog
        self._hub = hub
        self._history_limit = history_limit
        # One card change at a time, versions taken inside: a lead refresh and a fact about
        # the same call cannot overtake each other (asyncio.Lock is first come, first served).
        self._lock = asyncio.Lock()

    async def __call__(self, change: CallChange) -> None:
        try:
            async with asyncio.timeout(BUILD_TIMEOUT), self._lock:
                await self._build(change)
        except TimeoutError:
            log.warning("event=operator_card_slow linkedid=%s", change.call.linkedid)

    async def _build(self, change: CallChange) -> None:
        version = time.time_ns()
        call, fact = change.call, change.fact
        known = self._hub.get(call.linkedid)
        if known is None and isinstance(fact, CallEnded):
            return  # nobody was shown this call (a CDR-only call, or a restart): no pop-up now
        extensions = set(known.extensions) if known is not None else set()
        if isinstance(fact, OperatorRinging | CallAnswered) and fact.extension:
            extensions.add(fact.extension)
        if known is not None:
            details: Mapping[str, Any] = known.data
            lead = known.data.get("lead")
        else:
            details = await self._details(call)
            lead = None
        if lead is None and isinstance(fact, CallEnded):
            lead = (await self._leads([call.id])).get(call.id)
        data = card_data(call, details, lead, version)
        card = LiveCard(
            call.linkedid,
            frozenset(extensions),
            data,
            ended=data["state"] == "ended",
            version=version,
            updated_at=time.time(),
        )
        await self._hub.publish(card)

    async def _details(self, call: Call) -> dict[str, Any]:
        site = self._catalog.current.sites_by_id.get(call.site_id) if call.site_id else None
        async with self._sessionmaker() as session:
            visit = await session.get(Visit, call.visit_id) if call.visit_id else None
            history: list[dict[str, Any]] = []
            total = 0
            if call.caller:
                earlier = (Call.caller == call.caller, Call.id != call.id)
                total = await session.scalar(select(func.count()).where(*earlier)) or 0
                rows = await session.execute(
                    select(Call.started_at, Call.source, Call.medium, Call.status)
                    .where(*earlier)
                    .order_by(Call.started_at.desc())
                    .limit(self._history_limit)
                )
                history = [
                    {
                        "started_at": _iso(r.started_at),
                        "source": r.source,
                        "medium": r.medium,
                        "status": r.status,
                    }
                    for r in rows
                ]
        return {
            "site": site.name if site is not None else "",
            "timezone": site.timezone if site is not None else "UTC",
            "visit": (
                {
                    "url": visit.url,
                    "referrer": visit.referrer,
                    "started_at": _iso(visit.started_at),
                }
                if visit is not None
                else None
            ),
            "history": {"total": total, "calls": history},
        }

    async def _leads(self, call_ids: Iterable[int]) -> dict[int, dict[str, str]]:
        ids = list(call_ids)
        if not ids:
            return {}
        async with self._sessionmaker() as session:
            rows = await session.execute(
                select(
                    OutboxRow.call_id, OutboxRow.remote_ids, Integration.kind, Integration.config
                )
                .join(Integration, Integration.id == OutboxRow.integration_id)
                .where(
                    OutboxRow.call_id.in_(ids),
                    OutboxRow.state == DONE,
                    Integration.kind.in_(("bitrix24", "amocrm")),
                )
                .order_by(OutboxRow.id)
            )
            found: dict[int, dict[str, str]] = {}
            for call_id, remote_ids, kind, config in rows:
                link = lead_link(kind, config or {}, remote_ids or {})
                if link and call_id not in found:
                    found[call_id] = link
        return found

    async def refresh_leads(self) -> int:
        """Add the CRM link to the cards built here that lack it; how many got one."""
        async with self._lock:
            return await self._refresh_leads()

    async def _refresh_leads(self) -> int:
        waiting = {
            c.data["call_id"]: c
            for c in self._hub.cards()
            if c.origin == self._hub.id and c.data.get("lead") is None and c.data.get("call_id")
        }
        if not waiting:
            return 0
        leads = await self._leads(waiting)
        for call_id, lead in leads.items():
            old = waiting[call_id]
            version = time.time_ns()
            data = {**old.data, "lead": lead, "version": version}
            await self._hub.publish(
                LiveCard(old.linkedid, old.extensions, data, old.ended, version, time.time())
            )
        return len(leads)

    async def run_lead_refresh(self, every: float = 2.0) -> None:
        """The outbox worker records remote ids after the call's facts: look every few seconds."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.refresh_leads()
            except Exception as err:  # a DB hiccup: the next round tries again
                log.warning("event=operator_lead_refresh_failed error=%r", err)
