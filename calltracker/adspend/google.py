"""Google Ads API (REST): GAQL through googleAds:searchStream, by segments.date.

Three queries a pull: FROM campaign, FROM ad_group and FROM keyword_view, each with
metrics.impressions, metrics.clicks and metrics.cost_micros. Keyword rows are stored as they
are; what an ad group spent beyond its keywords (display, dynamic ads) becomes an ad group row,
and what a campaign spent beyond its ad groups (Performance Max) a campaign row, so the rows
add up to the campaigns' totals. Every request sends `Authorization: Bearer` with an access
token from oauth2.googleapis.com/token (refresh-token grant; it lives an hour), the
`developer-token`, and `login-customer-id` when a manager account gives the access.
searchStream answers a JSON array of result batches. docs/adspend.md quotes the contract.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any, ClassVar

import aiohttp
from msgspec import Meta
from msgspec.structs import force_setattr

from calltracker.adspend.base import (
    CampaignInfo,
    Pull,
    StatRow,
    TokenSaver,
    count,
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
from calltracker.shapes import INVALID

PLATFORM = "google_ads"
SERVICE = "Google Ads"
METRICS = "metrics.impressions, metrics.clicks, metrics.cost_micros"
CUSTOMER_QUERY = "SELECT customer.currency_code FROM customer"
CAMPAIGN_QUERY = (
    "SELECT campaign.id, campaign.name, campaign.final_url_suffix, "
    f"campaign.tracking_url_template, segments.date, {METRICS} FROM campaign "
    "WHERE segments.date BETWEEN '{first}' AND '{last}'"
)
AD_GROUP_QUERY = (
    "SELECT campaign.id, ad_group.id, ad_group.name, ad_group.final_url_suffix, "
    f"ad_group.tracking_url_template, segments.date, {METRICS} FROM ad_group "
    "WHERE segments.date BETWEEN '{first}' AND '{last}'"
)
KEYWORD_QUERY = (
    "SELECT campaign.id, ad_group.id, ad_group_criterion.criterion_id, "
    f"ad_group_criterion.keyword.text, segments.date, {METRICS} FROM keyword_view "
    "WHERE segments.date BETWEEN '{first}' AND '{last}'"
)
_DELAY = re.compile(r"^(\d+(?:\.\d+)?)s$")


# A customer id as the UI shows it (123-456-7890) or as digits; stored as the ten digits.
CustomerId = Annotated[
    str,
    Meta(
        pattern=r"^-*(?:\d-*){10}$",
        description="ten digits, dashes allowed",
        extra={INVALID: "must be a ten-digit customer id such as 123-456-7890"},
    ),
]


class GoogleConfig(ConfigShape, frozen=True):
    """One Google Ads customer, reached with an OAuth client's refresh token."""

    customer_id: CustomerId
    developer_token: Secret
    client_id: Annotated[str, Meta(max_length=300)]
    client_secret: Secret
    refresh_token: Secret
    login_customer_id: CustomerId = ""  # the manager account, when it gives access
    api_version: Annotated[
        str, Meta(pattern=r"^v\d{1,3}$", extra={INVALID: "must look like v21"})
    ] = "v21"
    api_url: Url = "https://googleads.googleapis.com"
    token_url: Url = "https://oauth2.googleapis.com/token"
    rate_limit: Annotated[float, Meta(gt=0, le=10.0)] = 1.0
    timeout: ClassVar[float] = 120.0

    def __post_init__(self) -> None:
        force_setattr(self, "customer_id", self.customer_id.replace("-", ""))
        force_setattr(self, "login_customer_id", self.login_customer_id.replace("-", ""))
        force_setattr(self, "api_url", self.api_url.rstrip("/"))


@dataclass
class _Sum:
    impressions: int = 0
    clicks: int = 0
    micros: int = 0
    minor: int = 0  # the emitted rows' costs, each rounded as stored

    def add(self, impressions: int, clicks: int, micros: int, minor: int = 0) -> None:
        self.impressions += impressions
        self.clicks += clicks
        self.micros += micros
        self.minor += minor


def _metrics(row: Mapping[str, Any]) -> tuple[int, int, int]:
    m = row.get("metrics") or {}
    return count(m.get("impressions")), count(m.get("clicks")), count(m.get("costMicros"))


def _tracking(resource: Mapping[str, Any]) -> str:
    suffix = str(resource.get("finalUrlSuffix") or "")
    template = str(resource.get("trackingUrlTemplate") or "")
    return suffix if "utm_source" in suffix or not template else template


