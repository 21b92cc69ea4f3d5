"""An amoCRM account behind API v4, per integrations.md section 2: leads (its deals) in a
pipeline, OAuth 2 with single-use refresh tokens, and its webhook posts (docs/integrations.md)."""

from __future__ import annotations

import itertools
import json
import time
from collections import deque
from typing import Any, Literal

import aiohttp
from aiohttp import web

from .server import FakeServer, Handler

PHONE_ENUMS = {"WORK", "WORKDD", "MOB", "FAX", "HOME", "OTHER"}
PIPELINE = 3166396
# status id, name, sort: every pipeline ends with 142 (won) and 143 (lost).
STATUSES = [(1001, "First contact", 10), (1002, "Negotiation", 20), (1003, "Invoice", 30),
            (142, "Successfully realized", 10000), (143, "Closed - lost", 11000)]  # fmt: skip
USERS = {501: "Ivan Operator", 502: "Olga Manager", 503: "Robot"}
DEFAULT_TRACKING_CODES = (
    "UTM_SOURCE",
    "UTM_MEDIUM",
    "UTM_CAMPAIGN",
    "UTM_CONTENT",
    "UTM_TERM",
    "UTM_REFERRER",
    "GCLID",
    "YCLID",
    "_YM_UID",
    "ROISTAT",
    "GCLIENTID",
)


def _digits(phone: Any) -> str:
    return "".join(ch for ch in str(phone) if ch.isdigit())


def _problem(
    status: int, title: str, detail: str, validation: list[dict[str, Any]] | None = None
) -> web.Response:
    body: dict[str, Any] = {
        "title": title,
        "type": f"https://httpstatus.es/{status}",
        "status": status,
        "detail": detail,
    }
    if validation is not None:
        body["validation-errors"] = validation
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/problem+json"
    )


def _hal(body: Any) -> web.Response:
    return web.Response(text=json.dumps(body), content_type="application/hal+json")


