"""Yandex Direct API v5: the Reports service and Campaigns.get, per docs/adspend.md section 1."""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from aiohttp import web

from tests.integrations.fakes.server import FakeServer

REPORT_TYPES = {
    "ACCOUNT_PERFORMANCE_REPORT", "CAMPAIGN_PERFORMANCE_REPORT", "ADGROUP_PERFORMANCE_REPORT",
    "AD_PERFORMANCE_REPORT", "CRITERIA_PERFORMANCE_REPORT", "CUSTOM_REPORT",
    "REACH_AND_FREQUENCY_PERFORMANCE_REPORT", "SEARCH_QUERY_PERFORMANCE_REPORT",
}  # fmt: skip
FIELDS = {
    "Date", "CampaignId", "CampaignName", "AdGroupId", "AdGroupName", "CriterionId", "Criterion",
    "Impressions", "Clicks", "Cost",
}  # fmt: skip
MODES = {"online", "offline", "auto"}
VAT = Decimal("1.20")  # 20 % VAT, what IncludeVAT=YES adds
TRACKING_TYPES = ("TextCampaign", "UnifiedCampaign", "DynamicTextCampaign", "SmartCampaign")


@dataclass
class Row:
    day: date
    campaign_id: int
    ad_group_id: int
    criterion_id: int
    criterion: str
    impressions: int
    clicks: int
    cost_micros: int  # without VAT


@dataclass
class Campaign:
    id: int
    name: str
    currency: str = "RUB"
    tracking: str = ""
    kind: str = "TextCampaign"
    ad_groups: dict[int, str] = field(default_factory=dict)


@dataclass
class Pending:
    body: bytes
    polls_left: int
    last_answer: float


class DirectError(Exception):
    def __init__(self, status: int, code: int, text: str, detail: str = "") -> None:
        super().__init__(text)
        self.status, self.code, self.text, self.detail = status, code, text, detail


