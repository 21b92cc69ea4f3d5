"""VK Ads (ads.vk.com, API v2): statistics by day and ad group, with their campaigns.

Requests carry `Authorization: Bearer <access_token>`. An access token lives a day
(`expires_in`); it is refreshed with the refresh token at /api/v2/oauth2/token.json before it
runs out, or when a request answers 401 `expired_token`, and the new tokens are stored (a
refresh invalidates the old access token, and VK keeps at most five tokens per client and
user, so tokens are reused, never requested anew). 401 `revoked_token` or a refused refresh
token is an AuthError: the admin must reconnect. Lists page by `limit` (at most 50) and
`offset`; statistics take at most 200 ids a request. Rate limits come back in
X-RateLimit-*-Remaining headers and as 429. docs/adspend.md quotes the contract.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from typing import Annotated, Any, ClassVar

import aiohttp
from msgspec import Meta
from msgspec.structs import force_setattr, replace

from calltracker.adspend.base import (
    CampaignInfo,
    CurrencyCode,
    Pull,
    StatRow,
    TokenSaver,
    count,
    decimal_to_minor,
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

PLATFORM = "vk_ads"
SERVICE = "VK Ads"
PAGE = 50  # the API's maximum `limit`
STAT_IDS = 200  # objects per statistics request
REFRESH_MARGIN = timedelta(minutes=5)
RPS_RETRIES = 3


class VkConfig(ConfigShape, frozen=True):
    """One VK Ads cabinet, reached with an OAuth app's refresh token."""

    client_id: Annotated[str, Meta(max_length=200)]
    client_secret: Secret
    refresh_token: Secret
    access_token: Secret | None = None  # kept up to date by the connector
    access_expires_at: Annotated[str, Meta(max_length=40)] = ""  # ISO 8601; "": refresh first
    currency: CurrencyCode = "RUB"
    api_url: Url = "https://ads.vk.com"
    rate_limit: Annotated[float, Meta(gt=0, le=10.0)] = 2.0
    timeout: ClassVar[float] = 60.0

    def __post_init__(self) -> None:
        if self.access_expires_at:
            try:
                datetime.fromisoformat(self.access_expires_at)
            except ValueError:
                raise ValueError("access_expires_at: must be an ISO 8601 time") from None
        force_setattr(self, "currency", self.currency.upper())
        force_setattr(self, "api_url", self.api_url.rstrip("/"))


def _code(reply: HttpReply) -> tuple[str, str]:
    """(code, message) of VK's error body: {"error": {...}} or a bare {"code", "message"}."""
    try:
        body = reply.json()
    except ValueError:
        return "", ""
    if not isinstance(body, dict):
        return "", ""
    error = body.get("error", body)
    if isinstance(error, str):  # OAuth: {"error": "invalid_grant", "error_description": ...}
        return error, str(body.get("error_description") or "")
    if isinstance(error, dict):
        return str(error.get("code") or ""), str(error.get("message") or "")
    return "", ""


