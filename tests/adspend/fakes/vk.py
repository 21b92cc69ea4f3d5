"""VK Ads API v2 (ads.vk.com): OAuth2 tokens, lists, statistics; docs/adspend.md section 2."""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from aiohttp import web

from tests.integrations.fakes.server import FakeServer

PAGE_MAX = 50
STAT_IDS_MAX = 200


@dataclass
class AdGroup:
    id: int
    name: str
    ad_plan_id: int
    utm: str = ""
    enable_utm: bool = True
    # day -> (shows, clicks, spent as the API writes it, e.g. "123.45")
    stats: dict[date, tuple[int, int, str]] = field(default_factory=dict)


class FakeVk(FakeServer):
    """State: ``plans``, ``groups``; tokens issued, refreshed and revoked; request counts."""

    def __init__(
        self,
        *,
        client_id: str = "vk-client-1",
        client_secret: str = "vk-cl1ent-s3cret",
        refresh_token: str = "vk-r3fresh-0",
        token_lifetime: int = 86400,
        rps_limit: int = 5,
    ) -> None:
        super().__init__()
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_tokens = {refresh_token}
        self.token_lifetime = token_lifetime
        self.rps_limit = rps_limit
        self.rotate_refresh = True  # the client option that renews refresh_token on refresh
        self.access: dict[str, float] = {}  # access token -> expiry (monotonic)
        self.revoked = False
        self.refreshes = 0
        self.plans: dict[int, str] = {}
        self.groups: dict[int, AdGroup] = {}
        self.stat_requests: list[dict[str, str]] = []
        self.rejected_for_rate = 0
        self._recent: deque[float] = deque()
        self._serial = itertools.count(1)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/v2/oauth2/token.json", self._token)
        app.router.add_get("/api/v2/ad_plans.json", self._plans)
        app.router.add_get("/api/v2/ad_groups.json", self._groups)
        app.router.add_get("/api/v2/statistics/ad_groups/day.json", self._stats)

    def issue(self, lifetime: float | None = None) -> str:
        """An access token as if obtained earlier (what a stored config holds)."""
        token = f"vk-access-{next(self._serial)}"
        self.access[token] = time.monotonic() + (lifetime or self.token_lifetime)
        return token

    def add_group(self, group: AdGroup, plan_name: str) -> AdGroup:
        self.plans[group.ad_plan_id] = plan_name
        self.groups[group.id] = group
        return group

    # --- OAuth ---------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.StreamResponse:
        if request.content_type != "application/x-www-form-urlencoded":
            return web.json_response({"error": "invalid_request"}, status=400)
        form = await request.post()
        if (
            form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            return web.json_response(
                {"error": "invalid_client", "error_description": "Invalid client id or secret"},
                status=401,
            )
        if form.get("grant_type") != "refresh_token":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        refresh = str(form.get("refresh_token") or "")
        if self.revoked or refresh not in self.refresh_tokens:
            return web.json_response(
                {"error": "invalid_grant", "error_description": "Unknown refresh token"}, status=400
            )
        # "refreshing a token does not create a new instance: the access_token value changes,
        # and the old key value stops working"
        self.access.clear()
        self.refreshes += 1
        if self.rotate_refresh:
            self.refresh_tokens = {f"vk-r3fresh-{next(self._serial)}"}
        token = self.issue()
        return web.json_response(
            {"access_token": token, "token_type": "bearer", "scope": "read_ads",
             "expires_in": str(self.token_lifetime), "refresh_token": next(iter(self.refresh_tokens))}
        )  # fmt: skip

    # --- the API -------------------------------------------------------------------------

    def _guard(self, request: web.Request) -> web.Response | None:
        now = time.monotonic()
        self._recent.append(now)
        while self._recent and self._recent[0] <= now - 1:
            self._recent.popleft()
        if len(self._recent) > self.rps_limit:
            self.rejected_for_rate += 1
            return web.json_response(
                {"error": {"code": "RATE_LIMIT", "message": "Too many requests"}},
                status=429,
                headers={"X-RateLimit-RPS-Limit": str(self.rps_limit),
                         "X-RateLimit-RPS-Remaining": "0"},
            )  # fmt: skip
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self.access:
            return self._unauthorized("invalid_token", "Unknown access token")
        if self.revoked:
            return self._unauthorized("revoked_token", "Access token has been revoked")
        if self.access[token] < now:
            return self._unauthorized("expired_token", "Access token is expired")
        return None

    @staticmethod
    def _unauthorized(code: str, message: str) -> web.Response:
        return web.json_response(
            {"code": code, "message": message},
            status=401,
            headers={
                "WWW-Authenticate": f'Bearer realm="api", error="{code}", '
                f'error_description="{message}"'
            },
        )

    def _page(self, request: web.Request, items: list[dict[str, Any]]) -> web.Response:
        try:
            limit = int(request.query.get("limit", "20"))
            offset = int(request.query.get("offset", "0"))
        except ValueError:
            return _bad("ERR_WRONG_PARAMETER", "limit and offset are integers")
        if not 1 <= limit <= PAGE_MAX:
            return _bad("ERR_WRONG_PARAMETER", f"limit: maximum {PAGE_MAX}")
        fields = request.query.get("fields", "id,name").split(",")
        chunk = [{k: v for k, v in item.items() if k in fields} for item in items]
        return web.json_response(
            {"count": len(items), "offset": offset, "limit": limit,
             "items": chunk[offset : offset + limit]},
            headers={"X-RateLimit-RPS-Limit": str(self.rps_limit)},
        )  # fmt: skip

    async def _plans(self, request: web.Request) -> web.StreamResponse:
        refused = self._guard(request)
        if refused:
            return refused
        return self._page(request, [{"id": i, "name": n} for i, n in sorted(self.plans.items())])

    async def _groups(self, request: web.Request) -> web.StreamResponse:
        refused = self._guard(request)
        if refused:
            return refused
        items = [
            {"id": g.id, "name": g.name, "ad_plan_id": g.ad_plan_id, "utm": g.utm or None,
             "enable_utm": g.enable_utm}
            for g in sorted(self.groups.values(), key=lambda g: g.id)
        ]  # fmt: skip
        return self._page(request, items)

    async def _stats(self, request: web.Request) -> web.StreamResponse:
        refused = self._guard(request)
        if refused:
            return refused
        q = request.query
        self.stat_requests.append(dict(q))
        if not q.get("id") or not q.get("date_from") or not q.get("date_to"):
            return _bad("ERR_WRONG_PARAMETER", "id, date_from and date_to are required")
        ids = q["id"].split(",")
        if len(ids) > STAT_IDS_MAX:
            return _bad("ERR_LIMIT_EXCEEDED", f"at most {STAT_IDS_MAX} objects per request")
        try:
            first, last = date.fromisoformat(q["date_from"]), date.fromisoformat(q["date_to"])
        except ValueError:
            return _bad("ERR_WRONG_DATE", "dates are YYYY-MM-DD")
        if last < first:
            return _bad("ERR_WRONG_DATE", "date_to before date_from")
        if q.get("metrics", "base") not in ("base", "all"):
            return _bad("ERR_WRONG_PARAMETER", "metrics")
        items = []
        for raw in ids:
            group = self.groups.get(int(raw)) if raw.isdigit() else None
            if group is None:
                return _bad("ERR_WRONG_CAMPAIGNS", f"unknown id {raw}")
            rows = []
            day = first
            while day <= last:
                shows, clicks, spent = group.stats.get(day, (0, 0, "0"))
                rows.append({"date": day.isoformat(),
                             "base": {"shows": shows, "clicks": clicks, "spent": spent,
                                      "goals": 0, "cpm": "0", "cpc": "0", "cpa": "0",
                                      "ctr": 0, "cr": 0}})  # fmt: skip
                day += timedelta(days=1)
            total_spent = sum((Decimal(r["base"]["spent"]) for r in rows), Decimal(0))
            items.append(
                {"id": group.id, "rows": rows, "total": {"base": {"spent": str(total_spent)}}}
            )
        return web.json_response({"items": items, "total": {}})


def _bad(code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=400)
