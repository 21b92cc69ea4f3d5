"""Bitrix24 deals back: crm.deal.get / crm.deal.list, stage names, the contact's phones."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from calltracker.deals.snapshot import DealSnapshot, StageInfo, Status
from calltracker.integrations.bitrix24 import Bitrix24Adapter
from calltracker.integrations.deal_source import DealSyncConfig, Page
from calltracker.integrations.errors import AuthError, PermanentError

log = logging.getLogger(__name__)

# STAGE_SEMANTIC_ID: P in progress, S successful, F unsuccessful (crm.deal.get).
SEMANTIC_STATUS: dict[str, Status] = {"P": "open", "S": "won", "F": "lost"}
# crm.status.list EXTRA.SEMANTICS of a stage.
STAGE_SEMANTICS: dict[str, Status] = {"process": "open", "success": "won", "failure": "lost"}
UTM = ("UTM_SOURCE", "UTM_MEDIUM", "UTM_CAMPAIGN", "UTM_CONTENT", "UTM_TERM")


def parse_time(raw: Any) -> datetime | None:
    """Bitrix24's ISO 8601 with the portal's offset, as UTC; None when empty or unreadable."""
    if not isinstance(raw, str) or not raw.strip():
        return None
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_money(raw: Any) -> int:
    """OPPORTUNITY ("19999.99") in minor units; 0 when empty."""
    try:
        value = Decimal(str(raw or "0").replace(" ", "").replace(",", "."))
    except InvalidOperation:
        return 0
    if not value.is_finite() or value < 0:
        return 0
    return int((value * 100).to_integral_value())


def _text(raw: Any) -> str:
    return "" if raw is None else str(raw).strip()


def snapshot(
    row: Mapping[str, Any],
    *,
    stages: Mapping[tuple[str, str], StageInfo],
    pipelines: Mapping[str, str],
    fields: Mapping[str, str],
    users: Mapping[str, str],
) -> DealSnapshot | None:
    """A crm.deal.get / crm.deal.list row as a snapshot; None when it has no id or date."""
    remote_id = _text(row.get("ID"))
    opened = parse_time(row.get("DATE_CREATE"))
    if not remote_id or opened is None:
        return None
    category = _text(row.get("CATEGORY_ID")) or "0"
    stage_id = _text(row.get("STAGE_ID"))
    stage = stages.get((category, stage_id))
    status = SEMANTIC_STATUS.get(_text(row.get("STAGE_SEMANTIC_ID")))
    if status is None:
        status = stage.status if stage is not None else "open"
    modified = parse_time(row.get("DATE_MODIFY"))
    closed = None
    if _text(row.get("CLOSED")) == "Y" or status != "open":
        closed = parse_time(row.get("MOVED_TIME")) or modified
    tracking = {name.lower(): _text(row.get(name)) for name in UTM if _text(row.get(name))}
    for ours, theirs in fields.items():
        if _text(row.get(theirs)):
            tracking[ours] = _text(row.get(theirs))
    manager = _text(row.get("ASSIGNED_BY_ID"))
    return DealSnapshot(
        remote_id=remote_id,
        opened_at=opened,
        title=_text(row.get("TITLE"))[:256],
        pipeline_id=category,
        pipeline_name=pipelines.get(category, ""),
        stage_id=stage_id,
        stage_name=stage.name if stage is not None else stage_id,
        status=status,
        amount=parse_money(row.get("OPPORTUNITY")),
        currency=_text(row.get("CURRENCY_ID")).upper()[:3],
        manager_id=manager,
        manager_name=users.get(manager, ""),
        closed_at=closed,
        updated_at=modified,
        lead_remote_id=_text(row.get("LEAD_ID")),
        contact_remote_id=_text(row.get("CONTACT_ID")),
        tracking=tracking,
    )


class Bitrix24Deals:
    """The deal reader of one portal, over its adapter (one rate limiter, one set of tokens)."""

    def __init__(self, adapter: Bitrix24Adapter) -> None:
        self.adapter = adapter
        self._stages: dict[tuple[str, str], StageInfo] | None = None
        self._pipelines: dict[str, str] = {}
        self._users: dict[str, str] = {}
        self._users_refused = False

    @property
    def sync(self) -> DealSyncConfig | None:
        return self.adapter.config.deals

    async def deal(self, remote_id: str) -> DealSnapshot | None:
        try:
            row = await self.adapter.call("crm.deal.get", {"id": remote_id})
        except PermanentError as err:
            # A deleted deal (or one out of our rights): "Not found".
            if "not found" in err.message.lower():
                return None
            raise
        found = await self._snapshots([row] if isinstance(row, dict) else [])
        return found[0] if found else None

    async def lead_deals(self, lead_id: str) -> Sequence[DealSnapshot]:
        rows = await self.adapter.call(
            "crm.deal.list", {"filter": {"LEAD_ID": lead_id}, "select": ["*", "UF_*"]}
        )
        return await self._snapshots(rows if isinstance(rows, list) else [])

    async def modified_since(self, since: datetime, limit: int) -> Page:
        flt: dict[str, Any] = {">=DATE_MODIFY": since.astimezone(UTC).isoformat()}
        if self.sync is not None and self.sync.pipelines:
            flt["@CATEGORY_ID"] = list(self.sync.pipelines)
        rows: list[dict[str, Any]] = []
        start: int | None = 0
        while start is not None and len(rows) < limit:
            data = await self.adapter.request(
                "crm.deal.list",
                {
                    "filter": flt,
                    "order": {"DATE_MODIFY": "ASC", "ID": "ASC"},
                    "select": ["*", "UF_*"],
                    "start": start,
                },
            )
            page = data.get("result")
            rows += [r for r in page if isinstance(r, dict)] if isinstance(page, list) else []
            nxt = data.get("next")
            start = int(str(nxt)) if str(nxt).isdigit() else None
        deals = await self._snapshots(rows)
        times = [d.updated_at for d in deals if d.updated_at is not None]
        return Page(deals, max(times) if times else None, more=start is not None)

    async def contact_phones(self, contact_id: str) -> tuple[str, ...]:
        try:
            row = await self.adapter.call("crm.contact.get", {"id": contact_id})
        except PermanentError as err:
            if "not found" in err.message.lower():
                return ()
            raise
        phones = row.get("PHONE") if isinstance(row, dict) else None
        if not isinstance(phones, list):
            return ()
        return tuple(
            str(p["VALUE"]) for p in phones if isinstance(p, dict) and _text(p.get("VALUE"))
        )

    async def stages(self) -> Sequence[StageInfo]:
        return list((await self._stage_map(refresh=True)).values())

    async def _stage_map(self, *, refresh: bool = False) -> dict[tuple[str, str], StageInfo]:
        if self._stages is not None and not refresh:
            return self._stages
        categories = await self.adapter.call("crm.dealcategory.list", {})
        names = {"0": "General"}
        for row in categories if isinstance(categories, list) else []:
            if isinstance(row, dict) and _text(row.get("ID")):
                names[_text(row["ID"])] = _text(row.get("NAME"))
        stages: dict[tuple[str, str], StageInfo] = {}
        for category, name in names.items():
            entity = "DEAL_STAGE" if category == "0" else f"DEAL_STAGE_{category}"
            rows = await self.adapter.call(
                "crm.status.list", {"filter": {"ENTITY_ID": entity}, "order": {"SORT": "ASC"}}
            )
            for row in rows if isinstance(rows, list) else []:
                if not isinstance(row, dict) or not _text(row.get("STATUS_ID")):
                    continue
                extra = row.get("EXTRA") if isinstance(row.get("EXTRA"), dict) else {}
                semantics = _text(extra.get("SEMANTICS")) if extra else ""
                stage = StageInfo(
                    pipeline_id=category,
                    pipeline_name=name,
                    stage_id=_text(row["STATUS_ID"]),
                    name=_text(row.get("NAME")),
                    sort=int(row.get("SORT") or 0) if str(row.get("SORT", "0")).isdigit() else 0,
                    status=STAGE_SEMANTICS.get(semantics, "open"),
                )
                stages[(category, stage.stage_id)] = stage
        self._stages = stages
        self._pipelines = names
        return stages

    async def _user_names(self, ids: set[str]) -> dict[str, str]:
        wanted = sorted(i for i in ids if i and i not in self._users)
        if wanted and not self._users_refused:
            try:
                rows = await self.adapter.call("user.get", {"ID": wanted})
            except (AuthError, PermanentError) as err:
                # The webhook lacks the user scope: managers show by id, which is enough.
                self._users_refused = True
                log.info("bitrix24 user names unavailable: %s", err.message)
                rows = []
            for row in rows if isinstance(rows, list) else []:
                if isinstance(row, dict) and _text(row.get("ID")):
                    full = " ".join(
                        p for p in (_text(row.get("NAME")), _text(row.get("LAST_NAME"))) if p
                    )
                    self._users[_text(row["ID"])] = full
        return self._users

    async def _snapshots(self, rows: Sequence[Mapping[str, Any]]) -> list[DealSnapshot]:
        stages = await self._stage_map()
        users = await self._user_names({_text(r.get("ASSIGNED_BY_ID")) for r in rows})
        wanted = set(self.sync.pipelines) if self.sync is not None else set()
        found = []
        for row in rows:
            deal = snapshot(
                row,
                stages=stages,
                pipelines=self._pipelines,
                fields=self.adapter.config.fields,
                users=users,
            )
            if deal is not None and (not wanted or deal.pipeline_id in wanted):
                found.append(deal)
        return found
