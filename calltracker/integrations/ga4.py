"""Google Analytics 4 Measurement Protocol: one event per finished call, on the visitor's client id."""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timedelta
from typing import Annotated, Any

from msgspec import Meta
from msgspec.structs import force_setattr

from calltracker.integrations.base import (
    HANGUP,
    ConfigShape,
    ConfiguredAdapter,
    Currency,
    DealFacts,
    DeliveryResult,
    HttpReply,
    LeadCall,
    Stage,
    Url,
    http_error,
    send,
)
from calltracker.integrations.errors import PermanentError, TemporaryError
from calltracker.settings import Secret
from calltracker.shapes import INVALID

log = logging.getLogger(__name__)

KIND = "ga4"
MAX_AGE = timedelta(hours=72)  # GA4 accepts events backdated by at most 72 hours
MAX_VALUE_LEN = 100
MAX_BODY_BYTES = 130_000
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
RESERVED_PREFIXES = ("_", "firebase_", "ga_", "google_", "gtag.")
RESERVED_EVENTS = frozenset(
    {
        "ad_activeview", "ad_click", "ad_exposure", "ad_impression", "ad_query", "ad_reward",
        "adunit_exposure", "app_background", "app_clear_data", "app_exception", "app_remove",
        "app_store_refund", "app_store_subscription_cancel", "app_store_subscription_convert",
        "app_store_subscription_renew", "app_update", "app_upgrade", "dynamic_link_app_open",
        "dynamic_link_app_update", "dynamic_link_first_open", "error", "firebase_campaign",
        "first_open", "first_visit", "in_app_purchase", "notification_dismiss",
        "notification_foreground", "notification_open", "notification_receive", "os_update",
        "session_start", "session_start_with_rollout", "user_engagement",
    }
)  # fmt: skip


def check_event_name(name: str) -> None:
    """ValueError unless GA4 would accept ``name`` as an event name."""
    if not NAME.match(name):
        raise ValueError("must be 1-40 letters, digits or _, starting with a letter")
    if name in RESERVED_EVENTS or name.startswith(RESERVED_PREFIXES):
        raise ValueError(f"{name!r} is reserved by Google Analytics")


class Ga4Config(ConfigShape, frozen=True):
    """One GA4 web data stream."""

    measurement_id: Annotated[
        str,
        Meta(
            pattern=r"^G-[A-Z0-9]+$",
            max_length=40,
            description="the stream's measurement id, G-XXXXXXX",
            extra={INVALID: "must look like G-XXXXXXX (the stream's measurement id)"},
        ),
    ]
    api_secret: Secret
    event_name: Annotated[str, Meta(max_length=40)] = "phone_call"
    only_target: bool = False
    value: float | None = None  # conversion value of a call, if the marketer sets one
    currency: Currency = "RUB"
    validate: bool = False  # send to /debug/mp/collect first and stop on any validation message
    # Won deals (from a CRM) as purchase events, on the visit that brought the call.
    send_revenue: bool = False
    revenue_event: Annotated[str, Meta(max_length=40)] = "purchase"
    base_url: Url = "https://www.google-analytics.com"
    rate_limit: Annotated[float, Meta(gt=0, le=100)] = 10.0
    timeout: Annotated[float, Meta(gt=0, le=60)] = 15.0

    def __post_init__(self) -> None:
        for name in ("event_name", "revenue_event"):
            try:
                check_event_name(getattr(self, name))
            except ValueError as err:
                raise ValueError(f"{name}: {err}") from None
        force_setattr(self, "base_url", self.base_url.rstrip("/"))

    @property
    def stages(self) -> frozenset[Stage]:
        return HANGUP  # an event per finished call; not configurable

    @property
    def sends_revenue(self) -> bool:
        """Whether won deals go to this integration (outbox stage "won")."""
        return self.send_revenue


def _micros(moment: datetime) -> int:
    # Exact integer microseconds: a float product can be off by one.
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def _clean(params: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value[:MAX_VALUE_LEN] if isinstance(value, str) else value
        for key, value in params.items()
        if value != ""
    }


def session_params(call: LeadCall, config: Ga4Config) -> dict[str, Any]:
    """session_id of the visit on this stream: without it GA4 shows "(not set)" sessions."""
    assert call.visit is not None
    session_id = call.visit.ga_session(config.measurement_id)
    return {"session_id": session_id} if session_id else {}


def build_payload(call: LeadCall, config: Ga4Config) -> dict[str, Any]:
    """The /mp/collect body for a call with a GA client id."""
    assert call.visit is not None and call.visit.ga_client_id
    started = call.started_at
    params: dict[str, Any] = {
        **session_params(call, config),
        "source": call.source,
        "medium": call.medium,
        "campaign": call.campaign,
        "term": call.keyword,
        "content": call.content,
        "call_duration": call.talk_seconds,
        "call_status": call.status,
        "call_target": int(call.target),
        "call_unique": int(call.unique),
        "tracking_number": call.tracking_number,
        # Without engagement time the event is left out of GA4's Realtime report.
        "engagement_time_msec": 1,
    }
    if config.value is not None:
        params["value"] = config.value
        params["currency"] = config.currency
    return {
        "client_id": call.visit.ga_client_id,
        "timestamp_micros": _micros(started),
        "events": [{"name": config.event_name, "params": _clean(params)}],
    }


