"""Calls to deliver in the contract tests."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from calltracker.integrations.base import LeadCall, Visit

NOW = datetime(2026, 3, 7, 10, 30, tzinfo=UTC)

VISIT = Visit(
    visit_id="v-9001",
    landing_url="https://divan.example/sofas?utm_source=yandex",
    referrer="https://yandex.ru/search/?text=divan",
    ga_client_id="123456.7654321",
    ym_client_id="1730000000123456789",
    visited_at=NOW - timedelta(minutes=20),
)

CALL = LeadCall(
    call_id=42,
    linkedid="1772879100.17",
    site_id=1,
    site_name="Divan MSK",
    tracking_number="+74950000001",
    caller="+79991234567",
    started_at=NOW - timedelta(minutes=5),
    answered_at=NOW - timedelta(minutes=5) + timedelta(seconds=12),
    ended_at=NOW - timedelta(minutes=5) + timedelta(seconds=137),
    wait_seconds=12,
    talk_seconds=125,
    status="answered",
    operator="101",
    recording_url="https://ct.example/rec/42.mp3?exp=1772880000&sig=abc",
    visit=VISIT,
    source="yandex",
    medium="cpc",
    campaign="brand_msk",
    keyword="купить диван",
    content="ad_42",
    attribution="exact",
    unique=True,
    target=True,
    stage="hangup",
    call_uuid="3f1c6a2e-5b7d-4e0a-9c1f-2d8e7b6a5c43",
)


def a_call(**changes: Any) -> LeadCall:
    """The sample call with ``changes``; a new ``call_id`` also gets its own uuid."""
    if "call_id" in changes and "call_uuid" not in changes:
        changes["call_uuid"] = f"3f1c6a2e-5b7d-4e0a-9c1f-{changes['call_id']:012d}"
    return replace(CALL, **changes)


def key(call: LeadCall, integration_id: int = 1) -> str:
    """The outbox's idempotency key for a delivery."""
    return f"{integration_id}:{call.call_id}:{call.stage}"
