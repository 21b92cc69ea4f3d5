"""Google Ads offline click conversions: a won deal, with its amount, on the visit's click id.

REST form of ConversionUploadService.UploadClickConversions; OAuth 2 (a refresh token of the
account's user, exchanged for access tokens here), the developer token, and the manager
account's id when one is used. Calls are not sent: our tracking numbers are not Google
forwarding numbers, so a call from a gclid visit reaches Google as the deal it became.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from msgspec import Meta
from msgspec.structs import force_setattr

from calltracker.integrations.base import (
    ConfigShape,
    ConfiguredAdapter,
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
from calltracker.integrations.errors import AuthError, PermanentError, TemporaryError
from calltracker.settings import Secret
from calltracker.shapes import INVALID

log = logging.getLogger(__name__)

KIND = "google_ads"
CLICK_IDS = ("gclid", "gbraid", "wbraid")  # exactly one goes into a ClickConversion
# Another upload of the same order_id: Google has it already, which is what we wanted.
ALREADY_THERE = ("ORDER_ID_ALREADY_IN_USE", "DUPLICATE_ORDER_ID", "CLICK_CONVERSION_ALREADY_EXISTS")

CustomerId = Annotated[
    str,
    Meta(
        pattern=r"^\d{3}-?\d{3}-?\d{4}$",
        description="a Google Ads customer id, 123-456-7890 or 1234567890",
        extra={INVALID: "must be a 10-digit customer id such as 123-456-7890"},
    ),
]


def conversion_time(moment: datetime) -> str:
    """ "yyyy-mm-dd hh:mm:ss+|-hh:mm", as ClickConversion.conversion_date_time wants it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S+00:00")


class GoogleAdsConfig(ConfigShape, frozen=True):
    """One Google Ads account and the UPLOAD_CLICKS conversion action won deals go to."""

    customer_id: CustomerId
    conversion_action: Annotated[str, Meta(min_length=1, max_length=200)]  # id or resource name
    developer_token: Secret
    client_id: Text
    client_secret: Secret
    refresh_token: Secret
    login_customer_id: CustomerId | None = None  # the manager account, when it acts for this one
    api_version: Annotated[str, Meta(pattern=r"^v\d+$")] = "v26"
    base_url: Url = "https://googleads.googleapis.com"
    token_url: Url = "https://oauth2.googleapis.com/token"
    rate_limit: Annotated[float, Meta(gt=0, le=50)] = 5.0
    timeout: Annotated[float, Meta(gt=0, le=120)] = 30.0

    def __post_init__(self) -> None:
        force_setattr(self, "customer_id", self.customer_id.replace("-", ""))
        if self.login_customer_id is not None:
            force_setattr(self, "login_customer_id", self.login_customer_id.replace("-", ""))
        action = self.conversion_action
        if action.isdigit():
            action = f"customers/{self.customer_id}/conversionActions/{action}"
        if not re.fullmatch(r"customers/\d+/conversionActions/\d+", action):
            raise ValueError(
                "conversion_action: must be the action's id or customers/{id}/conversionActions/{id}"
            )
        force_setattr(self, "conversion_action", action)
        force_setattr(self, "base_url", self.base_url.rstrip("/"))

    @property
    def stages(self) -> frozenset[Stage]:
        return frozenset()  # won deals only; no call stage is queued for this kind

    @property
    def sends_revenue(self) -> bool:
        """Whether won deals go to this integration (outbox stage "won")."""
        return True


def click_conversion(call: LeadCall, deal: DealFacts, config: GoogleAdsConfig) -> dict[str, Any]:
    """One ClickConversion (REST JSON, camelCase) for a deal from a Google click."""
    visit = call.visit
    assert visit is not None and visit.click_id_type in CLICK_IDS
    return {
        visit.click_id_type: visit.click_id,
        "conversionAction": config.conversion_action,
        "conversionDateTime": conversion_time(deal.won_at),
        "conversionValue": deal.value,
        "currencyCode": deal.currency,
        "orderId": deal.order_id,
    }


