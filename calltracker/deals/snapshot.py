"""A deal as a CRM shows it at one moment: the shape every CRM reader returns (pure data)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, get_args

Status = Literal["open", "won", "lost"]
STATUSES: tuple[str, ...] = get_args(Status)
# Fields of tracking a deal may carry, by our names: the UTM tags and the ad platforms' ids.
UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")
CLICK_KEYS = ("gclid", "gbraid", "wbraid", "yclid")
CLIENT_KEYS = ("ym_client_id", "ga_client_id")


@dataclass(frozen=True)
class DealSnapshot:
    """One read of a deal; amounts in minor units, times UTC-aware."""

    remote_id: str
    opened_at: datetime
    title: str = ""
    pipeline_id: str = ""
    pipeline_name: str = ""
    stage_id: str = ""
    stage_name: str = ""
    status: Status = "open"
    amount: int = 0
    currency: str = ""
    manager_id: str = ""
    manager_name: str = ""
    closed_at: datetime | None = None
    updated_at: datetime | None = None  # the CRM's modification time, if it says
    lead_remote_id: str = ""  # Bitrix24: the lead the deal was converted from
    contact_remote_id: str = ""
    phones: tuple[str, ...] = ()  # the contact's, as the CRM wrote them (E.164 once matched)
    tracking: Mapping[str, str] = field(default_factory=dict)  # UTM_KEYS, CLICK_KEYS, ...
    call_id: int | None = None  # a deal posted with its call named


@dataclass(frozen=True)
class StageInfo:
    """A stage of a pipeline as the CRM lists it."""

    pipeline_id: str
    pipeline_name: str
    stage_id: str
    name: str
    sort: int
    status: Status
