"""Google Ads API (REST) googleAds:searchStream and Google's OAuth2 token endpoint;
docs/adspend.md section 3."""

from __future__ import annotations

import itertools
import json
import re
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from aiohttp import web

from tests.integrations.fakes.server import FakeServer

VERSION = "v21"
METRICS = {"metrics.impressions", "metrics.clicks", "metrics.cost_micros"}
RESOURCE_FIELDS = {
    "customer": {"customer.currency_code", "customer.id", "customer.time_zone"},
    "campaign": {"campaign.id", "campaign.name", "campaign.final_url_suffix",
                 "campaign.tracking_url_template", "segments.date"} | METRICS,
    "ad_group": {"campaign.id", "ad_group.id", "ad_group.name", "ad_group.final_url_suffix",
                 "ad_group.tracking_url_template", "segments.date"} | METRICS,
    "keyword_view": {"campaign.id", "ad_group.id", "ad_group_criterion.criterion_id",
                     "ad_group_criterion.keyword.text", "segments.date"} | METRICS,
}  # fmt: skip
QUERY = re.compile(
    r"^SELECT (?P<fields>.+?) FROM (?P<resource>\w+)"
    r"(?: WHERE segments\.date BETWEEN '(?P<first>\d{4}-\d\d-\d\d)' AND '(?P<last>\d{4}-\d\d-\d\d)')?$"
)


@dataclass
class Stat:
    impressions: int = 0
    clicks: int = 0
    micros: int = 0


@dataclass
class Campaign:
    id: int
    name: str
    final_url_suffix: str = ""
    tracking_url_template: str = ""
    extra: dict[date, Stat] = field(default_factory=dict)  # spend not under any ad group


@dataclass
class AdGroup:
    id: int
    campaign_id: int
    name: str
    extra: dict[date, Stat] = field(default_factory=dict)  # spend not under any keyword


@dataclass
class Keyword:
    id: int
    ad_group_id: int
    text: str
    stats: dict[date, Stat] = field(default_factory=dict)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _mask(fields: list[str]) -> str:
    return ",".join(".".join(_camel(p) for p in f.split(".")) for f in fields)


