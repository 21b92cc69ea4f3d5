"""Yandex Direct: the Reports service (API v5) for statistics, Campaigns.get for tracking.

A CUSTOM_REPORT by Date, campaign, ad group and criterion (keyword) with Impressions, Clicks
and Cost, as TSV. Reports come online (200) or are queued offline (201, then 202 while being
built): the same request is repeated after the `retryIn` seconds the server suggests until it
answers 200 with the report. Money comes in micro-units unless `money_in_micros` is off (then
in currency units with two decimals); VAT is included or not as `include_vat` says. Agency
accounts name their client in Client-Login. The Reports service takes at most 20 requests per
10 seconds per user; Campaigns.get spends API points, so it runs once per pull and a shortage
of points (error 152) only skips the tracking refresh. docs/adspend.md quotes the contract.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Annotated, Any, ClassVar, Literal

import aiohttp
from msgspec import Meta
from msgspec.structs import force_setattr

from calltracker.adspend.base import (
    CampaignInfo,
    CurrencyCode,
    Pull,
    StatRow,
    TokenSaver,
    count,
    decimal_to_minor,
    micros_to_minor,
)
from calltracker.clock import utcnow
from calltracker.integrations.base import ConfigShape, HttpReply, RateLimiter, Url, send
from calltracker.integrations.errors import (
    AuthError,
    IntegrationError,
    PermanentError,
    TemporaryError,
)
from calltracker.settings import Secret

log = logging.getLogger(__name__)

PLATFORM = "yandex_direct"
SERVICE = "Yandex Direct"
FIELDS = (
    "Date",
    "CampaignId",
    "CampaignName",
    "AdGroupId",
    "AdGroupName",
    "CriterionId",
    "Criterion",
    "Impressions",
    "Clicks",
    "Cost",
)
# Campaign types whose settings carry TrackingParams.
TRACKING_TYPES = ("TextCampaign", "UnifiedCampaign", "DynamicTextCampaign", "SmartCampaign")
AUTH_CODES = frozenset({53, 54, 58, 513})
# 52 auth server down, 56 request limit, 152 not enough points, 506 too many concurrent
# requests, 1000-1002 server errors, 9000 too many offline reports queued (docs/adspend.md).
TEMPORARY_CODES = frozenset({52, 56, 152, 506, 1000, 1001, 1002, 9000})
NOT_ENOUGH_UNITS = 152
CAMPAIGNS_PAGE = 1000
EMPTY = "--"  # how the report shows a value that does not apply


class DirectConfig(ConfigShape, frozen=True):
    """One Direct account (or an agency's client): docs/adspend.md lists the fields."""

    token: Secret
    client_login: Annotated[str, Meta(max_length=255)] = ""  # agencies: the client's login
    include_vat: bool = True
    money_in_micros: bool = True
    currency: CurrencyCode = "RUB"  # used when Campaigns.get could not say
    tracking: bool = True  # read campaigns' TrackingParams (spends API points)
    language: Literal["ru", "en"] = "ru"
    api_url: Url = "https://api.direct.yandex.com/json/v5"
    # How long to wait for an offline report per pull.
    max_wait_seconds: Annotated[float, Meta(gt=0, le=3600)] = 900.0
    rate_limit: Annotated[float, Meta(gt=0, le=2.0)] = 1.5  # 20 requests per 10 s, with room
    timeout: ClassVar[float] = 120.0

    def __post_init__(self) -> None:
        force_setattr(self, "currency", self.currency.upper())
        force_setattr(self, "api_url", self.api_url.rstrip("/"))


def _error(reply: HttpReply) -> tuple[int, str]:
    """(error_code, message) from Direct's error structure; (0, "") when there is none."""
    try:
        body = reply.json()
    except ValueError:
        return 0, ""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return 0, ""
    code = error.get("error_code")
    text = " ".join(
        str(error.get(k) or "") for k in ("error_string", "error_detail") if error.get(k)
    )
    try:
        return int(str(code)), text
    except (TypeError, ValueError):
        return 0, text


def _failure(reply: HttpReply, code: int, text: str) -> IntegrationError:
    message = f"{SERVICE}: HTTP {reply.status}" + (f", error {code}" if code else "")
    message += f": {text}" if text else ""
    if code in AUTH_CODES or reply.status in (401, 403):
        return AuthError(message, status=reply.status, code=str(code or ""))
    if code in TEMPORARY_CODES or reply.status >= 500 or reply.status == 429:
        retry = 3600.0 if code == NOT_ENOUGH_UNITS else None  # points come back hourly
        return TemporaryError(message, status=reply.status, code=str(code), retry_after=retry)
    return PermanentError(message, status=reply.status, code=str(code or ""))


class DirectConnector:
    platform = PLATFORM

    def __init__(
        self,
        config: DirectConfig,
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], datetime] = utcnow,
        on_tokens: TokenSaver | None = None,
    ) -> None:
        self.config = config
        self._session = session
        self._clock = clock
        self._limiter = RateLimiter(config.rate_limit)

    def _headers(self) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self.config.token.reveal()}",
            "Accept-Language": self.config.language,
            "Content-Type": "application/json; charset=utf-8",
        }
        if self.config.client_login:
            headers["Client-Login"] = self.config.client_login
        return headers

    async def pull(self, first: date, last: date) -> Pull:
        rows = await self._report(first, last)
        campaigns = None
        currency = self.config.currency
        if self.config.tracking and rows:
            found = await self._campaigns(sorted({r.campaign_id for r in rows}))
            if found is not None:
                campaigns, currencies = found
                if len(currencies) == 1:
                    currency = next(iter(currencies))
        return Pull(currency=currency, rows=rows, campaigns=campaigns)

    def report_body(self, first: date, last: date) -> dict[str, Any]:
        # The name is unique per pull: Direct keeps a built offline report for hours and
        # answers a request with the same name from it, which would hide fresh corrections.
        stamp = self._clock().strftime("%Y%m%d%H%M%S")
        vat = "YES" if self.config.include_vat else "NO"
        return {
            "params": {
                "SelectionCriteria": {"DateFrom": first.isoformat(), "DateTo": last.isoformat()},
                "FieldNames": list(FIELDS),
                "ReportName": f"calltracker {first}..{last} vat {vat} {stamp}",
                "ReportType": "CUSTOM_REPORT",
                "DateRangeType": "CUSTOM_DATE",
                "Format": "TSV",
                "IncludeVAT": vat,
            }
        }

    async def _report(self, first: date, last: date) -> list[StatRow]:
        body = json.dumps(self.report_body(first, last)).encode()
        headers = {
            **self._headers(),
            "processingMode": "auto",
            "skipReportHeader": "true",
            "skipReportSummary": "true",
        }
        if not self.config.money_in_micros:
            headers["returnMoneyInMicros"] = "false"
        deadline = time.monotonic() + self.config.max_wait_seconds
        while True:
            reply = await send(
                self._session,
                "POST",
                f"{self.config.api_url}/reports",
                service=SERVICE,
                limiter=self._limiter,
                timeout=self.config.timeout,
                data=body,
                headers=headers,
            )
            if reply.status == 200:
                return self.parse_tsv(reply.body.decode("utf-8-sig"))
            if reply.status in (201, 202):
                wait = _retry_in(reply)
                if time.monotonic() + wait > deadline:
                    raise TemporaryError(
                        f"{SERVICE}: the offline report was not ready within "
                        f"{self.config.max_wait_seconds:g} s; the next round asks again"
                    )
                log.info(
                    "event=direct_report_queued status=%s retry_in=%s queued=%s",
                    reply.status,
                    wait,
                    reply.headers.get("reportsInQueue", ""),
                )
                await asyncio.sleep(wait)
                continue
            code, text = _error(reply)
            raise _failure(reply, code, text)

    def parse_tsv(self, text: str) -> list[StatRow]:
        """The report's rows; the first line names the columns (skipColumnHeader not sent)."""
        lines = [line for line in text.splitlines() if line.strip()]
        if not lines:
            return []
        reader = csv.reader(io.StringIO("\n".join(lines)), delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        missing = [f for f in FIELDS if f not in header]
        if missing:
            raise PermanentError(f"{SERVICE}: the report lacks column(s) {', '.join(missing)}")
        at = {name: header.index(name) for name in FIELDS}
        rows = []
        for n, values in enumerate(reader, start=2):
            if len(values) != len(header):
                raise PermanentError(f"{SERVICE}: report line {n} has {len(values)} fields")

            def get(name: str, values: Sequence[str] = values) -> str:
                value = values[at[name]].strip()
                return "" if value == EMPTY else value

            try:
                cost_text = get("Cost") or "0"
                cost = (
                    micros_to_minor(int(cost_text))
                    if self.config.money_in_micros
                    else decimal_to_minor(cost_text)
                )
                rows.append(
                    StatRow(
                        day=date.fromisoformat(get("Date")),
                        campaign_id=get("CampaignId"),
                        campaign_name=get("CampaignName"),
                        ad_group_id=get("AdGroupId"),
                        ad_group_name=get("AdGroupName"),
                        keyword_id=get("CriterionId"),
                        keyword=get("Criterion"),
                        impressions=count(get("Impressions")),
                        clicks=count(get("Clicks")),
                        cost=cost,
                    )
                )
            except ValueError as err:
                raise PermanentError(f"{SERVICE}: report line {n}: {err}") from None
        return rows

    async def _campaigns(self, ids: Sequence[str]) -> tuple[list[CampaignInfo], set[str]] | None:
        """Names, tracking parameters and currencies; None when points ran short."""
        found: list[CampaignInfo] = []
        currencies: set[str] = set()
        offset = 0
        while True:
            params: dict[str, Any] = {
                "SelectionCriteria": {"Ids": [int(i) for i in ids if i.isdigit()]},
                "FieldNames": ["Id", "Name", "Currency"],
                "Page": {"Limit": CAMPAIGNS_PAGE, "Offset": offset},
            }
            for kind in TRACKING_TYPES:
                params[f"{kind}FieldNames"] = ["TrackingParams"]
            reply = await send(
                self._session,
                "POST",
                f"{self.config.api_url}/campaigns",
                service=SERVICE,
                limiter=self._limiter,
                timeout=self.config.timeout,
                data=json.dumps({"method": "get", "params": params}).encode(),
                headers=self._headers(),
            )
            code, text = _error(reply)
            if code == NOT_ENOUGH_UNITS:
                log.warning("event=direct_units_exhausted units=%s", reply.headers.get("Units"))
                return None
            if code or reply.status != 200:
                raise _failure(reply, code, text)
            try:
                result = reply.json()["result"]
                campaigns = result.get("Campaigns") or []
            except (ValueError, KeyError, TypeError, AttributeError):
                raise PermanentError(f"{SERVICE}: Campaigns.get answered no result") from None
            for c in campaigns:
                tracking = ""
                for kind in TRACKING_TYPES:
                    settings = c.get(kind)
                    if isinstance(settings, dict) and settings.get("TrackingParams"):
                        tracking = str(settings["TrackingParams"])
                found.append(CampaignInfo(str(c.get("Id")), "", str(c.get("Name") or ""), tracking))
                code_text = str(c.get("Currency") or "")
                if len(code_text) == 3 and code_text.isalpha():  # not YND_FIXED, Direct's units
                    currencies.add(code_text.upper())
            limited_by = result.get("LimitedBy")
            if not limited_by:
                return found, currencies
            offset = int(limited_by)


def _retry_in(reply: HttpReply) -> float:
    try:
        return max(0.0, float(reply.headers.get("retryIn", "5")))
    except ValueError:
        return 5.0
