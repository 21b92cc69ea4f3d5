"""GET /api/v1/openapi.json: the JSON API, from the route table plus hand-written docs."""

# Every /api/v1 route appears, with its path parameters, its auth (public, or the roles of
# @roles) and a summary; DOCS adds request and response schemas. A route added without an
# entry in DOCS is still listed, summarised from its handler's docstring.

from __future__ import annotations

from typing import Any

from aiohttp import web

from calltracker.accounts.roles import Role
from calltracker.web.auth import handler_marks, roles

API_PREFIX = "/api/v1/"
JSON = "application/json"

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: list[str] | None = None, **props: Schema) -> Schema:
    schema: Schema = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    return schema


def arr(items: Schema) -> Schema:
    return {"type": "array", "items": items}


STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
BOOL: Schema = {"type": "boolean"}
NUM: Schema = {"type": "number"}
DT: Schema = {"type": "string", "format": "date-time"}
NULL_S: Schema = {"type": ["string", "null"]}
NULL_I: Schema = {"type": ["integer", "null"]}
NULL_DT: Schema = {"type": ["string", "null"], "format": "date-time"}
STRS = arr(STR)

SCHEMAS: dict[str, Schema] = {
    "Error": obj(["error", "message"], error=STR, message=STR),
    "Site": obj(
        ["id", "key"],
        id=INT,
        key=STR,
        name=STR,
        domains=STRS,
        country=STR,
        timezone=STR,
        default_number=STR,
        pooled_mediums=STRS,
        target_min_talk_seconds=INT,
        unique_window_days=INT,
    ),
    "SiteInput": obj(
        ["key", "default_number"],
        key=STR,
        name=STR,
        domains=STRS,
        default_number=STR,
        country=STR,
        timezone=STR,
        pooled_mediums=STRS,
    ),
    "SitePatch": obj(
        name=STR,
        domains=STRS,
        default_number=STR,
        country=STR,
        timezone=STR,
        pooled_mediums={**STRS, "description": "mediums that get pooled numbers; [] = all"},
        target_min_talk_seconds={**INT, "description": "target call: answered, talked >= this"},
        unique_window_days={**INT, "description": "a caller is unique if silent this long"},
        fallback_number_id={
            **INT,
            "description": "static number for non-pooled traffic; 0 = default",
        },
    ),
    "Pool": obj(["id"], id=INT, site_id=INT, name=STR, hold_seconds=INT, policy=STR),
    "PoolInput": obj(name=STR, hold_seconds=INT, policy=STR, numbers=STRS),
    "PoolPatch": obj(
        name=STR, hold_seconds=INT, policy={"enum": ["default_number", "share_oldest"]}
    ),
    "PoolStats": obj(
        pool_id=INT,
        size=INT,
        leased=INT,
        utilisation=NUM,
        peak_concurrent=INT,
        exhaustion_count=INT,
        recommended_size=INT,
    ),
    "PoolHealth": {
        "allOf": [
            ref("Pool"),
            obj(
                site_key=STR,
                numbers=INT,
                live={"oneOf": [{"type": "null"}, ref("PoolStats")]},
            ),
        ]
    },
    "Number": obj(
        ["id", "number", "kind"],
        id=INT,
        number={**STR, "description": "E.164"},
        site_id=INT,
        kind={"enum": ["pool", "static"]},
        pool_id=NULL_I,
        source=STR,
        medium=STR,
        campaign=STR,
    ),
    "StaticNumberInput": obj(
        ["number", "source"], number=STR, source=STR, medium=STR, campaign=STR
    ),
    "NumbersInput": obj(["numbers"], numbers=STRS),
    "ImportErrors": obj(
        ["error", "message", "errors"],
        error=STR,
        message=STR,
        errors=arr(obj(line=INT, value=STR, reason=STR)),
    ),
    "User": obj(
        ["id", "username", "role"],
        id=INT,
        username=STR,
        role={"enum": [r.value for r in Role]},
        extension=STR,
        disabled=BOOL,
        created_at=DT,
        last_login_at=NULL_DT,
    ),
    "UserInput": obj(
        ["username", "role", "password"], username=STR, role=STR, password=STR, extension=STR
    ),
    "UserPatch": obj(role=STR, disabled=BOOL, extension=STR, password=STR),
    "Token": obj(
        ["id", "name", "role"],
        id=INT,
        name=STR,
        role=STR,
        user_id=NULL_I,
        created_at=DT,
        revoked_at=NULL_DT,
    ),
    "NewToken": {
        "allOf": [
            ref("Token"),
            obj(["token"], token={**STR, "description": "shown once; never stored"}),
        ]
    },
    "Me": obj(
        ["name", "role"], name=STR, role=STR, user={"oneOf": [{"type": "null"}, ref("User")]}
    ),
    "Call": obj(
        ["id", "tracking_number", "started_at", "status"],
        id=INT,
        linkedid=STR,
        site_id=NULL_I,
        site_key=NULL_S,
        tracking_number=STR,
        caller=STR,
        started_at=DT,
        answered_at=NULL_DT,
        ended_at=NULL_DT,
        wait_seconds=INT,
        talk_seconds=INT,
        status=STR,
        operator=STR,
        source=STR,
        medium=STR,
        campaign=STR,
        keyword=STR,
        attribution=STR,
        unique=BOOL,
        target=BOOL,
        recording_url=NULL_S,
        visit={
            "oneOf": [
                {"type": "null"},
                obj(
                    id=STR,
                    started_at=DT,
                    url=STR,
                    referrer=STR,
                    touch_source=STR,
                    touch_medium=STR,
                ),
            ]
        },
    ),
    "VisitInput": obj(
        ["site_key", "url"],
        site_key=STR,
        url=STR,
        visitor_id=STR,
        referrer=STR,
        ga_client_id=STR,
        ym_client_id=STR,
    ),
    "Visit": obj(
        visit_id=STR,
        visitor_id=STR,
        number=STR,
        display=STR,
        kind={"enum": ["pool", "static", "default"]},
        ttl=INT,
        source=STR,
        medium=STR,
        campaign=STR,
        keyword=STR,
        default_number=STR,
        selectors=STRS,
    ),
}


