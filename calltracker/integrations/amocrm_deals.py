"""amoCRM deals back: its "leads" (deals in a pipeline), pipelines and statuses, contacts."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from calltracker.deals.snapshot import DealSnapshot, StageInfo, Status
from calltracker.integrations.amocrm import AmoCrmAdapter
from calltracker.integrations.deal_source import DealSyncConfig, Page
from calltracker.integrations.errors import AuthError, PermanentError

log = logging.getLogger(__name__)

WON, LOST = 142, 143  # every pipeline's closed statuses: "successfully realized", "closed lost"
PAGE = 250  # the largest page /api/v4/leads gives
# tracking_data codes -> our tracking keys (deals.snapshot).
TRACKING = {
    "UTM_SOURCE": "utm_source",
    "UTM_MEDIUM": "utm_medium",
    "UTM_CAMPAIGN": "utm_campaign",
    "UTM_CONTENT": "utm_content",
    "UTM_TERM": "utm_term",
    "GCLID": "gclid",
    "YCLID": "yclid",
    "_YM_UID": "ym_client_id",
    "GCLIENTID": "ga_client_id",
}


def status_of(status_id: Any) -> Status:
    if status_id == WON:
        return "won"
    if status_id == LOST:
        return "lost"
    return "open"


def _time(raw: Any) -> datetime | None:
    if isinstance(raw, int | float) and not isinstance(raw, bool) and raw > 0:
        return datetime.fromtimestamp(raw, UTC)
    return None


def _tracking(fields: Any) -> dict[str, str]:
    found: dict[str, str] = {}
    for field in fields if isinstance(fields, list) else []:
        if not isinstance(field, dict) or field.get("field_code") not in TRACKING:
            continue
        values = field.get("values") or []
        value = values[0].get("value") if values and isinstance(values[0], dict) else None
        if value not in (None, ""):
            found[TRACKING[str(field["field_code"])]] = str(value)
    return found


def snapshot(
    lead: Mapping[str, Any],
    *,
    stages: Mapping[tuple[str, str], StageInfo],
    users: Mapping[str, str],
    currency: str,
) -> DealSnapshot | None:
    """One lead of /api/v4/leads as a snapshot; None without an id or a creation time."""
    remote_id = str(lead.get("id") or "")
    opened = _time(lead.get("created_at"))
    if not remote_id.isdigit() or opened is None:
        return None
    pipeline = str(lead.get("pipeline_id") or "")
    stage_id = str(lead.get("status_id") or "")
    stage = stages.get((pipeline, stage_id))
    status = status_of(lead.get("status_id"))
    contacts = (lead.get("_embedded") or {}).get("contacts") or []
    main = [c for c in contacts if isinstance(c, dict) and c.get("is_main")] or [
        c for c in contacts if isinstance(c, dict)
    ]
    manager = str(lead.get("responsible_user_id") or "")
    price = lead.get("price")
    return DealSnapshot(
        remote_id=remote_id,
        opened_at=opened,
        title=str(lead.get("name") or "")[:256],
        pipeline_id=pipeline,
        pipeline_name=stage.pipeline_name if stage is not None else "",
        stage_id=stage_id,
        stage_name=stage.name if stage is not None else stage_id,
        status=status,
        # price is whole units of the account's currency.
        amount=int(price) * 100 if isinstance(price, int) and price > 0 else 0,
        currency=currency,
        manager_id=manager,
        manager_name=users.get(manager, ""),
        closed_at=_time(lead.get("closed_at")) if status != "open" else None,
        updated_at=_time(lead.get("updated_at")),
        contact_remote_id=str(main[0].get("id") or "") if main else "",
        tracking=_tracking(lead.get("custom_fields_values")),
    )


class AmoCrmDeals:
    """The deal reader of one account, over its adapter (one limiter, one set of tokens)."""

    def __init__(self, adapter: AmoCrmAdapter) -> None:
        self.adapter = adapter
        self._stages: dict[tuple[str, str], StageInfo] | None = None
        self._users: dict[str, str] = {}
        self._users_refused = False

    @property
    def sync(self) -> DealSyncConfig | None:
        return self.adapter.config.deals

    @property
    def _currency(self) -> str:
        deals = self.adapter.config.deals
        return deals.currency if deals is not None else "RUB"

    async def deal(self, remote_id: str) -> DealSnapshot | None:
        if not remote_id.isdigit():
            return None
        try:
            lead = await self.adapter.request(
                "GET", f"/api/v4/leads/{remote_id}", params={"with": "contacts"}
            )
        except PermanentError as err:
            if err.status == 404:
                return None
            raise
        found = await self._snapshots([lead] if isinstance(lead, dict) else [])
        return found[0] if found else None

    async def lead_deals(self, lead_id: str) -> Sequence[DealSnapshot]:
        return ()  # an amoCRM lead is the deal itself

    async def modified_since(self, since: datetime, limit: int) -> Page:
        params: dict[str, str] = {
            "filter[updated_at][from]": str(int(since.timestamp())),
            "order[updated_at]": "asc",
            "with": "contacts",
            "limit": str(PAGE),
        }
        if self.sync is not None:
            for n, pipeline in enumerate(self.sync.pipelines):
                params[f"filter[pipeline_id][{n}]"] = pipeline
        leads: list[dict[str, Any]] = []
        page, more = 1, True
        while more and len(leads) < limit:
            data = await self.adapter.request(
                "GET", "/api/v4/leads", params={**params, "page": str(page)}
            )
            if not isinstance(data, dict):  # 204: nothing (more) changed
                more = False
                break
            chunk = (data.get("_embedded") or {}).get("leads") or []
            leads += [lead for lead in chunk if isinstance(lead, dict)]
            more = bool((data.get("_links") or {}).get("next")) and bool(chunk)
            page += 1
        deals = await self._snapshots(leads)
        times = [d.updated_at for d in deals if d.updated_at is not None]
        return Page(deals, max(times) if times else None, more=more)

    async def contact_phones(self, contact_id: str) -> tuple[str, ...]:
        if not contact_id.isdigit():
            return ()
        try:
            contact = await self.adapter.request("GET", f"/api/v4/contacts/{contact_id}")
        except PermanentError as err:
            if err.status == 404:
                return ()
            raise
        phones: list[str] = []
        for field in (contact or {}).get("custom_fields_values") or []:
            if isinstance(field, dict) and field.get("field_code") == "PHONE":
                phones += [
                    str(v["value"])
                    for v in field.get("values") or []
                    if isinstance(v, dict) and v.get("value")
                ]
        return tuple(phones)

    async def stages(self) -> Sequence[StageInfo]:
        return list((await self._stage_map(refresh=True)).values())

    async def _stage_map(self, *, refresh: bool = False) -> dict[tuple[str, str], StageInfo]:
        if self._stages is not None and not refresh:
            return self._stages
        data = await self.adapter.request("GET", "/api/v4/leads/pipelines")
        stages: dict[tuple[str, str], StageInfo] = {}
        pipelines = ((data or {}).get("_embedded") or {}).get("pipelines") or []
        for pipeline in pipelines:
            if not isinstance(pipeline, dict):
                continue
            pid = str(pipeline.get("id") or "")
            statuses = (pipeline.get("_embedded") or {}).get("statuses") or []
            for status in statuses:
                if not isinstance(status, dict) or "id" not in status:
                    continue
                sort = status.get("sort")
                stage = StageInfo(
                    pipeline_id=pid,
                    pipeline_name=str(pipeline.get("name") or ""),
                    stage_id=str(status["id"]),
                    name=str(status.get("name") or ""),
                    sort=sort if isinstance(sort, int) else 0,
                    status=status_of(status["id"]),
                )
                stages[(pid, stage.stage_id)] = stage
        self._stages = stages
        return stages

    async def _user_names(self, ids: set[str]) -> dict[str, str]:
        for user_id in sorted(i for i in ids if i.isdigit() and i not in self._users):
            if self._users_refused:
                break
            try:
                user = await self.adapter.request("GET", f"/api/v4/users/{user_id}")
            except (AuthError, PermanentError) as err:
                # Reading users needs the users right; managers then show by id.
                self._users_refused = True
                log.info("amocrm user names unavailable: %s", err.message)
                break
            if isinstance(user, dict):
                self._users[user_id] = str(user.get("name") or "")
        return self._users

    async def _snapshots(self, leads: Sequence[Mapping[str, Any]]) -> list[DealSnapshot]:
        stages = await self._stage_map()
        users = await self._user_names({str(x.get("responsible_user_id") or "") for x in leads})
        wanted = set(self.sync.pipelines) if self.sync is not None else set()
        found = []
        for lead in leads:
            deal = snapshot(lead, stages=stages, users=users, currency=self._currency)
            if deal is not None and (not wanted or deal.pipeline_id in wanted):
                found.append(deal)
        return found