class ValidationFailed(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("validation failed")
        self.errors = errors


class FakeAmoCrm(FakeServer):
    """State: ``leads``, ``contacts``, ``calls``, ``unsorted``; ``max_per_second`` seen."""

    def __init__(
        self,
        *,
        token: str = "amo-l0ng-lived-t0ken",
        tracking_codes: tuple[str, ...] = DEFAULT_TRACKING_CODES,
        requests_per_second: int = 7,
        custom_fields_page_size: int = 250,
    ) -> None:
        super().__init__()
        self.token = token
        self.tracking_codes = list(tracking_codes)
        self.requests_per_second = requests_per_second
        self.custom_fields_page_size = custom_fields_page_size
        # How /calls reports a call it cannot attach: unverified, so both shapes are modelled.
        self.unmatched_calls: Literal["errors", "omit"] = "errors"
        self.attach_calls = True
        self.leads: dict[int, dict[str, Any]] = {}
        self.contacts: dict[int, dict[str, Any]] = {}
        self.calls: list[dict[str, Any]] = []
        self.unsorted: list[dict[str, Any]] = []
        self.max_per_second = 0
        self.rejected_for_rate = 0
        self._recent: deque[float] = deque()
        self._ids = itertools.count(9_774_766)
        self.users = dict(USERS)
        # OAuth 2 (developers.kommo.com/reference/get-token): one live access token; a refresh
        # token works once, and every refresh hands out a new pair.
        self.client_id = "amo-client-1"
        self.client_secret = "amo-client-s3cret"
        self.redirect_uri = "https://ct.example/oauth/amocrm"
        self.refresh_token = "amo-refresh-1"
        self.refreshes = 0
        self.spent_refresh_tokens: set[str] = set()
        self.clock = time.time

    def routes(self, app: web.Application) -> None:
        app.middlewares.append(self._guard)
        app.router.add_get("/api/v4/leads/custom_fields", self._custom_fields)
        app.router.add_get("/api/v4/contacts", self._contacts)
        app.router.add_post("/api/v4/leads/complex", self._complex)
        app.router.add_post("/api/v4/leads/unsorted/sip", self._unsorted_sip)
        app.router.add_post("/api/v4/calls", self._calls)
        app.router.add_get("/api/v4/leads", self._lead_list)
        app.router.add_get("/api/v4/leads/pipelines", self._pipelines)
        app.router.add_get(r"/api/v4/leads/{id:\d+}", self._lead_get)
        app.router.add_get(r"/api/v4/contacts/{id:\d+}", self._contact_get)
        app.router.add_get(r"/api/v4/users/{id:\d+}", self._user_get)
        app.router.add_post("/oauth2/access_token", self._oauth)

    # -- the account's own life: leads made or moved in the CRM, webhooks, tokens -----------

    def add_lead(
        self,
        *,
        contact_phone: str | None = None,
        price: int = 0,
        status_id: int = 1001,
        responsible: int = 502,
        tracking: dict[str, str] | None = None,
    ) -> int:
        """A lead made in the account itself, with a contact of that phone if one is given."""
        contact_id = None
        if contact_phone is not None:
            contact_id, _ = self.add_contact(contact_phone, with_lead=False)
        now = int(self.clock())
        lead = {
            "name": "Lead made in amoCRM",
            "price": price,
            "status_id": status_id,
            "pipeline_id": PIPELINE,
            "responsible_user_id": responsible,
            "created_at": now,
            "custom_fields_values": [
                {"field_code": code, "values": [{"value": value}]}
                for code, value in (tracking or {}).items()
            ],
        }
        return self._store_lead(lead, contact_id)

    def move_lead(self, lead_id: int, status_id: int, *, price: int | None = None) -> None:
        lead = self.leads[lead_id]
        lead["status_id"] = status_id
        if price is not None:
            lead["price"] = price
        lead["updated_at"] = max(int(self.clock()), int(lead.get("updated_at", 0)) + 1)
        if status_id in (142, 143):
            lead["closed_at"] = lead["updated_at"]

    def webhook_form(self, action: str, lead_ids: list[int]) -> dict[str, str]:
        """A webhook post as amoCRM sends it: PHP-style form fields, one block per lead."""
        form = {"account[subdomain]": "example", "account[id]": "29000000"}
        for n, lead_id in enumerate(lead_ids):
            lead = self.leads[lead_id]
            base = f"leads[{action}][{n}]"
            form[f"{base}[id]"] = str(lead_id)
            form[f"{base}[status_id]"] = str(lead.get("status_id", ""))
            form[f"{base}[pipeline_id]"] = str(lead.get("pipeline_id", ""))
            form[f"{base}[price]"] = str(lead.get("price", ""))
            if action == "status":
                form[f"{base}[old_status_id]"] = "1001"
        return form

    async def send_webhook(self, url: str, action: str, lead_ids: list[int]) -> int:
        async with aiohttp.ClientSession() as client:
            async with client.post(url, data=self.webhook_form(action, lead_ids)) as resp:
                await resp.read()
                return resp.status

    def expire_access_token(self) -> None:
        """The access token lapses (they live a day): calls with it now get 401."""
        self.token = f"amo-lapsed-{self.refreshes}"

    async def _oauth(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        wrong = [
            name
            for name, want in (
                ("client_id", self.client_id),
                ("client_secret", self.client_secret),
                ("redirect_uri", self.redirect_uri),
                ("grant_type", "refresh_token"),
            )
            if body.get(name) != want
        ]
        if wrong:
            return _problem(400, "Bad Request", f"invalid {', '.join(wrong)}")
        given = body.get("refresh_token")
        if given != self.refresh_token or given in self.spent_refresh_tokens:
            # A refresh token works once: a second use of the old one is refused.
            return _problem(400, "Bad Request", "Token has been revoked")
        self.spent_refresh_tokens.add(given)
        self.refreshes += 1
        self.token = f"amo-access-{self.refreshes + 1}"
        self.refresh_token = f"amo-refresh-{self.refreshes + 1}"
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": 86400,
                "server_time": int(self.clock()),
                "access_token": self.token,
                "refresh_token": self.refresh_token,
            }
        )

    def _lead_view(self, lead: dict[str, Any], with_contacts: bool) -> dict[str, Any]:
        view = {k: v for k, v in lead.items() if k not in ("contact_id", "_embedded", "request_id")}
        view.setdefault("price", 0)
        view.setdefault("status_id", 1001)
        view.setdefault("pipeline_id", PIPELINE)
        view.setdefault("updated_at", view.get("created_at", 0))
        view.setdefault("closed_at", None)
        if with_contacts:
            contacts = (
                [{"id": lead["contact_id"], "is_main": True}] if lead.get("contact_id") else []
            )
            view["_embedded"] = {"contacts": contacts}
        return view

    async def _lead_get(self, request: web.Request) -> web.StreamResponse:
        lead = self.leads.get(int(request.match_info["id"]))
        if lead is None:
            return _problem(404, "Not Found", "Lead not found")
        return _hal(self._lead_view(lead, "contacts" in request.query.get("with", "")))

    async def _lead_list(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        since = int(q.get("filter[updated_at][from]", "0"))
        limit = min(int(q.get("limit", "50")), 250)
        page = int(q.get("page", "1"))
        pipelines = {v for k, v in q.items() if k.startswith("filter[pipeline_id]")}
        views = [
            self._lead_view(lead, "contacts" in q.get("with", "")) for lead in self.leads.values()
        ]
        views = [
            v
            for v in views
            if v["updated_at"] >= since and (not pipelines or str(v["pipeline_id"]) in pipelines)
        ]
        if q.get("order[updated_at]") == "asc":
            views.sort(key=lambda v: (v["updated_at"], v["id"]))
        chunk = views[(page - 1) * limit : page * limit]
        if not chunk:
            return web.Response(status=204)
        links: dict[str, Any] = {"self": {"href": str(request.url)}}
        if page * limit < len(views):
            links["next"] = {"href": str(request.url.update_query(page=str(page + 1)))}
        return _hal({"_page": page, "_links": links, "_embedded": {"leads": chunk}})

    async def _contact_get(self, request: web.Request) -> web.StreamResponse:
        contact = self.contacts.get(int(request.match_info["id"]))
        if contact is None:
            return _problem(404, "Not Found", "Contact not found")
        return _hal({k: v for k, v in contact.items() if k != "lead_ids"})

    async def _pipelines(self, request: web.Request) -> web.StreamResponse:
        statuses = [
            {"id": sid, "name": name, "sort": sort, "pipeline_id": PIPELINE, "type": 0}
            for sid, name, sort in STATUSES
        ]
        pipeline = {"id": PIPELINE, "name": "Sales", "sort": 1, "is_main": True,
                    "_embedded": {"statuses": statuses}}  # fmt: skip
        return _hal({"_total_items": 1, "_embedded": {"pipelines": [pipeline]}})

    async def _user_get(self, request: web.Request) -> web.StreamResponse:
        user_id = int(request.match_info["id"])
        if user_id not in self.users:
            return _problem(404, "Not Found", "User not found")
        return _hal({"id": user_id, "name": self.users[user_id]})

    def add_contact(self, phone: str, *, with_lead: bool = True) -> tuple[int, int | None]:
        contact_id = next(self._ids)
        self.contacts[contact_id] = {
            "id": contact_id,
            "name": "Known caller",
            "custom_fields_values": [
                {"field_code": "PHONE", "values": [{"value": phone, "enum_code": "WORK"}]}
            ],
            "lead_ids": [],
        }
        lead_id = None
        if with_lead:
            lead_id = next(self._ids)
            self.leads[lead_id] = {"id": lead_id, "name": "Earlier deal", "contact_id": contact_id}
            self.contacts[contact_id]["lead_ids"].append(lead_id)
        return contact_id, lead_id

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        now = time.monotonic()
        self._recent.append(now)
        while self._recent and self._recent[0] <= now - 1.0:
            self._recent.popleft()
        self.max_per_second = max(self.max_per_second, len(self._recent))
        if len(self._recent) > self.requests_per_second:
            self.rejected_for_rate += 1
            return _problem(429, "Too Many Requests", "Too many requests")
        if (
            request.path != "/oauth2/access_token"
            and request.headers.get("Authorization") != f"Bearer {self.token}"
        ):
            return _problem(401, "Unauthorized", "Authorization required")
        if request.method == "POST" and request.content_type != "application/json":
            return _problem(415, "Unsupported Media Type", "JSON expected")
        try:
            return await handler(request)
        except ValidationFailed as err:
            return _problem(400, "Bad Request", "Request validation failed", err.errors)

    async def _custom_fields(self, request: web.Request) -> web.StreamResponse:
        fields = [{"id": 1, "name": "Budget note", "type": "text", "code": None}] + [
            {"id": 100 + i, "name": code, "type": "tracking_data", "code": code}
            for i, code in enumerate(self.tracking_codes)
        ]
        limit = min(int(request.query.get("limit", "50")), 250, self.custom_fields_page_size)
        page = int(request.query.get("page", "1"))
        chunk = fields[(page - 1) * limit : page * limit]
        if not chunk:
            return web.Response(status=204)
        links: dict[str, Any] = {"self": {"href": str(request.url)}}
        if page * limit < len(fields):
            links["next"] = {"href": str(request.url.update_query(page=str(page + 1)))}
        return _hal({"_page": page, "_links": links, "_embedded": {"custom_fields": chunk}})

    async def _contacts(self, request: web.Request) -> web.StreamResponse:
        query = request.query.get("query", "")
        q_digits = _digits(query)
        found = []
        for contact in self.contacts.values():
            phones = [
                _digits(v.get("value"))
                for f in contact["custom_fields_values"]
                for v in f["values"]
            ]
            if (q_digits and any(q_digits in p for p in phones)) or (
                query and query in contact["name"]
            ):
                item = {k: v for k, v in contact.items() if k != "lead_ids"}
                if "leads" in request.query.get("with", "").split(","):
                    item["_embedded"] = {"leads": [{"id": i} for i in contact["lead_ids"]]}
                found.append(item)
        if not found:
            # Lists answer 204 with an empty body when nothing matches.
            return web.Response(status=204)
        return _hal({"_page": 1, "_embedded": {"contacts": found}})

    async def _complex(self, request: web.Request) -> web.StreamResponse:
        leads = await request.json()
        if not isinstance(leads, list) or not 1 <= len(leads) <= 50:
            raise ValidationFailed(
                [
                    {
                        "request_id": "0",
                        "errors": [
                            {"code": "InvalidType", "path": "", "detail": "1..50 leads expected"}
                        ],
                    }
                ]
            )
        errors = []
        for i, lead in enumerate(leads):
            problems = self._check_lead(lead)
            contacts = lead.get("_embedded", {}).get("contacts", [])
            if len(contacts) > 1:
                problems.append(
                    {"code": "TooMany", "path": "_embedded.contacts", "detail": "at most 1 contact"}
                )
            for contact in contacts:
                problems += self._check_contact(contact)
            if problems:
                errors.append({"request_id": str(i), "errors": problems})
        if errors:
            raise ValidationFailed(errors)
        reply = []
        for i, lead in enumerate(leads):
            contact_id = None
            for contact in lead.get("_embedded", {}).get("contacts", []):
                contact_id = self._store_contact(contact)
            lead_id = self._store_lead(lead, contact_id)
            reply.append(
                {
                    "id": lead_id,
                    "contact_id": contact_id,
                    "company_id": None,
                    "request_id": [str(lead.get("request_id", i))],
                    "merged": False,
                }
            )
        return web.json_response(reply)

    async def _unsorted_sip(self, request: web.Request) -> web.StreamResponse:
        items = await request.json()
        if not isinstance(items, list) or not items:
            raise ValidationFailed(
                [
                    {
                        "request_id": "0",
                        "errors": [{"code": "InvalidType", "path": "", "detail": "array expected"}],
                    }
                ]
            )
        errors = []
        for i, item in enumerate(items):
            problems = []
            for name in ("source_name", "source_uid"):
                if not isinstance(item.get(name), str) or not item.get(name):
                    problems.append(
                        {
                            "code": "NotBlank",
                            "path": name,
                            "detail": "This value should not be blank.",
                        }
                    )
            meta = item.get("metadata")
            if not isinstance(meta, dict):
                problems.append(
                    {
                        "code": "NotBlank",
                        "path": "metadata",
                        "detail": "This value should not be blank.",
                    }
                )
                meta = {}
            for name, kind in (
                ("uniq", str),
                ("from", str),
                ("phone", str),
                ("service_code", str),
                ("called_at", int),
                ("duration", int),
            ):
                if not isinstance(meta.get(name), kind):
                    problems.append(
                        {
                            "code": "InvalidType",
                            "path": f"metadata.{name}",
                            "detail": f"{kind.__name__} expected",
                        }
                    )
            if any(u["metadata"].get("uniq") == meta.get("uniq") for u in self.unsorted):
                # "There can't be 2 identical entities" in Incoming leads.
                problems.append(
                    {
                        "code": "Duplicate",
                        "path": "metadata.uniq",
                        "detail": "Incoming lead already exists",
                    }
                )
            for lead in item.get("_embedded", {}).get("leads", []):
                problems += self._check_lead(lead)
            for contact in item.get("_embedded", {}).get("contacts", []):
                problems += self._check_contact(contact)
            if problems:
                errors.append({"request_id": str(i), "errors": problems})
        if errors:
            raise ValidationFailed(errors)
        created = []
        for i, item in enumerate(items):
            contact_id = None
            for contact in item.get("_embedded", {}).get("contacts", []):
                contact_id = self._store_contact(contact)
            lead_ids = [
                self._store_lead(lead, contact_id)
                for lead in item.get("_embedded", {}).get("leads", [])
            ]
            uid = f"unsorted-{len(self.unsorted) + 1:04d}"
            self.unsorted.append({**item, "uid": uid})
            created.append(
                {
                    "uid": uid,
                    "request_id": str(item.get("request_id", i)),
                    "_embedded": {
                        "leads": [{"id": i} for i in lead_ids],
                        "contacts": [{"id": contact_id}] if contact_id else [],
                    },
                }
            )
        return _hal({"_total_items": len(created), "_embedded": {"unsorted": created}})

    async def _calls(self, request: web.Request) -> web.StreamResponse:
        items = await request.json()
        if not isinstance(items, list) or not items:
            raise ValidationFailed(
                [
                    {
                        "request_id": "0",
                        "errors": [{"code": "InvalidType", "path": "", "detail": "array expected"}],
                    }
                ]
            )
        errors = []
        for i, item in enumerate(items):
            problems = []
            if item.get("direction") not in ("inbound", "outbound"):
                problems.append(
                    {"code": "InvalidChoice", "path": "direction", "detail": "inbound or outbound"}
                )
            for name, kind in (("duration", int), ("source", str), ("phone", str)):
                if not isinstance(item.get(name), kind) or isinstance(item.get(name), bool):
                    problems.append(
                        {"code": "NotBlank", "path": name, "detail": f"required {kind.__name__}"}
                    )
            if "call_status" in item and item["call_status"] not in range(1, 8):
                problems.append({"code": "InvalidChoice", "path": "call_status", "detail": "1..7"})
            for name in ("uniq", "link", "call_result", "request_id"):
                if name in item and not isinstance(item[name], str):
                    problems.append(
                        {"code": "InvalidType", "path": name, "detail": "string expected"}
                    )
            if problems:
                errors.append({"request_id": str(i), "errors": problems})
        if errors:
            raise ValidationFailed(errors)
        attached, failed = [], []
        for i, item in enumerate(items):
            request_id = str(item.get("request_id", i))
            # Matched on the last 10 digits; no contact with that phone means the call is dropped.
            wanted = _digits(item["phone"])[-10:]
            contact = next(
                (c for c in self.contacts.values()
                 if any(_digits(v.get("value"))[-10:] == wanted for f in c["custom_fields_values"] for v in f["values"])),
                None,
            )  # fmt: skip
            if contact is None or not self.attach_calls:
                failed.append({"request_id": request_id, "detail": "Entity not found"})
                continue
            if len(contact["lead_ids"]) == 1:
                entity_type, entity_id = "lead", contact["lead_ids"][0]
            else:
                entity_type, entity_id = "contact", contact["id"]
            call_id = next(self._ids)
            self.calls.append(
                {**item, "id": call_id, "entity_type": entity_type, "entity_id": entity_id}
            )
            attached.append(
                {
                    "id": call_id,
                    "entity_id": entity_id,
                    "entity_type": entity_type,
                    "request_id": request_id,
                }
            )
        embedded: dict[str, Any] = {"calls": attached}
        if failed and self.unmatched_calls == "errors":
            embedded["errors"] = failed
        return _hal({"_total_items": len(attached), "_embedded": embedded})

    def _check_lead(self, lead: Any) -> list[dict[str, Any]]:
        if not isinstance(lead, dict):
            return [{"code": "InvalidType", "path": "", "detail": "object expected"}]
        problems = []
        if "name" in lead and not isinstance(lead["name"], str):
            problems.append({"code": "InvalidType", "path": "name", "detail": "string expected"})
        for name in ("price", "pipeline_id", "responsible_user_id", "created_at"):
            if name in lead and (not isinstance(lead[name], int) or isinstance(lead[name], bool)):
                problems.append({"code": "InvalidType", "path": name, "detail": "int expected"})
        fields = lead.get("custom_fields_values", [])
        if len(fields) > 40:
            problems.append(
                {"code": "TooMany", "path": "custom_fields_values", "detail": "at most 40"}
            )
        for j, field in enumerate(fields):
            if field.get("field_code") not in self.tracking_codes:
                problems.append(
                    {"code": "NotSupportedChoice", "path": f"custom_fields_values.{j}.field_code",
                     "detail": "The value you selected is not a valid choice."}
                )  # fmt: skip
            values = field.get("values")
            if not isinstance(values, list) or not all(
                isinstance(v, dict) and isinstance(v.get("value"), str) for v in values
            ):
                problems.append(
                    {
                        "code": "InvalidType",
                        "path": f"custom_fields_values.{j}.values",
                        "detail": "[{value: string}]",
                    }
                )
        for tag in lead.get("_embedded", {}).get("tags", []):
            if not isinstance(tag, dict) or not (
                isinstance(tag.get("name"), str) or isinstance(tag.get("id"), int)
            ):
                problems.append(
                    {"code": "InvalidType", "path": "_embedded.tags", "detail": "{name} or {id}"}
                )
        return problems

    def _check_contact(self, contact: Any) -> list[dict[str, Any]]:
        problems = []
        for j, field in enumerate(contact.get("custom_fields_values", [])):
            if field.get("field_code") != "PHONE":
                problems.append(
                    {
                        "code": "NotSupportedChoice",
                        "path": f"contacts.custom_fields_values.{j}",
                        "detail": "unknown field",
                    }
                )
                continue
            for value in field.get("values", []):
                if (
                    not isinstance(value.get("value"), str)
                    or value.get("enum_code", "WORK") not in PHONE_ENUMS
                ):
                    problems.append(
                        {
                            "code": "InvalidType",
                            "path": f"contacts.custom_fields_values.{j}.values",
                            "detail": "{value, enum_code}",
                        }
                    )
        return problems

    def _store_contact(self, contact: dict[str, Any]) -> int:
        contact_id = next(self._ids)
        self.contacts[contact_id] = {
            "id": contact_id,
            "name": contact.get("first_name") or contact.get("name") or "",
            "custom_fields_values": contact.get("custom_fields_values", []),
            "lead_ids": [],
        }
        return contact_id

    def _store_lead(self, lead: dict[str, Any], contact_id: int | None) -> int:
        lead_id = next(self._ids)
        now = int(self.clock())
        self.leads[lead_id] = {
            "status_id": 1001,
            "pipeline_id": PIPELINE,
            "created_at": now,
            "updated_at": now,
            **lead,
            "id": lead_id,
            "contact_id": contact_id,
        }
        if contact_id is not None:
            self.contacts[contact_id]["lead_ids"].append(lead_id)
        return lead_id