def body(schema: Schema, content_type: str = JSON) -> Schema:
    return {"required": True, "content": {content_type: {"schema": schema}}}


def ok(schema: Schema | None, status: str = "200", what: str = "OK") -> dict[str, Schema]:
    if schema is None:
        return {status: {"description": what}}
    return {status: {"description": what, "content": {JSON: {"schema": schema}}}}


def query(name: str, schema: Schema, description: str = "") -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


CALL_FILTERS = [
    query("site_id", INT),
    query("date_from", {**STR, "format": "date"}, "inclusive, in the site's time zone"),
    query("date_to", {**STR, "format": "date"}, "inclusive"),
    query("status", {"enum": ["answered", "missed", "busy", "failed", "ringing"]}),
    query("source", STR),
    query("medium", STR),
    query("campaign", STR),
    query("attribution", STR),
    query("caller", STR, "digits the caller's number contains"),
    query("number", STR, "the tracking number dialled, E.164"),
    query("operator", STR),
    query("unique", BOOL),
    query("target", BOOL),
    query("limit", INT, "1..200, default 50"),
    query("offset", INT),
]

# (method, canonical path) -> the parts of an operation the route table cannot know.
DOCS: dict[tuple[str, str], Schema] = {
    ("POST", "/api/v1/visits"): {
        "summary": "Start a visit: classify the source and lease a number (the widget calls it)",
        "requestBody": body(ref("VisitInput")),
        "responses": ok(ref("Visit")),
    },
    ("POST", "/api/v1/visits/{visit_id}/ping"): {
        "summary": "Keep the visit's number while the page is open",
        "requestBody": body(obj(["site_key"], site_key=STR)),
        "responses": ok(obj(number=STR, ttl=INT)),
    },
    ("POST", "/api/v1/visits/{visit_id}/events"): {
        "summary": "Record a page signal such as a click on a tel: link",
        "requestBody": body(obj(["site_key", "type"], site_key=STR, type=STR)),
        "responses": ok(None, "204", "recorded"),
    },
    ("OPTIONS", "/api/v1/visits"): {"summary": "CORS preflight for the site's origins"},
    ("OPTIONS", "/api/v1/visits/{visit_id}/ping"): {"summary": "CORS preflight"},
    ("OPTIONS", "/api/v1/visits/{visit_id}/events"): {"summary": "CORS preflight"},
    ("GET", "/api/v1/sites"): {
        "summary": "List sites",
        "responses": ok(obj(sites=arr(ref("Site")))),
    },
    ("POST", "/api/v1/sites"): {
        "summary": "Create a site",
        "requestBody": body(ref("SiteInput")),
        "responses": ok(ref("Site"), "201", "created"),
    },
    ("GET", "/api/v1/sites/{site}"): {
        "summary": "A site with its pools and numbers",
        "responses": ok(
            {"allOf": [ref("Site"), obj(pools=arr(ref("Pool")), numbers=arr(ref("Number")))]}
        ),
    },
    ("PATCH", "/api/v1/sites/{site}"): {
        "summary": "Change a site's settings (fields left out stay as they are)",
        "requestBody": body(ref("SitePatch")),
        "responses": ok(ref("Site")),
    },
    ("POST", "/api/v1/sites/{site}/pools"): {
        "summary": "Create a pool on a site, optionally with numbers",
        "requestBody": body(ref("PoolInput")),
        "responses": ok({"allOf": [ref("Pool"), obj(numbers=STRS)]}, "201", "created"),
    },
    ("POST", "/api/v1/sites/{site}/static-numbers"): {
        "summary": "Bind a static number to a label for an offline ad",
        "requestBody": body(ref("StaticNumberInput")),
        "responses": ok(ref("Number"), "201", "created"),
    },
    ("GET", "/api/v1/pools"): {
        "summary": "Every pool with live utilisation, peak, exhaustion count, recommended size",
        "responses": ok(obj(pools=arr(ref("PoolHealth")))),
    },
    ("PATCH", "/api/v1/pools/{pool}"): {
        "summary": "Change a pool's name, hold time or exhaustion policy",
        "requestBody": body(ref("PoolPatch")),
        "responses": ok(ref("Pool")),
    },
    ("POST", "/api/v1/pools/{pool}/numbers"): {
        "summary": "Add numbers to a pool (all or nothing)",
        "requestBody": body(ref("NumbersInput")),
        "responses": ok(obj(numbers=arr(ref("Number"))), "201", "added"),
    },
    ("GET", "/api/v1/pools/{pool}/stats"): {
        "summary": "A pool's live figures",
        "responses": ok(ref("PoolStats")),
    },
    ("GET", "/api/v1/numbers"): {
        "summary": "List tracked numbers",
        "parameters": [query("site_id", INT), query("kind", {"enum": ["pool", "static"]})],
        "responses": ok(obj(numbers=arr(ref("Number")))),
    },
    ("PATCH", "/api/v1/numbers/{number}"): {
        "summary": "Turn a number on or off",
        "requestBody": body(obj(["active"], active=BOOL)),
        "responses": ok(ref("Number")),
    },
    ("POST", "/api/v1/numbers/import"): {
        "summary": "Import numbers from CSV: number,site,pool,source,medium,campaign",
        "requestBody": body(STR, "text/csv"),
        "responses": {
            **ok(obj(numbers=arr(ref("Number"))), "201", "imported"),
            **ok(ref("ImportErrors"), "400", "nothing imported; every bad line listed"),
        },
    },
    ("GET", "/api/v1/users"): {
        "summary": "List users",
        "responses": ok(obj(users=arr(ref("User")))),
    },
    ("POST", "/api/v1/users"): {
        "summary": "Add a user",
        "requestBody": body(ref("UserInput")),
        "responses": ok(ref("User"), "201", "created"),
    },
    ("GET", "/api/v1/users/{user}"): {"summary": "A user", "responses": ok(ref("User"))},
    ("PATCH", "/api/v1/users/{user}"): {
        "summary": "Change a user's role, extension, password, or disable them",
        "requestBody": body(ref("UserPatch")),
        "responses": ok(ref("User")),
    },
    ("POST", "/api/v1/users/{user}/tokens"): {
        "summary": "Create an API token that acts as the user",
        "requestBody": body(obj(["name"], name=STR)),
        "responses": ok(ref("NewToken"), "201", "created; the token is shown once"),
    },
    ("GET", "/api/v1/tokens"): {
        "summary": "Every API token, user and service tokens",
        "responses": ok(obj(tokens=arr(ref("Token")))),
    },
    ("DELETE", "/api/v1/tokens/{token}"): {
        "summary": "Revoke a token",
        "responses": ok(None, "204", "revoked"),
    },
    ("GET", "/api/v1/me"): {"summary": "Who is calling", "responses": ok(ref("Me"))},
    ("GET", "/api/v1/me/tokens"): {
        "summary": "Your API tokens",
        "responses": ok(obj(tokens=arr(ref("Token")))),
    },
    ("POST", "/api/v1/me/tokens"): {
        "summary": "Create an API token for yourself",
        "requestBody": body(obj(["name"], name=STR)),
        "responses": ok(ref("NewToken"), "201", "created; the token is shown once"),
    },
    ("DELETE", "/api/v1/me/tokens/{token}"): {
        "summary": "Revoke one of your tokens",
        "responses": ok(None, "204", "revoked"),
    },
    ("POST", "/api/v1/me/password"): {
        "summary": "Change your password; your other sessions end",
        "requestBody": body(obj(["current", "password"], current=STR, password=STR)),
        "responses": ok(None, "204", "changed"),
    },
    ("GET", "/api/v1/calls"): {
        "summary": "Calls, newest first, filtered and paged",
        "parameters": CALL_FILTERS,
        "responses": ok(obj(calls=arr(ref("Call")), total=INT, next_offset=NULL_I)),
    },
    ("GET", "/api/v1/calls/{call}"): {"summary": "A call", "responses": ok(ref("Call"))},
    ("GET", "/api/v1/calls/{call}/recording"): {
        "summary": "The call's recording (Range requests supported)",
        "responses": {
            "200": {
                "description": "audio",
                "content": {"audio/mpeg": {"schema": {"type": "string", "format": "binary"}}},
            }
        },
    },
    ("GET", "/api/v1/openapi.json"): {
        "summary": "This document",
        "responses": ok({"type": "object"}),
    },
}