class GoogleConnector:
    platform = PLATFORM

    def __init__(
        self,
        config: GoogleConfig,
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], datetime] = utcnow,
        on_tokens: TokenSaver | None = None,
    ) -> None:
        self.config = config
        self._session = session
        self._clock = clock
        self._limiter = RateLimiter(config.rate_limit)
        self._access = ""
        self._access_until = datetime.min.replace(tzinfo=clock().tzinfo)

    async def pull(self, first: date, last: date) -> Pull:
        dates = {"first": first.isoformat(), "last": last.isoformat()}
        customer = await self._search(CUSTOMER_QUERY)
        currency = ""
        for row in customer:
            currency = str((row.get("customer") or {}).get("currencyCode") or "")
        if len(currency) != 3:
            raise PermanentError(f"{SERVICE}: the customer's currency_code is missing")
        campaigns = await self._search(CAMPAIGN_QUERY.format(**dates))
        groups = await self._search(AD_GROUP_QUERY.format(**dates))
        keywords = await self._search(KEYWORD_QUERY.format(**dates))
        try:
            rows, infos = self._compose(campaigns, groups, keywords)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise PermanentError(f"{SERVICE}: unreadable search results ({err})") from None
        return Pull(currency=currency.upper(), rows=rows, campaigns=infos)

    def _compose(
        self,
        campaigns: Sequence[Mapping[str, Any]],
        groups: Sequence[Mapping[str, Any]],
        keywords: Sequence[Mapping[str, Any]],
    ) -> tuple[list[StatRow], list[CampaignInfo]]:
        names: dict[str, str] = {}
        group_names: dict[str, str] = {}
        infos: dict[tuple[str, str], CampaignInfo] = {}
        campaign_sum: dict[tuple[date, str], _Sum] = {}
        group_sum: dict[tuple[date, str, str], _Sum] = {}
        under_groups: dict[tuple[date, str], _Sum] = {}
        under_keywords: dict[tuple[date, str, str], _Sum] = {}
        rows: list[StatRow] = []
        for r in campaigns:
            c = r["campaign"]
            cid = str(c["id"])
            names[cid] = str(c.get("name") or "")
            infos[(cid, "")] = CampaignInfo(cid, "", names[cid], _tracking(c))
            day = date.fromisoformat(r["segments"]["date"])
            campaign_sum.setdefault((day, cid), _Sum()).add(*_metrics(r))
        for r in groups:
            cid, g = str(r["campaign"]["id"]), r["adGroup"]
            gid = str(g["id"])
            group_names[gid] = str(g.get("name") or "")
            infos[(cid, gid)] = CampaignInfo(cid, gid, group_names[gid], _tracking(g))
            day = date.fromisoformat(r["segments"]["date"])
            metrics = _metrics(r)
            group_sum.setdefault((day, cid, gid), _Sum()).add(*metrics)
            under_groups.setdefault((day, cid), _Sum()).add(*metrics)  # minor: added below
        for r in keywords:
            cid, gid = str(r["campaign"]["id"]), str(r["adGroup"]["id"])
            criterion = r["adGroupCriterion"]
            day = date.fromisoformat(r["segments"]["date"])
            shows, clicks, micros = _metrics(r)
            under_keywords.setdefault((day, cid, gid), _Sum()).add(
                shows, clicks, micros, micros_to_minor(micros)
            )
            rows.append(
                StatRow(
                    day=day,
                    campaign_id=cid,
                    campaign_name=names.get(cid, ""),
                    ad_group_id=gid,
                    ad_group_name=group_names.get(gid, ""),
                    keyword_id=str(criterion["criterionId"]),
                    keyword=str((criterion.get("keyword") or {}).get("text") or ""),
                    impressions=shows,
                    clicks=clicks,
                    cost=micros_to_minor(micros),
                )
            )
        # What a level spent beyond the level below it, as a row of its own; a level's rows
        # then add up to its total, rounded to the kopeck once.
        for (day, cid, gid), total in group_sum.items():
            below = under_keywords.get((day, cid, gid)) or _Sum()
            rest = _rest(total, below)
            emitted = below.minor + (rest[2] if rest else 0)
            under_groups.setdefault((day, cid), _Sum()).add(0, 0, 0, emitted)
            if rest is not None:
                rows.append(
                    StatRow(
                        day, cid, names.get(cid, ""), gid, group_names.get(gid, ""), "", "", *rest
                    )
                )
        for (day, cid), total in campaign_sum.items():
            rest = _rest(total, under_groups.get((day, cid)) or _Sum())
            if rest is not None:
                rows.append(StatRow(day, cid, names.get(cid, ""), "", "", "", "", *rest))
        return rows, list(infos.values())

    # --- HTTP and tokens ---------------------------------------------------------------

    async def _token(self, *, force: bool = False) -> str:
        if self._access and not force and self._clock() < self._access_until:
            return self._access
        reply = await send(
            self._session,
            "POST",
            self.config.token_url,
            service=f"{SERVICE} OAuth",
            limiter=self._limiter,
            timeout=self.config.timeout,
            data={
                "grant_type": "refresh_token",
                "client_id": self.config.client_id,
                "client_secret": self.config.client_secret.reveal(),
                "refresh_token": self.config.refresh_token.reveal(),
            },
        )
        try:
            body = reply.json()
        except ValueError:
            body = None
        if reply.status != 200 or not isinstance(body, dict) or "access_token" not in body:
            error = body.get("error", "") if isinstance(body, dict) else ""
            text = f"{SERVICE}: token refresh answered HTTP {reply.status} {error}".strip()
            if reply.status in (400, 401, 403):
                raise AuthError(
                    text + "; authorise the account again", status=reply.status, code=str(error)
                )
            raise TemporaryError(text, status=reply.status)
        self._access = str(body["access_token"])
        lifetime = int(body.get("expires_in") or 3600)
        self._access_until = self._clock() + timedelta(seconds=max(60, lifetime - 300))
        return self._access

    def _headers(self, token: str) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {token}",
            "developer-token": self.config.developer_token.reveal(),
            "Content-Type": "application/json",
        }
        if self.config.login_customer_id:
            headers["login-customer-id"] = self.config.login_customer_id
        return headers

    async def _search(self, query: str) -> list[dict[str, Any]]:
        url = (
            f"{self.config.api_url}/{self.config.api_version}/customers/"
            f"{self.config.customer_id}/googleAds:searchStream"
        )
        token = await self._token()
        for attempt in (1, 2):
            reply = await send(
                self._session,
                "POST",
                url,
                service=SERVICE,
                limiter=self._limiter,
                timeout=self.config.timeout,
                data=json.dumps({"query": query}).encode(),
                headers=self._headers(token),
            )
            if reply.status == 200:
                return _results(reply)
            if reply.status == 401 and attempt == 1:
                token = await self._token(force=True)  # the access token expired early
                continue
            raise _failure(reply)
        raise AssertionError("unreachable")


