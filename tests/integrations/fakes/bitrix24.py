"""A Bitrix24 portal: incoming webhook and OAuth app REST, per integrations.md section 1, and
its deals with their outgoing webhook events (docs/integrations.md, "Deals back").
"""

from __future__ import annotations

import itertools
import json
import re
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web

from .server import FakeServer

PHONE_VALUE_TYPES = {"WORK", "MOBILE", "FAX", "HOME", "PAGER", "MAILING", "OTHER"}
STATUS_CODES = {
    "200",
    "304",
    "603",
    "603-S",
    "403",
    "404",
    "486",
    "484",
    "503",
    "480",
    "402",
    "423",
    "OTHER",
}
MSK = ZoneInfo("Europe/Moscow")
ISO_WITH_OFFSET = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?[+-]\d{2}:\d{2}$")
OWNER_TYPES = {1: "LEAD", 2: "DEAL", 3: "CONTACT", 4: "COMPANY"}
TRACE_TYPES = {"COMPANY", "CONTACT", "DEAL", "LEAD", "QUOTE"}
PAGE = 50  # every list method answers 50 rows a page
# The stages of the general pipeline (category 0), with crm.status.list's SEMANTICS.
DEAL_STAGES = [
    ("NEW", "New", 10, "process"),
    ("PREPARATION", "Offer", 20, "process"),
    ("EXECUTING", "In progress", 30, "process"),
    ("WON", "Deal won", 60, "success"),
    ("LOSE", "Deal lost", 70, "failure"),
]
SEMANTIC = {"process": "P", "success": "S", "failure": "F"}
REGISTER_DEDUPE_SECONDS = 30 * 60


class BitrixError(Exception):
    def __init__(self, status: int, error: str, description: str = "") -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.description = description


def _digits(phone: Any) -> str:
    return "".join(ch for ch in str(phone) if ch.isdigit())[-10:]


def _need(condition: bool, description: str, error: str = "ERROR_CORE", status: int = 400) -> None:
    if not condition:
        raise BitrixError(status, error, description)


