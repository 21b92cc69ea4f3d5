"""Yandex Metrica offline calls: finished calls uploaded per counter as one CSV per scheduled run."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any

import aiohttp
from msgspec import Meta
from msgspec.structs import force_setattr

from calltracker.integrations.base import (
    HANGUP,
    BatchResult,
    ConfigShape,
    ConfiguredAdapter,
    Currency,
    DealFacts,
    DeliveryResult,
    HttpReply,
    LeadCall,
    Stage,
    Text,
    Url,
    http_error,
    send,
)
from calltracker.integrations.errors import IntegrationError, TemporaryError
from calltracker.settings import Secret

log = logging.getLogger(__name__)

KIND = "metrica"
BASE_COLUMNS = (
    "ClientId",
    "DateTime",
    "StaticCall",
    "PhoneNumber",
    "TalkDuration",
    "HoldDuration",
    "CallMissed",
    "Tag",
    "FirstTimeCaller",
    "URL",
)


class MetricaConfig(ConfigShape, frozen=True):
    """One Metrica counter."""

    counter_id: Annotated[int, Meta(ge=1)]
    oauth_token: Secret
    # Metrica joins a call to a visit at most 21 days old.
    join_window_days: Annotated[int, Meta(ge=1, le=365)] = 21
    price: float | None = None
    currency: Currency = "RUB"
    call_url_template: Text = ""  # e.g. https://ct.example/calls/{call_id}, for CallTrackerURL
    new_goal_name: Annotated[str, Meta(max_length=255)] = ""
    comment: Annotated[str, Meta(max_length=255)] = "calltracker"
    send_client_id_type: bool = True
    # A JavaScript-event goal's identifier: won deals go to it as offline conversions with
    # their amount ("" sends none).
    revenue_goal: Annotated[str, Meta(max_length=255)] = ""
    base_url: Url = "https://api-metrika.yandex.net"
    rate_limit: Annotated[float, Meta(gt=0, le=30)] = 1.0  # one upload per run; 5000 a day
    timeout: Annotated[float, Meta(gt=0, le=300)] = 60.0

    def __post_init__(self) -> None:
        if self.call_url_template and "{call_id}" not in self.call_url_template:
            raise ValueError("call_url_template: must contain {call_id}")
        force_setattr(self, "base_url", self.base_url.rstrip("/"))

    @property
    def stages(self) -> frozenset[Stage]:
        return HANGUP  # uploads finished calls only

    @property
    def sends_revenue(self) -> bool:
        """Whether won deals go to this integration (outbox stage "won")."""
        return bool(self.revenue_goal)

    def columns(self) -> tuple[str, ...]:
        columns: tuple[str, ...] = BASE_COLUMNS
        if self.price is not None:
            columns += ("Price", "Currency")
        if self.call_url_template:
            columns += ("CallTrackerURL",)
        return columns


def skip_reason(call: LeadCall, config: MetricaConfig, now: datetime) -> str:
    if call.stage != "hangup":
        return f"stage {call.stage} is not uploaded to Metrica"
    if call.visit is None or not call.visit.ym_client_id:
        return "no Metrica client id"
    if now - call.started_at > timedelta(days=config.join_window_days):
        return f"older than the {config.join_window_days}-day join window"
    return ""


def row_for(call: LeadCall, config: MetricaConfig) -> dict[str, str]:
    assert call.visit is not None
    row = {
        "ClientId": call.visit.ym_client_id,
        "DateTime": str(int(call.started_at.timestamp())),
        "StaticCall": "1" if call.attribution == "static" else "0",
        "PhoneNumber": call.caller,
        "TalkDuration": str(call.talk_seconds),
        "HoldDuration": str(call.wait_seconds),
        "CallMissed": "0" if call.status == "answered" else "1",
        "Tag": call.campaign,
        "FirstTimeCaller": "1" if call.unique else "0",
        "URL": call.visit.landing_url,
    }
    if config.price is not None:
        row["Price"] = f"{config.price:.2f}"
        row["Currency"] = config.currency
    if config.call_url_template:
        row["CallTrackerURL"] = config.call_url_template.format(call_id=call.call_id)
    return row


# Offline conversions: one id column, the goal, the time and the deal's amount.
CONVERSION_COLUMNS = ("Target", "DateTime", "Price", "Currency")


def conversion_csv(
    call: LeadCall, deal: DealFacts, config: MetricaConfig, now: datetime
) -> tuple[str, str]:
    """(the upload file, "") for a won deal, or ("", why it cannot be uploaded)."""
    visit = call.visit
    if visit is None:
        return "", "no visit"
    if visit.ym_client_id:
        id_column, id_value = "ClientId", visit.ym_client_id
    elif visit.click_id_type == "yclid" and visit.click_id:
        id_column, id_value = "Yclid", visit.click_id
    else:
        return "", "no Metrica client id or yclid"
    visited = visit.visited_at or call.started_at
    if now - visited > timedelta(days=config.join_window_days):
        return "", f"the visit is older than the {config.join_window_days}-day join window"
    # DateTime may only be in the past: a deal stamped a little ahead (clock skew) waits.
    when = min(deal.won_at, now)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow((id_column, *CONVERSION_COLUMNS))
    writer.writerow(
        (
            id_value,
            config.revenue_goal,
            str(int(when.timestamp())),
            f"{deal.amount / 100:.2f}",
            deal.currency,
        )
    )
    return out.getvalue(), ""


def build_csv(
    calls: Sequence[LeadCall], config: MetricaConfig, now: datetime
) -> tuple[str, tuple[int, ...], dict[int, str]]:
    """The upload file, the call ids in it, and the call ids left out with why."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=config.columns(), lineterminator="\n")
    writer.writeheader()
    sent: list[int] = []
    skipped: dict[int, str] = {}
    for call in calls:
        reason = skip_reason(call, config, now)
        if reason:
            skipped[call.call_id] = reason
        elif call.call_id in sent:
            skipped[call.call_id] = "twice in one batch"
        else:
            writer.writerow(row_for(call, config))
            sent.append(call.call_id)
    return out.getvalue(), tuple(sent), skipped