def _rest(total: _Sum, below: _Sum) -> tuple[int, int, int] | None:
    """A level's figures beyond the level below (its rows' rounded costs), floored at 0;
    None when nothing is left."""
    shows = max(0, total.impressions - below.impressions)
    clicks = max(0, total.clicks - below.clicks)
    cost = max(0, micros_to_minor(total.micros) - below.minor)
    if not (shows or clicks or cost):
        return None
    return shows, clicks, cost


def _results(reply: HttpReply) -> list[dict[str, Any]]:
    """Every row of every batch of a searchStream answer."""
    try:
        batches = reply.json()
    except ValueError:
        raise PermanentError(f"{SERVICE}: searchStream answered no JSON") from None
    if isinstance(batches, dict):
        batches = [batches]
    rows: list[dict[str, Any]] = []
    for batch in batches or []:
        if not isinstance(batch, dict):
            raise PermanentError(f"{SERVICE}: unreadable searchStream batch")
        if "error" in batch:
            raise _failure(reply, batch)
        rows += list(batch.get("results") or [])
    return rows


def _walk(value: Any) -> list[Any]:
    out = [value]
    if isinstance(value, dict):
        for item in value.values():
            out += _walk(item)
    elif isinstance(value, list):
        for item in value:
            out += _walk(item)
    return out


def _failure(reply: HttpReply, body: Any = None) -> IntegrationError:
    if body is None:
        try:
            body = reply.json()
        except ValueError:
            body = None
    if isinstance(body, list) and body:
        body = body[0]
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    status = str(error.get("status") or "")
    messages = [
        str(e["message"])
        for e in _walk(error.get("details"))
        if isinstance(e, dict) and "message" in e
    ]
    detail = "; ".join(messages) or str(error.get("message") or "")
    text = f"{SERVICE}: HTTP {reply.status} {status}".strip() + (f": {detail}" if detail else "")
    if reply.status in (401, 403):
        return AuthError(text, status=reply.status, code=status)
    if reply.status == 429 or reply.status >= 500:
        retry = None
        for item in _walk(error.get("details")):
            if isinstance(item, dict) and isinstance(item.get("retryDelay"), str):
                match = _DELAY.match(item["retryDelay"])
                if match:
                    retry = float(match.group(1))
        return TemporaryError(text, status=reply.status, code=status, retry_after=retry)
    return PermanentError(text, status=reply.status, code=status)