class FakeGoogleAds(FakeServer):
    """State: the account's campaigns, ad groups and keywords; tokens; quota; queries seen."""

    def __init__(
        self,
        *,
        customer_id: str = "1234567890",
        manager_id: str = "",
        developer_token: str = "g00gle-dev-t0ken",
        client_id: str = "g-client.apps.googleusercontent.com",
        client_secret: str = "g-cl1ent-s3cret",
        refresh_token: str = "1//g-r3fresh",
        currency: str = "USD",
        batch_size: int = 2,
        daily_quota: int = 15_000,
    ) -> None:
        super().__init__()
        self.customer_id = customer_id
        self.manager_id = manager_id  # non-empty: access only through this manager account
        self.developer_token = developer_token
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_tokens = {refresh_token}
        self.currency = currency
        self.batch_size = batch_size
        self.quota = daily_quota
        self.access: dict[str, float] = {}
        self.campaigns: dict[int, Campaign] = {}
        self.groups: dict[int, AdGroup] = {}
        self.keywords: dict[int, Keyword] = {}
        self.queries: list[str] = []
        self.headers_seen: list[dict[str, str]] = []
        self.token_requests = 0
        self._serial = itertools.count(1)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/token", self._token)
        app.router.add_post(
            "/{version}/customers/{customer}/googleAds:searchStream", self._search_stream
        )

    def expire_tokens(self) -> None:
        for token in self.access:
            self.access[token] = 0.0

    # --- OAuth (oauth2.googleapis.com/token) -----------------------------------------------

    async def _token(self, request: web.Request) -> web.StreamResponse:
        self.token_requests += 1
        form = await request.post()
        if (
            form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            return web.json_response({"error": "invalid_client"}, status=401)
        if form.get("grant_type") != "refresh_token":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        if form.get("refresh_token") not in self.refresh_tokens:
            return web.json_response(
                {
                    "error": "invalid_grant",
                    "error_description": "Token has been expired or revoked.",
                },
                status=400,
            )
        token = f"ya29.g-access-{next(self._serial)}"
        self.access[token] = time.monotonic() + 3599
        return web.json_response(
            {"access_token": token, "expires_in": 3599, "scope": "https://www.googleapis.com/auth/adwords",
             "token_type": "Bearer"}
        )  # fmt: skip

    # --- searchStream ----------------------------------------------------------------------

    @staticmethod
    def _error(status: int, state: str, code: dict[str, str], message: str,
               details: dict[str, Any] | None = None) -> web.Response:  # fmt: skip
        error: dict[str, Any] = {"errorCode": code, "message": message}
        if details:
            error["details"] = details
        return web.json_response(
            [{"error": {"code": status, "message": "Request had errors", "status": state,
                        "details": [{"@type": "type.googleapis.com/google.ads.googleads."
                                     f"{VERSION}.errors.GoogleAdsFailure", "errors": [error]}]}}],
            status=status,
        )  # fmt: skip

    async def _search_stream(self, request: web.Request) -> web.StreamResponse:
        self.headers_seen.append(dict(request.headers))
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or self.access.get(token, 0.0) < time.monotonic():
            return self._error(401, "UNAUTHENTICATED",
                               {"authenticationError": "OAUTH_TOKEN_INVALID"},
                               "Request is missing required authentication credential.")  # fmt: skip
        if request.headers.get("developer-token") != self.developer_token:
            return self._error(401, "UNAUTHENTICATED",
                               {"authenticationError": "DEVELOPER_TOKEN_INVALID"},
                               "The developer token is not valid.")  # fmt: skip
        if request.match_info["version"] != VERSION:
            return web.json_response({"error": {"code": 404, "status": "NOT_FOUND"}}, status=404)
        login = request.headers.get("login-customer-id", "")
        if login and not re.fullmatch(r"\d{10}", login):
            return self._error(400, "INVALID_ARGUMENT", {"headerError": "INVALID_LOGIN_CUSTOMER_ID"},
                               "The login customer id could not be validated.")  # fmt: skip
        if request.match_info["customer"] != self.customer_id or login != self.manager_id:
            return self._error(403, "PERMISSION_DENIED",
                               {"authorizationError": "USER_PERMISSION_DENIED"},
                               "User doesn't have permission to access customer. Note: If you're "
                               "accessing a client customer, the manager's customer id must be "
                               "set in the 'login-customer-id' header.")  # fmt: skip
        if self.quota <= 0:
            return self._error(429, "RESOURCE_EXHAUSTED", {"quotaError": "RESOURCE_EXHAUSTED"},
                               "Too many requests.",
                               {"quotaErrorDetails": {"rateScope": "DEVELOPER",
                                                      "rateName": "Number of operations",
                                                      "retryDelay": "30s"}})  # fmt: skip
        self.quota -= 1
        try:
            query = str((await request.json())["query"])
        except (ValueError, KeyError, TypeError):
            return self._error(400, "INVALID_ARGUMENT", {"requestError": "INVALID_INPUT"}, "query")
        self.queries.append(query)
        match = QUERY.match(" ".join(query.split()))
        if match is None:
            return self._error(400, "INVALID_ARGUMENT", {"queryError": "UNEXPECTED_END_OF_QUERY"},
                               "Error in query.")  # fmt: skip
        resource = match["resource"]
        fields = [f.strip() for f in match["fields"].split(",")]
        if resource not in RESOURCE_FIELDS or set(fields) - RESOURCE_FIELDS[resource]:
            return self._error(400, "INVALID_ARGUMENT", {"queryError": "UNRECOGNIZED_FIELD"},
                               f"Unrecognized fields in {resource}.")  # fmt: skip
        if "segments.date" in fields and not match["first"]:
            # "Filtering by a finite date range is required when segments.date is selected."
            return self._error(400, "INVALID_ARGUMENT", {"queryError": "DATE_RANGE_TOO_WIDE"},
                               "segments.date needs a finite date range in WHERE.")  # fmt: skip
        first = date.fromisoformat(match["first"]) if match["first"] else None
        last = date.fromisoformat(match["last"]) if match["last"] else None
        rows = [self._row(r, fields) for r in self._rows(resource, first, last)]
        batches = [
            {"results": rows[i : i + self.batch_size], "fieldMask": _mask(fields),
             "requestId": f"req-{next(self._serial)}"}
            for i in range(0, max(1, len(rows)), self.batch_size)
        ]  # fmt: skip
        return web.Response(text=json.dumps(batches), content_type="application/json")

    def _rows(self, resource: str, first: date | None, last: date | None) -> list[dict[str, Any]]:
        """Flat rows: every field name -> value, for the resource's segments.date grain."""

        def within(day: date) -> bool:
            return first is not None and last is not None and first <= day <= last

        out: list[dict[str, Any]] = []
        if resource == "customer":
            return [{"customer.currency_code": self.currency, "customer.id": self.customer_id}]
        if resource == "keyword_view":
            for k in self.keywords.values():
                g = self.groups[k.ad_group_id]
                for day, s in k.stats.items():
                    if within(day):
                        out.append(self._flat(day, s, g.campaign_id, g.id, k))
            return out
        per_group: dict[tuple[date, int], Stat] = {}
        for k in self.keywords.values():
            for day, s in k.stats.items():
                _add(per_group.setdefault((day, k.ad_group_id), Stat()), s)
        for g in self.groups.values():
            for day, s in g.extra.items():
                _add(per_group.setdefault((day, g.id), Stat()), s)
        if resource == "ad_group":
            for (day, gid), s in per_group.items():
                if within(day):
                    out.append(self._flat(day, s, self.groups[gid].campaign_id, gid, None))
            return out
        per_campaign: dict[tuple[date, int], Stat] = {}
        for (day, gid), s in per_group.items():
            _add(per_campaign.setdefault((day, self.groups[gid].campaign_id), Stat()), s)
        for c in self.campaigns.values():
            for day, s in c.extra.items():
                _add(per_campaign.setdefault((day, c.id), Stat()), s)
        for (day, cid), s in per_campaign.items():
            if within(day):
                out.append(self._flat(day, s, cid, None, None))
        return out

    def _flat(
        self, day: date, s: Stat, cid: int, gid: int | None, k: Keyword | None
    ) -> dict[str, Any]:
        c = self.campaigns[cid]
        row: dict[str, Any] = {
            "segments.date": day.isoformat(),
            "metrics.impressions": str(s.impressions),  # int64 travels as a string in JSON
            "metrics.clicks": str(s.clicks),
            "metrics.cost_micros": str(s.micros),
            "campaign.id": str(cid),
            "campaign.name": c.name,
            "campaign.final_url_suffix": c.final_url_suffix,
            "campaign.tracking_url_template": c.tracking_url_template,
        }
        if gid is not None:
            row |= {"ad_group.id": str(gid), "ad_group.name": self.groups[gid].name,
                    "ad_group.final_url_suffix": "", "ad_group.tracking_url_template": ""}  # fmt: skip
        if k is not None:
            row |= {"ad_group_criterion.criterion_id": str(k.id),
                    "ad_group_criterion.keyword.text": k.text}  # fmt: skip
        return row

    @staticmethod
    def _row(flat: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        """A GoogleAdsRow in REST JSON: nested camelCase objects, empty strings left out."""
        row: dict[str, Any] = {}
        for name in fields:
            value = flat.get(name)
            if value in (None, ""):
                continue
            parts = [_camel(p) for p in name.split(".")]
            node = row
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = value
        return row


def _add(total: Stat, s: Stat) -> None:
    total.impressions += s.impressions
    total.clicks += s.clicks
    total.micros += s.micros
