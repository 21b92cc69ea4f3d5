"""The CRM records our outbox created or used for each call: the deals' strongest evidence."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from calltracker.db.deal_models import CrmLink
from calltracker.db.upsert import insert_for

# Remote-id keys of each CRM adapter that name a record. An amoCRM "lead" is a deal in a
# pipeline; a Bitrix24 lead is what a deal is made from (the deal's LEAD_ID).
ENTITIES = {
    "bitrix24": {"lead_id": "lead", "deal_id": "deal", "contact_id": "contact"},
    "amocrm": {"lead_id": "deal", "contact_id": "contact"},
}
CRM_KINDS = frozenset(ENTITIES)  # whose remote ids name CRM records


def links_of(kind: str, remote_ids: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(entity, remote id) pairs named in an outbox row's remote ids."""
    return [
        (entity, str(remote_ids[key]))
        for key, entity in ENTITIES.get(kind, {}).items()
        if str(remote_ids.get(key) or "").strip()
    ]


async def record(
    session: AsyncSession,
    kind: str,
    integration_id: int,
    call_id: int,
    remote_ids: Mapping[str, Any],
    now: datetime,
) -> None:
    """Keep the links of one delivered call; links seen before are skipped."""
    rows = [
        {
            "integration_id": integration_id,
            "entity": entity,
            "remote_id": remote_id[:64],
            "call_id": call_id,
            "created_at": now,
        }
        for entity, remote_id in links_of(kind, remote_ids)
    ]
    if rows:
        stmt = insert_for(session)(CrmLink).values(rows)
        await session.execute(
            stmt.on_conflict_do_nothing(
                index_elements=["integration_id", "entity", "remote_id", "call_id"]
            )
        )