class VkConnector:
    platform = PLATFORM

    def __init__(
        self,
        config: VkConfig,
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], datetime] = utcnow,
        on_tokens: TokenSaver | None = None,
    ) -> None:
        self.config = config
        self._session = session
        self._clock = clock
        self._on_tokens = on_tokens
        self._limiter = RateLimiter(config.rate_limit)

    async def pull(self, first: date, last: date) -> Pull:
        plans = {str(p["id"]): str(p.get("name") or "") for p in await self._list("ad_plans")}
        groups = await self._list("ad_groups", "id,name,ad_plan_id,utm,enable_utm")
        infos = [CampaignInfo(pid, "", name) for pid, name in plans.items()]
        by_id: dict[str, tuple[str, str]] = {}
        for g in groups:
            gid = str(g["id"])
            plan = str(g.get("ad_plan_id") or gid)
            by_id[gid] = (plan, str(g.get("name") or ""))
            utm = str(g.get("utm") or "") if g.get("enable_utm", True) else ""
            infos.append(CampaignInfo(plan, gid, str(g.get("name") or ""), utm))
        rows: list[StatRow] = []
        ids = sorted(by_id, key=int)
        for start in range(0, len(ids), STAT_IDS):
            chunk = ids[start : start + STAT_IDS]
            body = await self._get(
                "/api/v2/statistics/ad_groups/day.json",
                {
                    "id": ",".join(chunk),
                    "date_from": first.isoformat(),
                    "date_to": last.isoformat(),
                    "metrics": "base",
                },
            )
            rows += self._stat_rows(body, by_id, plans)
        return Pull(currency=self.config.currency, rows=rows, campaigns=infos)

    def _stat_rows(
        self, body: Any, groups: Mapping[str, tuple[str, str]], plans: Mapping[str, str]
    ) -> list[StatRow]:
        rows = []
        try:
            for item in body.get("items") or []:
                gid = str(item["id"])
                plan, name = groups.get(gid, (gid, ""))
                for row in item.get("rows") or []:
                    base = row.get("base") or {}
                    stat = StatRow(
                        day=date.fromisoformat(str(row["date"])),
                        campaign_id=plan,
                        campaign_name=plans.get(plan, ""),
                        ad_group_id=gid,
                        ad_group_name=name,
                        impressions=count(base.get("shows")),
                        clicks=count(base.get("clicks")),
                        cost=decimal_to_minor(str(base.get("spent") or "0")),
                    )
                    if stat.impressions or stat.clicks or stat.cost:
                        rows.append(stat)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise PermanentError(f"{SERVICE}: unreadable statistics ({err})") from None
        return rows

    async def _list(self, resource: str, fields: str = "id,name") -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        offset = 0
        while True:
            body = await self._get(
                f"/api/v2/{resource}.json",
                {"fields": fields, "limit": str(PAGE), "offset": str(offset)},
            )
            try:
                page = list(body.get("items") or [])
                total = int(body.get("count") or 0)
            except (AttributeError, TypeError, ValueError):
                raise PermanentError(f"{SERVICE}: unreadable {resource} list") from None
            items += page
            offset += len(page)
            if not page or offset >= total:
                return items

    # --- HTTP and tokens ---------------------------------------------------------------

    def _expired(self) -> bool:
        if not self.config.access_token or not self.config.access_expires_at:
            return True
        expires = datetime.fromisoformat(self.config.access_expires_at)
        return expires - REFRESH_MARGIN <= self._clock()

    def _access_token(self) -> str:
        token = self.config.access_token
        return token.reveal() if token is not None else ""

    async def _refresh(self) -> None:
        reply = await send(
            self._session,
            "POST",
            f"{self.config.api_url}/api/v2/oauth2/token.json",
            service=SERVICE,
            limiter=self._limiter,
            timeout=self.config.timeout,
            data={
                "grant_type": "refresh_token",
                "refresh_token": self.config.refresh_token.reveal(),
                "client_id": self.config.client_id,
                "client_secret": self.config.client_secret.reveal(),
            },
        )
        code, message = _code(reply)
        if reply.status != 200:
            text = f"{SERVICE}: token refresh answered HTTP {reply.status} {code} {message}"
            if reply.status in (400, 401, 403):
                raise AuthError(text.strip() + "; connect the account again", status=reply.status)
            raise TemporaryError(text.strip(), status=reply.status)
        try:
            body = reply.json()
            access = str(body["access_token"])
            lifetime = int(body.get("expires_in") or 86400)
        except (ValueError, KeyError, TypeError):
            raise TemporaryError(f"{SERVICE}: unreadable token refresh answer") from None
        refresh = str(body.get("refresh_token") or self.config.refresh_token.reveal())
        expires = (self._clock() + timedelta(seconds=lifetime)).isoformat()
        self.config = replace(
            self.config,
            access_token=Secret(access),
            refresh_token=Secret(refresh),
            access_expires_at=expires,
        )
        if self._on_tokens is not None:
            await self._on_tokens(
                {"access_token": access, "refresh_token": refresh, "access_expires_at": expires}
            )
        log.info("event=vk_token_refreshed expires_at=%s", expires)

    async def _get(self, path: str, params: Mapping[str, str]) -> Any:
        if self._expired():
            await self._refresh()
        refreshed = False
        rps_waits = 0
        while True:
            reply = await send(
                self._session,
                "GET",
                self.config.api_url + path,
                service=SERVICE,
                limiter=self._limiter,
                timeout=self.config.timeout,
                params=dict(params),
                headers={"Authorization": f"Bearer {self._access_token()}"},
            )
            if reply.status == 200:
                try:
                    return reply.json()
                except ValueError:
                    raise PermanentError(f"{SERVICE}: {path} answered no JSON") from None
            code, message = _code(reply)
            if reply.status == 401 and code in ("expired_token", "invalid_token") and not refreshed:
                refreshed = True
                await self._refresh()
                continue
            if reply.status == 429:
                wait = _throttle_wait(reply)
                if wait <= 1.0 and rps_waits < RPS_RETRIES:
                    rps_waits += 1
                    await asyncio.sleep(1.0)
                    continue
                raise TemporaryError(
                    f"{SERVICE}: rate limit reached ({message or code or 'HTTP 429'})",
                    status=429,
                    retry_after=wait,
                )
            raise _failure(reply, code, message, path)


def _throttle_wait(reply: HttpReply) -> float:
    """Seconds until the exhausted limit resets: the day's, the hour's, or the second's."""
    headers = reply.headers
    if headers.get("X-RateLimit-Daily-Remaining") == "0":
        return 86400.0
    if headers.get("X-RateLimit-Hourly-Remaining") == "0":
        return 3600.0
    return 1.0


def _failure(reply: HttpReply, code: str, message: str, path: str) -> IntegrationError:
    text = f"{SERVICE}: HTTP {reply.status} on {path}" + (f": {code}" if code else "")
    text += f" {message}" if message else ""
    if reply.status in (401, 403):
        hint = "; connect the account again" if code == "revoked_token" else ""
        return AuthError(text + hint, status=reply.status, code=code)
    if reply.status >= 500:
        return TemporaryError(text, status=reply.status, code=code)
    return PermanentError(text, status=reply.status, code=code)