class GoogleAdsAdapter(ConfiguredAdapter[GoogleAdsConfig]):
    """Uploads won deals of Google clicks to one account's conversion action."""

    kind = KIND

    def _prepare(self) -> None:
        self._access = Secret("")
        self._access_until = 0.0
        self._refreshing = asyncio.Lock()

    def __repr__(self) -> str:
        return f"GoogleAdsAdapter(customer_id={self.config.customer_id!r})"

    async def deliver(self, call: LeadCall, idempotency_key: str) -> DeliveryResult:
        return DeliveryResult(skipped="Google Ads takes won deals, not calls")

    def sends_revenue(self) -> bool:
        return self.config.sends_revenue

    async def deliver_revenue(
        self, call: LeadCall, deal: DealFacts, idempotency_key: str
    ) -> DeliveryResult:
        visit = call.visit
        if visit is None or visit.click_id_type not in CLICK_IDS or not visit.click_id:
            return DeliveryResult(skipped="no Google click id (gclid, gbraid or wbraid)")
        body = {
            "conversions": [click_conversion(call, deal, self.config)],
            # Required, and always true: a bad row then comes back as partialFailureError.
            "partialFailure": True,
        }
        path = (
            f"/{self.config.api_version}/customers/{self.config.customer_id}:uploadClickConversions"
        )
        data = await self._post(path, body)
        failure = data.get("partialFailureError") if isinstance(data, dict) else None
        results = data.get("results") if isinstance(data, dict) else None
        if failure:
            text = json.dumps(failure, ensure_ascii=False)
            if any(code in text for code in ALREADY_THERE):
                return DeliveryResult(remote_ids={"order_id": deal.order_id, "note": "already"})
            message = str(failure.get("message", "")) if isinstance(failure, dict) else text
            raise PermanentError(f"google_ads: conversion refused: {message[:500]}")
        if not isinstance(results, list) or not results or not results[0]:
            raise PermanentError("google_ads: the conversion came back without a result")
        log.info(
            "google_ads conversion uploaded customer_id=%s deal_id=%s key=%s",
            self.config.customer_id,
            deal.deal_id,
            idempotency_key,
        )
        job = data.get("jobId") if isinstance(data, dict) else None
        ids = {"order_id": deal.order_id}
        if job is not None:
            ids["job_id"] = str(job)
        return DeliveryResult(remote_ids=ids)

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        for attempt in (1, 2):
            token = await self._token()
            headers = {
                "Authorization": f"Bearer {token.reveal()}",
                "developer-token": self.config.developer_token.reveal(),
                "Content-Type": "application/json",
            }
            if self.config.login_customer_id:
                headers["login-customer-id"] = self.config.login_customer_id
            reply = await send(
                self._session,
                "POST",
                self.config.base_url + path,
                service="google_ads uploadClickConversions",
                limiter=self._limiter,
                timeout=self.config.timeout,
                data=json.dumps(body).encode(),
                headers=headers,
            )
            data = _json(reply)
            if 200 <= reply.status < 300:
                return data
            if reply.status == 401 and attempt == 1:
                self._access_until = 0.0  # the access token lapsed early: a new one, once
                continue
            raise _error(reply, data)
        raise AssertionError("unreachable")

    async def _token(self) -> Secret:
        """An access token from the refresh token; kept until a minute before it lapses."""
        async with self._refreshing:
            now = self._clock().timestamp()
            if self._access and now < self._access_until:
                return self._access
            reply = await send(
                self._session,
                "POST",
                self.config.token_url,
                service="google_ads oauth",
                limiter=self._limiter,
                timeout=self.config.timeout,
                data={
                    "grant_type": "refresh_token",
                    "client_id": self.config.client_id,
                    "client_secret": self.config.client_secret.reveal(),
                    "refresh_token": self.config.refresh_token.reveal(),
                },
            )
            data = _json(reply)
            if reply.status >= 500 or reply.status == 429:
                raise TemporaryError(f"google_ads oauth: HTTP {reply.status}", status=reply.status)
            if reply.status != 200 or not isinstance(data, dict) or not data.get("access_token"):
                error = str(data.get("error", "")) if isinstance(data, dict) else ""
                raise AuthError(f"google_ads oauth refused: {error or reply.status}", status=401)
            self._access = Secret(str(data["access_token"]))
            lifetime = data.get("expires_in")
            self._access_until = now + (int(lifetime) if isinstance(lifetime, int) else 3600) - 60
            return self._access


def _json(reply: HttpReply) -> Any:
    try:
        return reply.json()
    except ValueError:
        return None


def _error(reply: HttpReply, data: Any) -> Exception:
    error = data.get("error") if isinstance(data, dict) else None
    detail = ""
    if isinstance(error, dict):
        detail = f"{error.get('status', '')}: {error.get('message', '')}".strip(": ")
    return http_error("google_ads uploadClickConversions", reply, detail[:500])