class FakeBitrix24(FakeServer):
    """State: ``leads``, ``contacts``, ``companies``, ``activities``, ``calls`` (telephony)."""

    def __init__(
        self,
        *,
        user_id: int = 1,
        code: str = "w3bh00kc0de",
        scopes: frozenset[str] = frozenset({"crm", "telephony"}),
        telephony_via_webhook: bool = False,
        bucket_size: int = 50,
        drain_per_second: float = 2.0,
    ) -> None:
        super().__init__()
        self.user_id = user_id
        self.code = code
        self.scopes = scopes
        # The 2026 docs: telephony.externalCall.* work only in an app context (WRONG_AUTH_TYPE).
        self.telephony_via_webhook = telephony_via_webhook
        self.bucket_size = bucket_size
        self.drain_per_second = drain_per_second
        self.users = {1, 7, 8}
        self.source_ids = {"CALL", "WEB", "ADVERTISING", "CALLBACK", "WEBFORM", "OTHER"}
        self.denied_methods: set[str] = set()
        self.leads: dict[int, dict[str, Any]] = {}
        self.contacts: dict[int, dict[str, Any]] = {}
        self.companies: dict[int, dict[str, Any]] = {}
        self.activities: dict[int, dict[str, Any]] = {}
        self.calls: dict[str, dict[str, Any]] = {}
        self.lead_params: list[dict[str, Any]] = []
        self.calls_log: list[tuple[str, dict[str, Any]]] = []  # (method, params) of REST calls
        self._registrations: dict[tuple[Any, ...], tuple[str, float]] = {}
        self._ids = itertools.count(101)
        self._level = 0.0
        self._level_at = time.monotonic()
        # OAuth app
        self.client_id = "local.app.1"
        self.client_secret = "app-client-s3cret"
        self.access_token = "app-access-t0ken-1"
        self.refresh_token = "app-refresh-t0ken-1"
        self.expired_tokens: set[str] = set()
        self.refreshes = 0
        # CRM mode (crm.settings.mode.get): 1 classic, 2 without leads.
        self.crm_mode = 1
        self.deals: dict[int, dict[str, Any]] = {}
        self.traces: list[dict[str, Any]] = []
        # Sales Intelligence sources by their UTM_SOURCE: an entity whose UTM_SOURCE matches
        # one gets that source (and counts in Bitrix24's own ROI report).
        self.analytics_sources = {"yandex": 3, "google": 4}
        self.user_names = {1: ("Anna", "Admin"), 7: ("Ivan", "Petrov"), 8: ("Olga", "Smirnova")}
        self.clock = lambda: datetime.now(UTC)

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/rest/{self.user_id}/{self.code}/"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/rest/{user_id}/{code}/{method}", self._webhook)
        app.router.add_post("/rest/{method}", self._app)
        app.router.add_get("/oauth/token/", self._oauth)

    # seeding, for repeat-caller tests
    def add_contact(self, phone: str, name: str = "Known caller") -> int:
        entity_id = next(self._ids)
        self.contacts[entity_id] = {
            "ID": entity_id,
            "NAME": name,
            "PHONE": [{"VALUE": phone, "VALUE_TYPE": "WORK"}],
        }
        return entity_id

    def add_lead(self, phone: str, title: str = "Earlier lead") -> int:
        entity_id = next(self._ids)
        self.leads[entity_id] = {
            "ID": entity_id,
            "TITLE": title,
            "PHONE": [{"VALUE": phone, "VALUE_TYPE": "WORK"}],
        }
        return entity_id

    def add_deal(
        self,
        *,
        title: str = "Deal",
        stage: str = "NEW",
        amount: float = 0.0,
        contact_id: int | None = None,
        lead_id: int | None = None,
        assigned: int = 7,
        currency: str = "RUB",
        **fields: Any,
    ) -> int:
        """A deal made in the portal itself (not by us)."""
        deal_id = next(self._ids)
        now = self._now()
        self.deals[deal_id] = {
            "ID": deal_id,
            "TITLE": title,
            "CATEGORY_ID": "0",
            "STAGE_ID": stage,
            "STAGE_SEMANTIC_ID": self._semantic(stage),
            "OPPORTUNITY": f"{amount:.2f}",
            "CURRENCY_ID": currency,
            "CONTACT_ID": contact_id,
            "LEAD_ID": lead_id,
            "ASSIGNED_BY_ID": assigned,
            "DATE_CREATE": now,
            "DATE_MODIFY": now,
            "MOVED_TIME": now,
            "CLOSED": "N",
            **fields,
        }
        return deal_id

    def move_deal(self, deal_id: int, stage: str, *, amount: float | None = None) -> None:
        """A manager moves the deal (and perhaps changes its amount), as the portal's UI does."""
        deal = self.deals[deal_id]
        deal["STAGE_ID"] = stage
        deal["STAGE_SEMANTIC_ID"] = self._semantic(stage)
        deal["CLOSED"] = "Y" if deal["STAGE_SEMANTIC_ID"] != "P" else "N"
        if amount is not None:
            deal["OPPORTUNITY"] = f"{amount:.2f}"
        deal["DATE_MODIFY"] = deal["MOVED_TIME"] = self._now()

    def convert_lead(self, lead_id: int, *, amount: float = 0.0) -> int:
        """The lead becomes a contact and a deal (LEAD_ID set), as "Convert" does."""
        lead = self.leads[lead_id]
        lead["STATUS_ID"] = "CONVERTED"
        contact_id = self.add_contact(lead.get("PHONE", [{}])[0].get("VALUE", ""))
        utm = {k: lead.get(k) for k in lead if k.startswith("UTM_")}
        return self.add_deal(
            title=str(lead.get("TITLE", "")),
            amount=amount,
            contact_id=contact_id,
            lead_id=lead_id,
            **utm,
        )

    async def send_event(
        self, url: str, event: str, entity_id: int, *, token: str = "b24-app-t0ken"
    ) -> aiohttp.ClientResponse:
        """POST an event to a handler the way an outgoing webhook does: a form with
        event, data[FIELDS][ID], ts and auth[...] (on-crm-deal-update.md)."""
        form = {
            "event": event,
            "event_handler_id": "201",
            "data[FIELDS][ID]": str(entity_id),
            "ts": str(int(time.time())),
            "auth[domain]": "portal.bitrix24.ru",
            "auth[client_endpoint]": "https://portal.bitrix24.ru/rest/",
            "auth[server_endpoint]": "https://oauth.bitrix.info/rest/",
            "auth[member_id]": "a223c6b3710f85df22e9377d6c4f7553",
            "auth[application_token]": token,
        }
        async with aiohttp.ClientSession() as client:
            async with client.post(url, data=form) as resp:
                await resp.read()
                return resp

    def _now(self) -> str:
        # The portal's own clock and offset (Moscow), seconds precision.
        return self.clock().astimezone(MSK).replace(microsecond=0).isoformat()

    @staticmethod
    def _semantic(stage: str) -> str:
        return next((SEMANTIC[sem] for sid, _, _, sem in DEAL_STAGES if sid == stage), "P")

    def expire_access_token(self) -> None:
        self.expired_tokens.add(self.access_token)

    def methods(self) -> list[str]:
        return [method for method, _ in self.calls_log]

    def call_activities(self) -> list[dict[str, Any]]:
        return [a for a in self.activities.values() if a.get("TYPE_ID") == 2]

    # transport
    async def _webhook(self, request: web.Request) -> web.Response:
        if (
            request.match_info["user_id"] != str(self.user_id)
            or request.match_info["code"] != self.code
        ):
            return _error(BitrixError(401, "NO_AUTH_FOUND", "Wrong authorization data"))
        return await self._dispatch(request, via_app=False)

    async def _app(self, request: web.Request) -> web.Response:
        return await self._dispatch(request, via_app=True)

    async def _dispatch(self, request: web.Request, *, via_app: bool) -> web.Response:
        if self._over_limit():
            return _error(BitrixError(503, "QUERY_LIMIT_EXCEEDED", "Too many requests"))
        method = request.match_info["method"].lower().removesuffix(".json")
        try:
            if request.content_type != "application/json":
                raise BitrixError(400, "INVALID_REQUEST", "fake: this fake takes JSON bodies only")
            try:
                params = json.loads(await request.read())
            except ValueError:
                raise BitrixError(400, "INVALID_REQUEST", "Malformed JSON") from None
            _need(isinstance(params, dict), "body must be a JSON object", "INVALID_REQUEST")
            if via_app:
                token = params.pop("auth", None)
                if token in self.expired_tokens:
                    raise BitrixError(
                        401, "expired_token", "The access token provided has expired."
                    )
                if token != self.access_token:
                    raise BitrixError(401, "invalid_token", "The access token provided is invalid.")
            scope = method.split(".", 1)[0]
            if scope not in self.scopes:
                raise BitrixError(
                    403,
                    "insufficient_scope",
                    "The request requires higher privileges than provided.",
                )
            if method in self.denied_methods:
                raise BitrixError(400, "", "Access denied.")
            handler = _METHODS.get(method)
            if handler is None:
                raise BitrixError(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
            self.calls_log.append((method, params))
            result = handler(self, params, via_app)
        except BitrixError as err:
            return _error(err)
        now = time.time()
        timing = {"start": now, "finish": now, "duration": 0.01, "processing": 0.01}
        if isinstance(result, dict) and "total" in result and "result" in result:
            return web.json_response({**result, "time": timing})  # a list method's page
        return web.json_response({"result": result, "time": timing})

    def _over_limit(self) -> bool:
        now = time.monotonic()
        self._level = max(0.0, self._level - (now - self._level_at) * self.drain_per_second)
        self._level_at = now
        self._level += 1
        return self._level > self.bucket_size

    async def _oauth(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("grant_type") != "refresh_token":
            return web.json_response({"error": "invalid_request"}, status=400)
        if q.get("client_id") != self.client_id or q.get("client_secret") != self.client_secret:
            return web.json_response({"error": "invalid_client"}, status=401)
        if q.get("refresh_token") != self.refresh_token:
            return web.json_response({"error": "invalid_grant"}, status=400)
        self.refreshes += 1
        self.access_token = f"app-access-t0ken-{self.refreshes + 1}"
        self.refresh_token = f"app-refresh-t0ken-{self.refreshes + 1}"
        return web.json_response(
            {
                "access_token": self.access_token,
                "refresh_token": self.refresh_token,
                "expires_in": 3600,
            }
        )

    # CRM
    def _check_fields(self, params: dict[str, Any]) -> dict[str, Any]:
        """What crm.lead.add, crm.contact.add and crm.deal.add all check."""
        fields = params.get("fields")
        _need(isinstance(fields, dict), "fields must be an object", "INVALID_ARG_VALUE")
        assert isinstance(fields, dict)
        for name in (
            "TITLE",
            "NAME",
            "SOURCE_DESCRIPTION",
            "COMMENTS",
            "ORIGINATOR_ID",
            "ORIGIN_ID",
        ) + tuple(f"UTM_{k}" for k in ("SOURCE", "MEDIUM", "CAMPAIGN", "CONTENT", "TERM")):
            _need(
                isinstance(fields.get(name, ""), str),
                f"{name} must be a string",
                "INVALID_ARG_VALUE",
            )
        _check_multifield(fields.get("PHONE", []))
        if "SOURCE_ID" in fields:
            _need(
                fields["SOURCE_ID"] in self.source_ids,
                "fake: SOURCE_ID is not a SOURCE status",
                "INVALID_ARG_VALUE",
            )
        if "CONTACT_ID" in fields:
            _need(
                int(fields["CONTACT_ID"]) in self.contacts, "Contact not found", "INVALID_ARG_VALUE"
            )
        for name, value in fields.items():
            if name.startswith("UF_CRM_"):
                _need(isinstance(value, str), f"{name} must be a string", "INVALID_ARG_VALUE")
        extra = params.get("params", {})
        _need(isinstance(extra, dict), "params must be an object", "INVALID_ARG_VALUE")
        if "REGISTER_SONET_EVENT" in extra:
            _need(
                extra["REGISTER_SONET_EVENT"] in ("Y", "N"),
                "REGISTER_SONET_EVENT is Y or N",
                "INVALID_ARG_VALUE",
            )
        self.lead_params.append(extra)
        stamped = dict(fields)
        # Sales Intelligence: only a configured source's UTM_SOURCE earns the entity a source.
        stamped["TRACKING_SOURCE_ID"] = self.analytics_sources.get(fields.get("UTM_SOURCE", ""))
        return stamped

    def _lead_add(self, params: dict[str, Any], via_app: bool) -> int:
        fields = self._check_fields(params)
        lead_id = next(self._ids)
        self.leads[lead_id] = {"ID": lead_id, **fields}
        if self.crm_mode == 2:
            # A portal without leads converts every new lead at once (crm-settings-mode).
            self.leads[lead_id]["STATUS_ID"] = "CONVERTED"
        return lead_id

    def _contact_add(self, params: dict[str, Any], via_app: bool) -> int:
        fields = self._check_fields(params)
        contact_id = next(self._ids)
        self.contacts[contact_id] = {"ID": contact_id, **fields}
        return contact_id

    def _deal_add(self, params: dict[str, Any], via_app: bool) -> int:
        fields = self._check_fields(params)
        _need("CONTACT_ID" not in fields or fields["CONTACT_ID"] is not None, "CONTACT_ID")
        deal_id = next(self._ids)
        now = self._now()
        self.deals[deal_id] = {
            "ID": deal_id,
            "CATEGORY_ID": str(fields.pop("CATEGORY_ID", "0")),
            "STAGE_ID": "NEW",
            "STAGE_SEMANTIC_ID": "P",
            "OPPORTUNITY": "0.00",
            "CURRENCY_ID": "RUB",
            "DATE_CREATE": now,
            "DATE_MODIFY": now,
            "CLOSED": "N",
            **fields,
        }
        return deal_id

    def _deal_row(self, deal: dict[str, Any]) -> dict[str, Any]:
        # Bitrix24 sends ids and numbers as strings.
        return {
            k: (str(v) if isinstance(v, int) and not isinstance(v, bool) else v)
            for k, v in deal.items()
        }

    def _deal_get(self, params: dict[str, Any], via_app: bool) -> dict[str, Any]:
        deal_id = params.get("id", params.get("ID"))
        _need(str(deal_id).isdigit(), "ID is not defined or invalid", "")
        deal = self.deals.get(int(str(deal_id)))
        _need(deal is not None, "Not found", "")
        assert deal is not None
        return self._deal_row(deal)

    def _deal_list(self, params: dict[str, Any], via_app: bool) -> Any:
        rows = [self._deal_row(d) for d in self.deals.values()]
        return _page(_filtered(rows, params.get("filter", {})), params)

    def _contact_get(self, params: dict[str, Any], via_app: bool) -> dict[str, Any]:
        contact_id = params.get("id", params.get("ID"))
        contact = self.contacts.get(int(str(contact_id))) if str(contact_id).isdigit() else None
        _need(contact is not None, "Not found", "")
        assert contact is not None
        return self._deal_row(contact)

    def _contact_list(self, params: dict[str, Any], via_app: bool) -> list[dict[str, Any]]:
        return _list(self.contacts, params)

    def _mode(self, params: dict[str, Any], via_app: bool) -> int:
        return self.crm_mode

    def _trace_add(self, params: dict[str, Any], via_app: bool) -> int:
        raw = params.get("TRACE")
        _need(isinstance(raw, str) and bool(raw), "Parameter `TRACE` required.")
        try:
            trace = json.loads(str(raw))
        except ValueError:
            raise BitrixError(
                400, "ERROR_CORE", "Can not parse JSON in parameter `TRACE`."
            ) from None
        _need(isinstance(trace, dict), "Can not parse JSON in parameter `TRACE`.")
        for page in trace.get("PAGES", []):
            _need(
                isinstance(page, dict)
                and isinstance(page.get("URL"), str)
                and bool(ISO_WITH_OFFSET.match(str(page.get("DATE", "")))),
                "fake: PAGES items are {URL, DATE (ISO 8601 with offset)}",
            )
        entities = params.get("ENTITIES", [])
        _need(isinstance(entities, list), "Wrong TYPE in parameter `ENTITIES`.")
        tables = {"LEAD": self.leads, "CONTACT": self.contacts, "DEAL": self.deals,
                  "COMPANY": self.companies}  # fmt: skip
        for entity in entities:
            kind = entity.get("TYPE") if isinstance(entity, dict) else None
            _need(
                kind in TRACE_TYPES,
                "Wrong TYPE in parameter `ENTITIES`. Allowed types: COMPANY,CONTACT,DEAL,LEAD,QUOTE",
            )
            _need(
                isinstance(entity.get("ID"), int) and entity["ID"] in tables.get(kind, {}),
                "Wrong ID in parameter `ENTITIES`.",
            )
        trace_id = next(self._ids)
        self.traces.append({"ID": trace_id, "TRACE": trace, "ENTITIES": entities})
        return trace_id

    def _categories(self, params: dict[str, Any], via_app: bool) -> list[dict[str, Any]]:
        return []  # only the general pipeline, category 0

    def _statuses(self, params: dict[str, Any], via_app: bool) -> list[dict[str, Any]]:
        entity = params.get("filter", {}).get("ENTITY_ID")
        if entity != "DEAL_STAGE":
            return []
        return [
            {"ID": str(n), "ENTITY_ID": "DEAL_STAGE", "STATUS_ID": sid, "NAME": name,
             "SORT": str(sort), "CATEGORY_ID": "0", "EXTRA": {"SEMANTICS": sem}}
            for n, (sid, name, sort, sem) in enumerate(DEAL_STAGES, start=1)
        ]  # fmt: skip

    def _users(self, params: dict[str, Any], via_app: bool) -> list[dict[str, Any]]:
        wanted = params.get("ID")
        ids = [
            int(i) for i in (wanted if isinstance(wanted, list) else [wanted]) if str(i).isdigit()
        ]
        return [
            {"ID": str(i), "NAME": self.user_names[i][0], "LAST_NAME": self.user_names[i][1]}
            for i in ids
            if i in self.user_names
        ]

    def _lead_list(self, params: dict[str, Any], via_app: bool) -> list[dict[str, Any]]:
        return _list(self.leads, params)

    def _findbycomm(self, params: dict[str, Any], via_app: bool) -> Any:
        kind = params.get("type")
        _need(
            kind is not None,
            "Communication type is not defined",
            "Communication type is not defined",
        )
        _need(
            kind in ("PHONE", "EMAIL"),
            f"Communication type '{kind}' is not supported in current context",
            f"Communication type '{kind}' is not supported in current context",
        )
        values = params.get("values")
        _need(
            bool(values),
            "Communication values is not defined",
            "Communication values is not defined",
        )
        _need(
            isinstance(values, list) and len(values) <= 20,
            "values: at most 20",
            "INVALID_ARG_VALUE",
        )
        assert isinstance(values, list)
        wanted = {_digits(v) for v in values}
        entity_type = params.get("entity_type")
        found: dict[str, list[int]] = {}
        for name, table in (
            ("LEAD", self.leads),
            ("CONTACT", self.contacts),
            ("COMPANY", self.companies),
        ):
            if entity_type and entity_type != name:
                continue
            ids = [
                i
                for i, e in table.items()
                if wanted & {_digits(p.get("VALUE")) for p in e.get("PHONE", [])}
            ]
            if ids:
                found[name] = ids
        # Bitrix answers an empty array, not an object, when nothing matches.
        return found or []

    def _activity_add(self, params: dict[str, Any], via_app: bool) -> int:
        fields = params.get("fields")
        _need(isinstance(fields, dict), "fields must be an object", "INVALID_ARG_VALUE")
        assert isinstance(fields, dict)
        owner_type: int = fields.get("OWNER_TYPE_ID", 0)
        _need(owner_type in OWNER_TYPES, "OWNER_TYPE_ID is not defined or invalid", "ERROR_CORE")
        table = {1: self.leads, 3: self.contacts, 4: self.companies}[owner_type]
        _need(fields.get("OWNER_ID") in table, "OWNER_ID is not defined or invalid", "ERROR_CORE")
        _need(fields.get("TYPE_ID") in (1, 2, 3, 4, 6), "TYPE_ID is invalid")
        comms = fields.get("COMMUNICATIONS")
        _need(
            isinstance(comms, list)
            and bool(comms)
            and all(isinstance(c, dict) and c.get("VALUE") for c in comms),
            "COMMUNICATIONS is not defined or invalid",
        )
        _need(fields.get("DIRECTION") in (1, 2), "DIRECTION is invalid")
        activity_id = next(self._ids)
        self.activities[activity_id] = {"ID": activity_id, **fields}
        return activity_id

    def _activity_list(self, params: dict[str, Any], via_app: bool) -> list[dict[str, Any]]:
        return _list(self.activities, params)

    # telephony
    def _telephony_context(self, via_app: bool) -> None:
        if not via_app and not self.telephony_via_webhook:
            raise BitrixError(
                403, "WRONG_AUTH_TYPE", "Current authorization type is denied for this method"
            )

    def _user(self, params: dict[str, Any]) -> Any:
        user = params.get("USER_ID") or params.get("USER_PHONE_INNER")
        _need(user is not None, "USER_ID or USER_PHONE_INNER should be set")
        if "USER_ID" in params:
            _need(params["USER_ID"] in self.users, "User is not found or is not active")
        return user

    def _register(self, params: dict[str, Any], via_app: bool) -> dict[str, Any]:
        self._telephony_context(via_app)
        user = self._user(params)
        _need(params.get("TYPE") in (1, 2, 3, 4, 5), "Unknown TYPE")
        phone = params.get("PHONE_NUMBER")
        _need(
            isinstance(phone, str) and len(_digits(phone)) >= 5, "Unsupported phone number format"
        )
        start = params.get("CALL_START_DATE")
        if start is not None:
            _need(
                isinstance(start, str) and bool(ISO_WITH_OFFSET.match(start)),
                "CALL_START_DATE should be in the ISO-8601 format",
            )
        for flag in ("SHOW", "CRM_CREATE", "ADD_TO_CHAT"):
            _need(params.get(flag, 0) in (0, 1), f"{flag} is 0 or 1")
        entity_type, entity_id = params.get("CRM_ENTITY_TYPE"), params.get("CRM_ENTITY_ID")
        if entity_type is not None:
            table = {"LEAD": self.leads, "CONTACT": self.contacts, "COMPANY": self.companies}.get(
                entity_type
            )
            _need(table is not None and entity_id in table, "CRM entity not found")
        key = (
            phone,
            params.get("TYPE"),
            user,
            params.get("LINE_NUMBER"),
            params.get("EXTERNAL_CALL_ID"),
        )
        now = time.monotonic()
        seen = self._registrations.get(key)
        if seen is not None and now - seen[1] < REGISTER_DEDUPE_SECONDS:
            call_id = seen[0]
        else:
            call_id = f"externalCall.{next(self._ids):032x}.{int(time.time())}"
            self._registrations[key] = (call_id, now)
            self.calls[call_id] = {
                "register": params,
                "finished": False,
                "finish": None,
                "records": [],
            }
        return {
            "CALL_ID": call_id,
            "CRM_CREATED_LEAD": None,
            "CRM_CREATED_ENTITIES": [],
            "CRM_ENTITY_TYPE": entity_type,
            "CRM_ENTITY_ID": entity_id,
        }

    def _finish(self, params: dict[str, Any], via_app: bool) -> dict[str, Any]:
        self._telephony_context(via_app)
        call_id = params.get("CALL_ID")
        _need(isinstance(call_id, str), "CALL_ID must be a string", "INVALID_ARGUMENT")
        call = self.calls.get(str(call_id))
        # A finished call leaves the open-calls table, so finishing it again does not find it.
        _need(
            call is not None and not call["finished"],
            "Call is not found (call should be registered prior to finishing)",
        )
        assert call is not None
        self._user(params)
        _need(isinstance(params.get("DURATION", 0), int), "DURATION must be an integer")
        if "STATUS_CODE" in params:
            _need(params["STATUS_CODE"] in STATUS_CODES, "Unknown STATUS_CODE")
        call["finished"] = True
        call["finish"] = params
        register = call["register"]
        activity_id = None
        if register.get("CRM_ENTITY_TYPE"):
            owner_type = {v: k for k, v in OWNER_TYPES.items()}[register["CRM_ENTITY_TYPE"]]
            activity_id = next(self._ids)
            self.activities[activity_id] = {
                "ID": activity_id,
                "TYPE_ID": 2,
                "OWNER_TYPE_ID": owner_type,
                "OWNER_ID": register["CRM_ENTITY_ID"],
                "ORIGIN_ID": register.get("EXTERNAL_CALL_ID"),
            }
        return {
            "CALL_ID": call_id,
            "EXTERNAL_CALL_ID": register.get("EXTERNAL_CALL_ID"),
            "CALL_DURATION": params.get("DURATION", 0),
            "CALL_STATUS": 1 if params.get("STATUS_CODE", "200") == "200" else 0,
            "CRM_ACTIVITY_ID": activity_id,
            "CRM_ENTITY_TYPE": register.get("CRM_ENTITY_TYPE"),
            "CRM_ENTITY_ID": register.get("CRM_ENTITY_ID"),
        }

    def _attach_record(self, params: dict[str, Any], via_app: bool) -> dict[str, Any]:
        call = self.calls.get(str(params.get("CALL_ID")))
        _need(
            call is not None and call["finished"],
            "Call is not found in the statistic table. It looks like it is not finished yet.",
        )
        assert call is not None
        _need(
            bool(params.get("RECORD_URL") or params.get("FILENAME")),
            "Required parameters are not set. Request should contain either URL or FILENAME parameter",
        )
        call["records"].append(params.get("RECORD_URL") or params.get("FILENAME"))
        return {"FILE_ID": next(self._ids)}


def _check_multifield(value: Any) -> None:
    _need(
        isinstance(value, list), "PHONE must be a list of {VALUE, VALUE_TYPE}", "INVALID_ARG_VALUE"
    )
    for item in value:
        _need(
            isinstance(item, dict)
            and isinstance(item.get("VALUE"), str)
            and item.get("VALUE_TYPE") in PHONE_VALUE_TYPES,
            "PHONE items are {VALUE: string, VALUE_TYPE: WORK|MOBILE|...}",
            "INVALID_ARG_VALUE",
        )


def _list(table: dict[int, dict[str, Any]], params: dict[str, Any]) -> list[dict[str, Any]]:
    flt = params.get("filter", {})
    _need(isinstance(flt, dict), "filter must be an object", "INVALID_ARG_VALUE")
    rows = [row for row in table.values() if all(str(row.get(k)) == str(v) for k, v in flt.items())]
    select = params.get("select") or ["ID"]
    # Bitrix returns ids as strings in list methods.
    return [{key: str(row[key]) if key == "ID" else row.get(key) for key in select} for row in rows]


def _filtered(rows: list[dict[str, Any]], flt: Any) -> list[dict[str, Any]]:
    """crm.*.list filters: a key with no prefix is equality, >= a lower bound, @ IN."""
    _need(isinstance(flt, dict), "filter must be an object", "INVALID_ARG_VALUE")
    out = []
    for row in rows:
        keep = True
        for key, want in flt.items():
            if key.startswith(">="):
                value, bound = row.get(key[2:]), want
                keep = keep and value is not None and _instant(value) >= _instant(bound)
            elif key.startswith("@"):
                keep = keep and str(row.get(key[1:])) in {str(w) for w in want}
            else:
                keep = keep and str(row.get(key)) == str(want)
        if keep:
            out.append(row)
    return out


def _instant(value: Any) -> datetime:
    return datetime.fromisoformat(str(value)).astimezone(UTC)


def _page(rows: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    """A list method's page: 50 rows from ``start``, with ``next`` and ``total``."""
    order = params.get("order") or {}
    for key in reversed(list(order)):
        rows.sort(key=lambda r, k=key: (_instant(r[k]) if k.startswith("DATE") else int(r[k])),
                  reverse=str(order[key]).upper() == "DESC")  # fmt: skip
    start = params.get("start", 0)
    _need(isinstance(start, int) and start >= 0, "start must be a number", "INVALID_ARG_VALUE")
    chunk = rows[start : start + PAGE]
    answer: dict[str, Any] = {"result": chunk, "total": len(rows)}
    if start + PAGE < len(rows):
        answer["next"] = start + PAGE
    return answer


def _error(err: BitrixError) -> web.Response:
    return web.json_response(
        {"error": err.error, "error_description": err.description}, status=err.status
    )


_METHODS = {
    "crm.lead.add": FakeBitrix24._lead_add,
    "crm.lead.list": FakeBitrix24._lead_list,
    "crm.contact.add": FakeBitrix24._contact_add,
    "crm.contact.get": FakeBitrix24._contact_get,
    "crm.contact.list": FakeBitrix24._contact_list,
    "crm.deal.add": FakeBitrix24._deal_add,
    "crm.deal.get": FakeBitrix24._deal_get,
    "crm.deal.list": FakeBitrix24._deal_list,
    "crm.settings.mode.get": FakeBitrix24._mode,
    "crm.tracking.trace.add": FakeBitrix24._trace_add,
    "crm.dealcategory.list": FakeBitrix24._categories,
    "crm.status.list": FakeBitrix24._statuses,
    "user.get": FakeBitrix24._users,
    "crm.duplicate.findbycomm": FakeBitrix24._findbycomm,
    "crm.activity.add": FakeBitrix24._activity_add,
    "crm.activity.list": FakeBitrix24._activity_list,
    "telephony.externalcall.register": FakeBitrix24._register,
    "telephony.externalcall.finish": FakeBitrix24._finish,
    "telephony.externalcall.attachrecord": FakeBitrix24._attach_record,
}
