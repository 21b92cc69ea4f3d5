"""The CallRecorder observer that writes outbox rows in the same transaction as the call."""

from __future__ import annotations

import logging

from sqlalchemy import select

from calltracker.clock import utcnow
from calltracker.db.integration_models import Integration
from calltracker.db.models import Call
from calltracker.errors import Invalid
from calltracker.integrations import config as integration_config
from calltracker.integrations.outbox import store
from calltracker.telephony.calls import CallEnded, CallFact, CallStarted
from calltracker.telephony.recorder import CallChange

log = logging.getLogger(__name__)


def stage_of(fact: CallFact) -> str | None:
    """The delivery stage a call fact opens: ring at the start, hangup at the end."""
    if isinstance(fact, CallStarted):
        return "ring"
    if isinstance(fact, CallEnded):
        return "hangup"
    return None


def stages_for(integration_stage: str, adapter_stages: frozenset[str]) -> frozenset[str]:
    """Stages to enqueue: the lead's own; after a ring lead, the hangup if the adapter wants it."""
    # The hangup delivery carries the call itself: its duration, outcome and recording.
    if integration_stage == "ring":
        return frozenset({"ring"}) | (adapter_stages & {"hangup"})
    return frozenset({"hangup"})


def wanted(trigger: str, stage: str, call: Call) -> bool:
    """Does the integration's trigger take this call at this stage?"""
    if trigger == "unique":
        return call.unique
    if trigger == "target":
        # Whether a call is a target is known only once it ended.
        return stage == "hangup" and call.target
    return True


def _adapter_stages(integration: Integration) -> frozenset[str]:
    try:
        return integration_config.adapter_stages(integration.kind, integration.config)
    except Invalid:
        # A broken config must not lose the call: queue the row; the worker reports the config.
        return frozenset({integration.stage})


async def enqueue_for_call(change: CallChange) -> None:
    """Queue one row per enabled integration of the call's site that wants this stage."""
    stage = stage_of(change.fact)
    call = change.call
    if stage is None or call.site_id is None:
        return
    integrations = (
        await change.session.scalars(
            select(Integration).where(
                Integration.site_id == call.site_id, Integration.enabled.is_(True)
            )
        )
    ).all()
    now = utcnow()
    rows = [
        store.new_row(integration.id, call.id, stage, now)
        for integration in integrations
        # No stage at all: the kind takes won deals only (Google Ads), never a call.
        if (adapter := _adapter_stages(integration))
        and stage in stages_for(integration.stage, adapter)
        and wanted(integration.trigger, stage, call)
    ]
    # ON CONFLICT DO NOTHING: a fact emitted twice (a reconnect, a replay) adds nothing.
    await store.insert_rows(change.session, rows)
    if rows:
        log.info(
            "event=outbox_enqueued linkedid=%s call_id=%s stage=%s rows=%s",
            call.linkedid,
            call.id,
            stage,
            len(rows),
        )