INTEGER_PARAMS = {"pool", "user", "token", "call", "number"}


def _path_params(path: str) -> list[Schema]:
    names = [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": INT if name in INTEGER_PARAMS else STR,
        }
        for name in names
    ]


def _operation(method: str, path: str, handler: Any) -> Schema:
    is_public, allowed = handler_marks(handler)
    doc = DOCS.get((method, path), {})
    summary = doc.get("summary") or (handler.__doc__ or "").strip().split("\n")[0] or path
    op: Schema = {
        "operationId": f"{method.lower()}_{getattr(handler, '__name__', 'handler')}",
        "summary": summary,
        "tags": [path.removeprefix(API_PREFIX).split("/")[0]],
        "responses": doc.get("responses") or {"200": {"description": "OK"}},
    }
    params = _path_params(path) + list(doc.get("parameters", []))
    if params:
        op["parameters"] = params
    if "requestBody" in doc:
        op["requestBody"] = doc["requestBody"]
    if is_public:
        op["security"] = []
    else:
        op["x-roles"] = sorted(r.value for r in allowed)
        op["responses"] = {
            **op["responses"],
            "401": {
                "description": "no valid token or session",
                "content": {JSON: {"schema": ref("Error")}},
            },
            "403": {
                "description": "role not allowed, or CSRF token missing",
                "content": {JSON: {"schema": ref("Error")}},
            },
        }
    return op


def build_document(app: web.Application) -> Schema:
    paths: dict[str, dict[str, Schema]] = {}
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if not path.startswith(API_PREFIX) or route.method in ("HEAD", "*"):
            continue
        paths.setdefault(path, {})[route.method.lower()] = _operation(
            route.method, path, route.handler
        )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "calltracker API",
            "version": "1",
            "description": (
                "Private routes take a bearer token (`calltracker user token`) or a login "
                "session cookie; with the cookie, state-changing requests also send the "
                "session's CSRF token in X-CSRF-Token. x-roles lists the roles allowed."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}, {"sessionCookie": []}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer"},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "ct_session"},
            },
        },
    }


@roles(Role.MARKETER, Role.OPERATOR)
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(build_document(request.app))
