"""An amoCRM account behind API v4, per integrations.md section 2."""

from __future__ import annotations

import itertools
import json
import time
from collections import deque
from typing import Any, Literal

from aiohttp import web

from .server import FakeServer, Handler

PHONE_ENUMS = {"WORK", "WORKDD", "MOB", "FAX", "HOME", "OTHER"}
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

    def routes(self, app: web.Application) -> None:
        app.middlewares.append(self._guard)
        app.router.add_get("/api/v4/leads/custom_fields", self._custom_fields)
        app.router.add_get("/api/v4/contacts", self._contacts)
        app.router.add_post("/api/v4/leads/complex", self._complex)
        app.router.add_post("/api/v4/leads/unsorted/sip", self._unsorted_sip)
        app.router.add_post("/api/v4/calls", self._calls)

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
        if request.headers.get("Authorization") != f"Bearer {self.token}":
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
        self.leads[lead_id] = {**lead, "id": lead_id, "contact_id": contact_id}
        if contact_id is not None:
            self.contacts[contact_id]["lead_ids"].append(lead_id)
        return lead_id
