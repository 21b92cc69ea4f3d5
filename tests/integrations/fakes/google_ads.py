"""Google Ads: the OAuth token endpoint and ConversionUploadService.UploadClickConversions (REST),
per docs/integrations.md, "Google Ads click conversions"."""

from __future__ import annotations

import itertools
import re
from datetime import datetime
from typing import Any

from aiohttp import web

from .server import FakeServer

DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}$")
ACTION = re.compile(r"^customers/(\d+)/conversionActions/(\d+)$")
CLICK_IDS = ("gclid", "gbraid", "wbraid")


class FakeGoogleAds(FakeServer):
    """State: ``conversions`` accepted; ``clicks`` known (id -> click time); ``refreshes``."""

    def __init__(
        self,
        *,
        customer_id: str = "1234567890",
        login_customer_id: str | None = "9876543210",
        action_id: str = "987654",
        developer_token: str = "dev-t0ken",
    ) -> None:
        super().__init__()
        self.customer_id = customer_id
        self.login_customer_id = login_customer_id
        self.action_id = action_id
        self.developer_token = developer_token
        self.client_id = "gads-client.apps.googleusercontent.com"
        self.client_secret = "gads-client-s3cret"
        self.refresh_token = "1//gads-refresh"
        self.access_tokens: set[str] = set()
        self.refreshes = 0
        self.clicks: dict[str, datetime] = {}
        self.conversions: list[dict[str, Any]] = []
        self.refused: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/token", self._token)
        app.router.add_post(r"/v26/customers/{customer:\d+}:uploadClickConversions", self._upload)

    async def _token(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        if (
            form.get("grant_type") != "refresh_token"
            or form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            return web.json_response({"error": "invalid_client"}, status=401)
        if form.get("refresh_token") != self.refresh_token:
            return web.json_response({"error": "invalid_grant"}, status=400)
        self.refreshes += 1
        token = f"ya29.access-{next(self._ids)}"
        self.access_tokens.add(token)
        # Google's refresh tokens do not change on use; only the access token is new.
        return web.json_response(
            {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}
        )

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        if auth.removeprefix("Bearer ") not in self.access_tokens:
            return _rpc_error(
                401, "UNAUTHENTICATED", "Request had invalid authentication credentials."
            )
        if request.headers.get("developer-token") != self.developer_token:
            return _rpc_error(401, "UNAUTHENTICATED", "The developer token is not valid.")
        if self.login_customer_id is not None and (
            request.headers.get("login-customer-id") != self.login_customer_id
        ):
            return _rpc_error(
                403, "PERMISSION_DENIED", "login-customer-id is required, digits only"
            )
        if request.match_info["customer"] != self.customer_id:
            return _rpc_error(403, "PERMISSION_DENIED", "The caller does not have permission")
        body = await request.json()
        if body.get("partialFailure") is not True:
            # Required, and "should always be set to true".
            return _rpc_error(400, "INVALID_ARGUMENT", "partial_failure must be true")
        conversions = body.get("conversions")
        if not isinstance(conversions, list) or not conversions:
            return _rpc_error(400, "INVALID_ARGUMENT", "conversions are required")
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for n, conversion in enumerate(conversions):
            problem = self._check(conversion)
            if problem:
                self.refused.append(conversion)
                results.append({})  # "Proto will be empty for rows that received an error."
                errors.append({"errorCode": {"conversionUploadError": problem}, "message": problem,
                               "location": {"fieldPathElements": [{"fieldName": "conversions", "index": n}]}})  # fmt: skip
                continue
            self.conversions.append(conversion)
            click = next(k for k in CLICK_IDS if k in conversion)
            results.append({click: conversion[click],
                            "conversionAction": conversion["conversionAction"],
                            "conversionDateTime": conversion["conversionDateTime"]})  # fmt: skip
        answer: dict[str, Any] = {"results": results, "jobId": str(next(self._ids))}
        if errors:
            answer["partialFailureError"] = {
                "code": 3,
                "message": "; ".join(e["message"] for e in errors),
                "details": [{"@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
                             "errors": errors}],
            }  # fmt: skip
        return web.json_response(answer)

    def _check(self, conversion: Any) -> str:
        if not isinstance(conversion, dict):
            return "INVALID_ARGUMENT"
        clicks = [k for k in CLICK_IDS if k in conversion]
        if len(clicks) != 1:
            return "ONE_OF_GCLID_GBRAID_WBRAID_REQUIRED"  # they exclude each other
        action = ACTION.match(str(conversion.get("conversionAction", "")))
        if action is None or action.group(2) != self.action_id:
            return "INVALID_CONVERSION_ACTION"
        when = str(conversion.get("conversionDateTime", ""))
        if not DATE_TIME.match(when):
            return "INVALID_DATE_TIME_FORMAT"  # "yyyy-mm-dd hh:mm:ss+|-hh:mm"
        clicked = self.clicks.get(str(conversion[clicks[0]]))
        if clicked is None:
            return "CLICK_NOT_FOUND"
        at = datetime.strptime(when[:19], "%Y-%m-%d %H:%M:%S").replace(
            tzinfo=datetime.fromisoformat(when.replace(" ", "T")).tzinfo
        )
        if at <= clicked:
            return "CONVERSION_PRECEDES_EVENT"  # "Must be after the click time."
        value = conversion.get("conversionValue")
        if not isinstance(value, int | float) or isinstance(value, bool):
            return "INVALID_CONVERSION_VALUE"
        if not re.fullmatch(r"[A-Z]{3}", str(conversion.get("currencyCode", ""))):
            return "INVALID_CURRENCY_CODE"
        order = conversion.get("orderId")
        if order and any(c.get("orderId") == order for c in self.conversions):
            return "DUPLICATE_ORDER_ID"
        return ""


def _rpc_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response(
        {"error": {"code": status, "message": message, "status": code}}, status=status
    )