class FakeDirect(FakeServer):
    """State: ``rows`` and ``campaigns`` it reports; ``reports`` it answered; ``units``."""

    def __init__(
        self,
        *,
        token: str = "y0_direct-0auth-t0ken",
        agency_clients: frozenset[str] = frozenset(),
        offline_polls: int = 0,
        retry_in: int = 1,
        units: int = 64_000,
        campaigns_page: int = 1000,
    ) -> None:
        super().__init__()
        self.token = token
        self.agency_clients = agency_clients  # non-empty: an agency token; Client-Login required
        self.offline_polls = offline_polls  # 202 answers before a queued report is ready
        self.retry_in = retry_in
        self.units = units
        self.units_limit = units
        self.campaigns_page = campaigns_page
        self.rows: list[Row] = []
        self.campaigns: dict[int, Campaign] = {}
        self.pending: dict[str, Pending] = {}
        self.early_polls = 0  # repeats sent before retryIn had passed
        self.reports: list[dict[str, Any]] = []  # the params of each report answered with 200
        self.report_headers: list[dict[str, str]] = []
        self._recent: deque[float] = deque()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/json/v5/reports", self._reports)
        app.router.add_post("/json/v5/campaigns", self._campaigns)

    @property
    def api_url(self) -> str:
        return f"{self.url}/json/v5"

    def add(self, day: str, campaign: Campaign, ad_group: int, criterion_id: int, criterion: str,
            impressions: int, clicks: int, cost: str) -> None:  # fmt: skip
        """A row; `cost` in roubles without VAT, e.g. "123.456789" (micro-precision)."""
        self.campaigns.setdefault(campaign.id, campaign)
        micros = int(Decimal(cost) * 1_000_000)
        self.rows.append(
            Row(date.fromisoformat(day), campaign.id, ad_group, criterion_id, criterion,
                impressions, clicks, micros)
        )  # fmt: skip

    def set_cost(self, day: str, criterion_id: int, cost: str) -> None:
        """A correction: the platform now reports another cost for that day and keyword."""
        for row in self.rows:
            if row.day == date.fromisoformat(day) and row.criterion_id == criterion_id:
                row.cost_micros = int(Decimal(cost) * 1_000_000)

    # --- checks common to both services --------------------------------------------------

    def _check_auth(self, request: web.Request) -> None:
        now = time.monotonic()
        self._recent.append(now)
        while self._recent and self._recent[0] <= now - 10:
            self._recent.popleft()
        if len(self._recent) > 20:  # "a maximum of 20 requests in 10 seconds"
            raise DirectError(400, 56, "Request limit exceeded", "20 requests per 10 seconds")
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            raise DirectError(400, 53, "Authorization error", "Invalid OAuth token")
        login = request.headers.get("Client-Login", "")
        if self.agency_clients and login not in self.agency_clients:
            raise DirectError(400, 8000, "Invalid request", "Client-Login is required for agencies")
        if not self.agency_clients and login:
            raise DirectError(400, 54, "No rights", f"{login} is not a client of this user")

    @staticmethod
    def _error(err: DirectError) -> web.Response:
        return web.json_response(
            {"error": {"request_id": "1", "error_code": err.code, "error_string": err.text,
                       "error_detail": err.detail}},
            status=err.status,
        )  # fmt: skip

    # --- Reports -------------------------------------------------------------------------

    async def _reports(self, request: web.Request) -> web.StreamResponse:
        try:
            self._check_auth(request)
            return self._report(request, await request.read())
        except DirectError as err:
            return self._error(err)

    def _report(self, request: web.Request, raw: bytes) -> web.Response:
        headers = request.headers
        mode = headers.get("processingMode", "auto")
        if mode not in MODES:
            raise DirectError(400, 8000, "Invalid request", "processingMode")
        money = headers.get("returnMoneyInMicros", "true")
        if money not in ("true", "false"):
            raise DirectError(400, 8000, "Invalid request", "returnMoneyInMicros")
        params = self._params(raw)
        name = params["ReportName"]
        pending = self.pending.get(name)
        if pending is not None and pending.body != raw:
            # A report is identified by its name: repeats must send the same parameters.
            raise DirectError(400, 4000, "Invalid request", "a report with this name exists")
        wants_offline = mode == "offline" or (mode == "auto" and self.offline_polls > 0)
        if wants_offline:
            if mode == "online":
                raise DirectError(400, 8000, "Invalid request", "report too large for online")
            now = time.monotonic()
            if pending is None:
                if len(self.pending) >= 5:  # "a maximum of 5 offline reports at once"
                    raise DirectError(400, 9000, "Too many reports in the queue")
                self.pending[name] = Pending(raw, self.offline_polls, now)
                return self._queued(201)
            if now - pending.last_answer < self.retry_in:
                self.early_polls += 1
            pending.last_answer = now
            if pending.polls_left > 0:
                pending.polls_left -= 1
                return self._queued(202)
            del self.pending[name]
        self.reports.append(params)
        self.report_headers.append(dict(headers))
        return web.Response(
            text=self._tsv(params, headers, micros=money == "true"),
            content_type="text/tab-separated-values",
        )

    def _queued(self, status: int) -> web.Response:
        return web.Response(
            status=status,
            headers={"retryIn": str(self.retry_in), "reportsInQueue": str(len(self.pending))},
        )

    def _params(self, raw: bytes) -> dict[str, Any]:
        try:
            body = json.loads(raw)
            params = body["params"]
            criteria = params["SelectionCriteria"]
            fields = params["FieldNames"]
        except (ValueError, KeyError, TypeError):
            raise DirectError(400, 8000, "Invalid request", "params") from None
        required = ("ReportName", "ReportType", "DateRangeType", "Format", "IncludeVAT")
        missing = [k for k in required if not params.get(k)]
        if missing:
            raise DirectError(400, 8000, "Invalid request", f"missing {missing}")
        if params["ReportType"] not in REPORT_TYPES or params["Format"] != "TSV":
            raise DirectError(400, 8000, "Invalid request", "ReportType or Format")
        if params["IncludeVAT"] not in ("YES", "NO"):
            raise DirectError(400, 8000, "Invalid request", "IncludeVAT")
        if not isinstance(fields, list) or not fields or set(fields) - FIELDS:
            raise DirectError(400, 8000, "Invalid request", "FieldNames")
        if params["DateRangeType"] == "CUSTOM_DATE":
            try:
                first = date.fromisoformat(criteria["DateFrom"])
                last = date.fromisoformat(criteria["DateTo"])
            except (KeyError, ValueError):
                raise DirectError(400, 8000, "Invalid request", "DateFrom/DateTo") from None
            if last < first:
                raise DirectError(400, 8000, "Invalid request", "DateTo before DateFrom")
        return dict(params)

    def _tsv(self, params: dict[str, Any], headers: Any, *, micros: bool) -> str:
        fields = params["FieldNames"]
        first = date.fromisoformat(params["SelectionCriteria"]["DateFrom"])
        last = date.fromisoformat(params["SelectionCriteria"]["DateTo"])
        lines = []
        if headers.get("skipReportHeader") != "true":
            lines.append(f'"{params["ReportName"]} ({first} - {last})"')
        if headers.get("skipColumnHeader") != "true":
            lines.append("\t".join(fields))
        rows = [r for r in self.rows if first <= r.day <= last]
        for r in rows:
            campaign = self.campaigns[r.campaign_id]
            cost = Decimal(r.cost_micros) * (VAT if params["IncludeVAT"] == "YES" else 1)
            values = {
                "Date": r.day.isoformat(),
                "CampaignId": str(r.campaign_id),
                "CampaignName": campaign.name,
                "AdGroupId": str(r.ad_group_id),
                "AdGroupName": campaign.ad_groups.get(r.ad_group_id, "--"),
                "CriterionId": str(r.criterion_id) if r.criterion_id else "--",
                "Criterion": r.criterion or "--",
                "Impressions": str(r.impressions),
                "Clicks": str(r.clicks),
                "Cost": str(int(cost.to_integral_value(ROUND_HALF_UP)))
                if micros
                else f"{(cost / 1_000_000).quantize(Decimal('0.01'), ROUND_HALF_UP):.2f}",
            }
            lines.append("\t".join(values[f] for f in fields))
        if headers.get("skipReportSummary") != "true":
            lines.append(f"Total rows: {len(rows)}")
        return "\n".join(lines) + "\n"

    # --- Campaigns.get -------------------------------------------------------------------

    async def _campaigns(self, request: web.Request) -> web.StreamResponse:
        try:
            self._check_auth(request)
            body = await request.json()
            if body.get("method") != "get":
                raise DirectError(400, 8000, "Invalid request", "method")
            params = body["params"]
            ids = set(params.get("SelectionCriteria", {}).get("Ids") or self.campaigns)
            page = params.get("Page") or {}
            limit = min(int(page.get("Limit", 10000)), self.campaigns_page)
            offset = int(page.get("Offset", 0))
            if not params.get("FieldNames"):
                raise DirectError(400, 8000, "Invalid request", "FieldNames")
        except DirectError as err:
            return self._error(err)
        except (ValueError, KeyError, TypeError, AttributeError):
            return self._error(DirectError(400, 8000, "Invalid request", "params"))
        found = [self.campaigns[i] for i in sorted(ids) if i in self.campaigns]
        chunk = found[offset : offset + limit]
        cost = 10 + len(chunk)  # points: per call and per object returned
        if self.units < cost:
            return web.json_response(
                {"error": {"request_id": "2", "error_code": 152, "error_string": "Not enough units",
                           "error_detail": "Wait for points to be restored"}},
                headers={"Units": f"0/{self.units}/{self.units_limit}"},
            )  # fmt: skip
        self.units -= cost
        result: dict[str, Any] = {"Campaigns": []}
        for c in chunk:
            item: dict[str, Any] = {"Id": c.id}
            if "Name" in params["FieldNames"]:
                item["Name"] = c.name
            if "Currency" in params["FieldNames"]:
                item["Currency"] = c.currency
            if "TrackingParams" in (params.get(f"{c.kind}FieldNames") or []):
                item[c.kind] = {"TrackingParams": c.tracking or None}
            result["Campaigns"].append(item)
        if offset + limit < len(found):
            result["LimitedBy"] = offset + limit
        return web.json_response(
            {"result": result}, headers={"Units": f"{cost}/{self.units}/{self.units_limit}"}
        )
