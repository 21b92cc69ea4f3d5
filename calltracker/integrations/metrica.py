"""Yandex Metrica offline calls: finished calls uploaded per counter as one CSV per scheduled run."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from calltracker.integrations.base import (
    BatchResult,
    ConfigReader,
    ConfiguredAdapter,
    DeliveryResult,
    HttpReply,
    LeadCall,
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


@dataclass(frozen=True)
class MetricaConfig:
    """One Metrica counter."""

    counter_id: int
    oauth_token: Secret
    join_window_days: int = 21  # Metrica joins a call to a visit at most 21 days old
    price: float | None = None
    currency: str = "RUB"
    call_url_template: str = ""  # e.g. https://ct.example/calls/{call_id}, for CallTrackerURL
    new_goal_name: str = ""
    comment: str = "calltracker"
    send_client_id_type: bool = True
    base_url: str = "https://api-metrika.yandex.net"
    stages: frozenset[str] = field(default=frozenset({"hangup"}), init=False)
    rate_limit: float = 1.0  # one upload per run; the quota that matters is 5000 a day
    timeout: float = 60.0

    @classmethod
    def from_config(cls, raw: Mapping[str, Any]) -> MetricaConfig:
        r = ConfigReader(KIND, raw)
        template = r.text("call_url_template", cls.call_url_template)
        if template and "{call_id}" not in template:
            raise r.fail("call_url_template", "must contain {call_id}")
        currency = r.text("currency", cls.currency, max_len=3)
        if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
            raise r.fail("currency", "must be an ISO 4217 code such as RUB")
        config = cls(
            counter_id=r.integer("counter_id", lo=1),
            oauth_token=r.secret("oauth_token"),
            join_window_days=r.integer("join_window_days", cls.join_window_days, lo=1, hi=365),
            price=r.optional_number("price"),
            currency=currency,
            call_url_template=template,
            new_goal_name=r.text("new_goal_name", cls.new_goal_name, max_len=255),
            comment=r.text("comment", cls.comment, max_len=255),
            send_client_id_type=r.flag("send_client_id_type", cls.send_client_id_type),
            base_url=r.url("base_url", cls.base_url).rstrip("/"),
            rate_limit=r.number("rate_limit", cls.rate_limit, hi=30),
            timeout=r.number("timeout", cls.timeout, hi=300),
        )
        r.done()
        return config

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

    async def deliver_batch(self, calls: Sequence[LeadCall]) -> BatchResult:
        """Upload one CSV; record ``sent`` so that these rows are never uploaded again."""
        # No dedupe key at Metrica: a batch is all or nothing, and a re-upload counts twice.
        text, sent, skipped = build_csv(calls, self.config, self._clock())
        if not sent:
            return BatchResult(upload_id="", status="nothing to upload", sent=(), skipped=skipped)
        form = aiohttp.FormData()
        form.add_field("file", text.encode(), filename="calls.csv", content_type="text/csv")
        params = {"comment": self.config.comment}
        if self.config.new_goal_name:
            params["new_goal_name"] = self.config.new_goal_name
        if self.config.send_client_id_type:
            params["client_id_type"] = "CLIENT_ID"
        path = f"/management/v1/counter/{self.config.counter_id}/offline_conversions/upload_calls"
        reply = await send(
            self._session,
            "POST",
            self.config.base_url + path,
            service="metrica upload_calls",
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
            raise _error(reply, data)
        uploading = data.get("uploading") if isinstance(data, dict) else None
        if not isinstance(uploading, dict) or "id" not in uploading:
            raise TemporaryError(
                "metrica upload_calls: no uploading.id in the reply", status=reply.status
            )
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


def _error(reply: HttpReply, data: Any) -> IntegrationError:
    service = "metrica upload_calls"
    detail = ""
    error_type = ""
    if isinstance(data, dict):
        errors = [e for e in data.get("errors") or [] if isinstance(e, dict)]
        if errors:
            error_type = str(errors[0].get("error_type", ""))
        detail = "; ".join(f"{e.get('error_type', '?')}: {e.get('message', '')}" for e in errors)
        detail = (detail or str(data.get("message", "")))[:1000]
    return http_error(service, reply, detail, error_type)
