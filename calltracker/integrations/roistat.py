"""Roistat's call-tracking webhook body, so consumers written for Roistat take our webhooks as is."""

from __future__ import annotations

from datetime import UTC
from typing import Any
from urllib.parse import urlsplit

from calltracker.integrations.base import LeadCall


def build_payload(call: LeadCall) -> dict[str, Any]:
    """The Roistat JSON for a call; ``status``, ``duration`` and ``file_url`` are our own guess."""
    # Roistat's after-call fields could not be confirmed (integrations.md section 6).
    visit = call.visit
    landing = visit.landing_url if visit else ""
    parts = urlsplit(landing) if landing else None
    referrer_host = urlsplit(visit.referrer).hostname if visit and visit.referrer else None
    payload: dict[str, Any] = {
        "id": str(call.call_id),
        # Roistat sends numbers as bare digits, without the +.
        "caller": call.caller.lstrip("+"),
        "callee": call.tracking_number.lstrip("+"),
        "visit_id": visit.visit_id if visit else None,
        "marker": "_".join(part for part in (call.source, call.medium) if part) or None,
        "order_id": None,
        "date": call.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "google_client_id": (visit.ga_client_id or None) if visit else None,
        "custom_fields": [],
        "landing_page": (parts.netloc + parts.path) if parts else None,
        "domain": parts.hostname if parts else None,
        "city": None,
        "country": None,
        "ip": None,
        "first_visit": None,
        "referrer": referrer_host,
        "utm_source": call.source or None,
        "utm_medium": call.medium or None,
        "utm_campaign": call.campaign or None,
        "utm_term": call.keyword or None,
        "utm_content": call.content or None,
        "roistat_param_1": None,
        "roistat_param_2": None,
        "roistat_param_3": None,
        "roistat_param_4": None,
        "roistat_param_5": None,
        "source_level_1": call.source or None,
        "source_level_2": call.medium or None,
    }
    if call.stage == "hangup":
        payload["status"] = call.status
        payload["duration"] = call.talk_seconds
        payload["file_url"] = call.recording_url or None
    return payload