def purchase_payload(
    call: LeadCall, deal: DealFacts, config: Ga4Config, now: datetime
) -> dict[str, Any]:
    """The /mp/collect body for a won deal: a purchase on the visit's client and session."""
    assert call.visit is not None and call.visit.ga_client_id
    params: dict[str, Any] = {
        **session_params(call, config),
        # GA4 drops a second purchase with a transaction_id it has already seen.
        "transaction_id": deal.order_id,
        "value": deal.value,
        "currency": deal.currency,
        "source": call.source,
        "medium": call.medium,
        "campaign": call.campaign,
        "engagement_time_msec": 1,
    }
    body: dict[str, Any] = {
        "client_id": call.visit.ga_client_id,
        "events": [{"name": config.revenue_event, "params": _clean(params)}],
    }
    # Backdated only within GA4's 72 hours; a deal won earlier counts as received now.
    if now - deal.won_at <= MAX_AGE:
        body["timestamp_micros"] = _micros(deal.won_at)
    return body


class Ga4Adapter(ConfiguredAdapter[Ga4Config]):
    """Sends finished calls to one GA4 stream."""

    kind = KIND

    def __repr__(self) -> str:
        return f"Ga4Adapter(measurement_id={self.config.measurement_id!r})"

    def skip_reason(self, call: LeadCall) -> str:
        if call.stage != "hangup":
            return f"stage {call.stage} is not sent to GA4"
        if call.visit is None or not call.visit.ga_client_id:
            return "no GA client id"
        if self.config.only_target and not call.target:
            return "not a target call"
        if self._clock() - call.started_at > MAX_AGE:
            return "older than GA4's 72-hour limit"
        return ""

    async def deliver(self, call: LeadCall, idempotency_key: str) -> DeliveryResult:
        # GA4 has no dedupe key: a resend counts twice, so the outbox must not resend after a 2xx.
        reason = self.skip_reason(call)
        if reason:
            log.info("ga4 skipped call_id=%s reason=%s", call.call_id, reason)
            return DeliveryResult(skipped=reason)
        await self._send(build_payload(call, self.config))
        log.info("ga4 sent call_id=%s key=%s", call.call_id, idempotency_key)
        return DeliveryResult(remote_ids={"measurement_id": self.config.measurement_id})

    def sends_revenue(self) -> bool:
        return self.config.sends_revenue

    async def deliver_revenue(
        self, call: LeadCall, deal: DealFacts, idempotency_key: str
    ) -> DeliveryResult:
        if call.visit is None or not call.visit.ga_client_id:
            return DeliveryResult(skipped="no GA client id")
        await self._send(purchase_payload(call, deal, self.config, self._clock()))
        log.info("ga4 purchase sent deal_id=%s key=%s", deal.deal_id, idempotency_key)
        return DeliveryResult(
            remote_ids={
                "measurement_id": self.config.measurement_id,
                "transaction_id": deal.order_id,
            }
        )

    async def _send(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode()
        if len(body) >= MAX_BODY_BYTES:
            raise PermanentError(f"ga4: body of {len(body)} bytes is over GA4's 130 kB limit")
        if self.config.validate:
            await self._validate(body)
        reply = await self._post("/mp/collect", body)
        # /mp/collect answers 2xx even for malformed events; validity is checked on /debug only.
        if not 200 <= reply.status < 300:
            raise http_error("ga4 /mp/collect", reply, "")

    async def _validate(self, body: bytes) -> None:
        reply = await self._post("/debug/mp/collect", body)
        if not 200 <= reply.status < 300:
            raise http_error("ga4 /debug/mp/collect", reply, "")
        try:
            data = reply.json()
        except ValueError:
            raise TemporaryError("ga4 /debug/mp/collect: unreadable reply") from None
        messages = data.get("validationMessages", []) if isinstance(data, dict) else []
        if messages:
            text = "; ".join(
                f"{m.get('fieldPath', '?')}: {m.get('description', '')} ({m.get('validationCode', '?')})"
                for m in messages
                if isinstance(m, dict)
            )
            raise PermanentError(f"ga4 validation failed: {text[:1000]}", code="validation")

    async def _post(self, path: str, body: bytes) -> HttpReply:
        return await send(
            self._session,
            "POST",
            self.config.base_url + path,
            service=f"ga4 {path}",
            limiter=self._limiter,
            timeout=self.config.timeout,
            # The api_secret goes in the query string, never the body (GA4 contract).
            params={
                "measurement_id": self.config.measurement_id,
                "api_secret": self.config.api_secret.reveal(),
            },
            data=body,
            headers={"Content-Type": "application/json"},
        )