class MetricaAdapter(ConfiguredAdapter[MetricaConfig]):
    """Uploads finished calls to one Metrica counter."""

    kind = KIND

    def __repr__(self) -> str:
        return f"MetricaAdapter(counter_id={self.config.counter_id})"

    async def deliver(self, call: LeadCall, idempotency_key: str) -> DeliveryResult:
        """A batch of one, for callers that do not batch; prefer ``deliver_batch``."""
        result = await self.deliver_batch([call])
        if not result.sent:
            return DeliveryResult(skipped=result.skipped.get(call.call_id, "not uploaded"))
        return DeliveryResult(remote_ids={"upload_id": result.upload_id})

    def sends_revenue(self) -> bool:
        return self.config.sends_revenue

    async def deliver_revenue(
        self, call: LeadCall, deal: DealFacts, idempotency_key: str
    ) -> DeliveryResult:
        """One offline conversion with the deal's amount; never uploaded twice (no dedupe)."""
        text, reason = conversion_csv(call, deal, self.config, self._clock())
        if reason:
            return DeliveryResult(skipped=reason)
        uploading = await self._upload("upload", text, {"comment": self.config.comment})
        log.info(
            "metrica conversion uploaded counter_id=%s deal_id=%s upload_id=%s key=%s",
            self.config.counter_id,
            deal.deal_id,
            uploading["id"],
            idempotency_key,
        )
        return DeliveryResult(
            remote_ids={
                "upload_id": str(uploading["id"]),
                "upload_status": str(uploading.get("status", "")),
            }
        )

    async def deliver_batch(self, calls: Sequence[LeadCall]) -> BatchResult:
        """Upload one CSV; record ``sent`` so that these rows are never uploaded again."""
        # No dedupe key at Metrica: a batch is all or nothing, and a re-upload counts twice.
        text, sent, skipped = build_csv(calls, self.config, self._clock())
        if not sent:
            return BatchResult(upload_id="", status="nothing to upload", sent=(), skipped=skipped)
        params = {"comment": self.config.comment}
        if self.config.new_goal_name:
            params["new_goal_name"] = self.config.new_goal_name
        if self.config.send_client_id_type:
            params["client_id_type"] = "CLIENT_ID"
        uploading = await self._upload("upload_calls", text, params)
        upload_id = str(uploading["id"])
        log.info(
            "metrica uploaded counter_id=%s upload_id=%s rows=%s skipped=%s",
            self.config.counter_id,
            upload_id,
            len(sent),
            len(skipped),
        )
        return BatchResult(
            upload_id=upload_id, status=str(uploading.get("status", "")), sent=sent, skipped=skipped
        )

    async def _upload(self, endpoint: str, text: str, params: dict[str, str]) -> dict[str, Any]:
        """POST one CSV as the multipart part ``file``; the reply's ``uploading``."""
        form = aiohttp.FormData()
        form.add_field("file", text.encode(), filename="data.csv", content_type="text/csv")
        path = f"/management/v1/counter/{self.config.counter_id}/offline_conversions/{endpoint}"
        service = f"metrica {endpoint}"
        reply = await send(
            self._session,
            "POST",
            self.config.base_url + path,
            service=service,
            limiter=self._limiter,
            timeout=self.config.timeout,
            params=params,
            data=form,
            headers={"Authorization": f"OAuth {self.config.oauth_token.reveal()}"},
        )
        try:
            data = reply.json()
        except ValueError:
            data = None
        if not 200 <= reply.status < 300:
            raise _error(reply, data, service)
        uploading = data.get("uploading") if isinstance(data, dict) else None
        if not isinstance(uploading, dict) or "id" not in uploading:
            raise TemporaryError(f"{service}: no uploading.id in the reply", status=reply.status)
        return uploading


def _error(reply: HttpReply, data: Any, service: str) -> IntegrationError:
    detail = ""
    error_type = ""
    if isinstance(data, dict):
        errors = [e for e in data.get("errors") or [] if isinstance(e, dict)]
        if errors:
            error_type = str(errors[0].get("error_type", ""))
        detail = "; ".join(f"{e.get('error_type', '?')}: {e.get('message', '')}" for e in errors)
        detail = (detail or str(data.get("message", "")))[:1000]
    return http_error(service, reply, detail, error_type)
