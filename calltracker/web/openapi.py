"""GET /api/v1/openapi.json: the JSON API, from the route table and the handlers' own types."""

# Every /api/v1 route appears, with its path parameters, its auth (public, or the roles of
# @roles) and its handler's docstring as the summary. Bodies, query parameters and responses
# come from what the handler declares (web/bodies.py: @api, @described): the same msgspec
# types that decode its requests and encode its answers, so the document cannot drift from
# them. tests/web/test_api_contract.py checks real responses against it.

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import msgspec
from aiohttp import web

from calltracker.accounts.roles import Role
from calltracker.shapes import schema_hook
from calltracker.web.auth import handler_marks, roles
from calltracker.web.bodies import FORM, JSON, Route, api, route_of
from calltracker.web.errors import ErrorBody

API_PREFIX = "/api/v1/"
REF = "#/components/schemas/{name}"

Schema = dict[str, Any]
# The media types a handler may read itself, besides JSON: how each is described.
OTHER_BODIES: dict[str, Schema] = {
    "text/csv": {"type": "string"},
    "multipart/form-data": {
        "type": "object",
        "properties": {"file": {"type": "string", "format": "binary"}, "site": {"type": "string"}},
        "required": ["file"],
    },
}
OTHER_BODIES[FORM] = {"type": "object", "additionalProperties": {"type": "string"}}
BINARY: Schema = {"type": "string", "format": "binary"}


def _api_routes(app: web.Application) -> Iterator[tuple[str, str, Any, Any]]:
    """(method, canonical path, resource, handler) of every /api/v1 route."""
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith(API_PREFIX) and route.method not in ("HEAD", "*"):
            yield route.method, path, route.resource, route.handler


def _types(route: Route) -> Iterator[Any]:
    for kind in (route.body, route.query, route.response, *route.errors.values()):
        if kind is not None and kind is not bytes:
            yield kind


class _Schemas:
    """Every declared type's JSON Schema, with the Structs as shared components."""

    def __init__(self, routes: list[Route]) -> None:
        kinds = list(dict.fromkeys([ErrorBody, *(k for r in routes for k in _types(r))]))
        found, self.components = msgspec.json.schema_components(
            kinds, schema_hook=schema_hook, ref_template=REF
        )
        self._of = dict(zip(kinds, found, strict=True))

    def of(self, kind: Any) -> Schema:
        return dict(self._of[kind])

    def fields(self, kind: Any) -> tuple[Schema, list[str]]:
        """A Struct's properties and the names it requires."""
        name = self._of[kind]["$ref"].rsplit("/", 1)[-1]
        component = self.components[name]
        return component.get("properties", {}), component.get("required", [])


def _path_params(path: str, resource: Any) -> list[Schema]:
    pattern = getattr(resource.get_info().get("pattern"), "pattern", "")
    names = re.findall(r"\{([^}:]+)", path)
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "integer" if f"(?P<{name}>\\d+)" in pattern else "string"},
        }
        for name in names
    ]


def _query_params(route: Route, schemas: _Schemas) -> list[Schema]:
    if route.query is None:
        return []
    properties, required = schemas.fields(route.query)
    params = []
    for name, declared in properties.items():
        schema = _without_null(declared)
        param: Schema = {"name": name, "in": "query", "required": name in required}
        if "description" in schema:
            param["description"] = schema.pop("description")
        params.append(param | {"schema": schema})
    return params


def _without_null(schema: Schema) -> Schema:
    """A query parameter is absent or has a value: ``X | None`` documents as X."""
    schema = dict(schema)
    members = [m for m in schema.get("anyOf", []) if m != {"type": "null"}]
    if len(members) == 1 and len(schema["anyOf"]) == 2:
        del schema["anyOf"]
        schema = members[0] | schema
    if schema.get("default", 0) is None:
        del schema["default"]
    return schema


def _request_body(route: Route, schemas: _Schemas) -> Schema | None:
    content: Schema = {}
    if route.body is not None:
        content[JSON] = {"schema": schemas.of(route.body)}
    for media in route.accepts:
        content[media] = {"schema": OTHER_BODIES.get(media, BINARY)}
    if not content:
        return None
    return {"required": _required(route.body), "content": content}


def _required(kind: Any) -> bool:
    """A body may be left out when every field of its Struct has a default."""
    info = msgspec.inspect.type_info(kind) if kind is not None else None
    if isinstance(info, msgspec.inspect.StructType):
        return any(f.required for f in info.fields)
    return True


def _error(description: str) -> Schema:
    return {
        "description": description,
        "content": {JSON: {"schema": {"$ref": REF.format(name="ErrorBody")}}},
    }


def _responses(route: Route | None, schemas: _Schemas) -> Schema:
    responses: Schema = {}
    if route is not None:
        for status in route.statuses:
            if route.response is None:
                responses[str(status)] = {"description": "no content"}
            elif route.response is bytes:
                media = {m: {"schema": BINARY} for m in route.media}
                responses[str(status)] = {"description": "the file", "content": media}
            else:
                schema = schemas.of(route.response)
                responses[str(status)] = {
                    "description": "OK",
                    "content": {JSON: {"schema": schema}},
                }
        for status, kind in route.errors.items():
            content = {JSON: {"schema": schemas.of(kind)}}
            responses[str(status)] = {"description": "refused", "content": content}
    # Any other status is an error in the usual shape; a route that declares nothing has only
    # this, so its real answers cannot validate (tests/web/test_api_contract.py).
    responses["default"] = _error("an error: a stable code and a message for people")
    return responses


def _operation(method: str, path: str, resource: Any, handler: Any, schemas: _Schemas) -> Schema:
    is_public, allowed = handler_marks(handler)
    route = route_of(handler)
    doc = (handler.__doc__ or "").strip()
    summary, _, description = doc.partition("\n")
    op: Schema = {
        "operationId": f"{method.lower()}_{getattr(handler, '__name__', 'handler')}",
        "summary": summary.strip().rstrip(".") or path,
        "tags": [path.removeprefix(API_PREFIX).split("/")[0]],
    }
    if description.strip():
        op["description"] = " ".join(description.split())
    params = _path_params(path, resource) + (_query_params(route, schemas) if route else [])
    if params:
        op["parameters"] = params
    if route is not None and (request_body := _request_body(route, schemas)) is not None:
        op["requestBody"] = request_body
    op["responses"] = _responses(route, schemas)
    if is_public:
        op["security"] = []
    else:
        op["x-roles"] = sorted(r.value for r in allowed)
        op["responses"] |= {
            "401": _error("no valid token or session"),
            "403": _error("role not allowed, or CSRF token missing"),
        }
    return op


def build_document(app: web.Application) -> Schema:
    found = list(_api_routes(app))
    schemas = _Schemas([r for *_, h in found if (r := route_of(h)) is not None])
    paths: dict[str, dict[str, Schema]] = {}
    for method, path, resource, handler in found:
        paths.setdefault(path, {})[method.lower()] = _operation(
            method, path, resource, handler, schemas
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
            "schemas": schemas.components,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer"},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "ct_session"},
            },
        },
    }


@roles(Role.MARKETER, Role.OPERATOR)
@api()
async def openapi_json(request: web.Request) -> dict[str, Any]:
    """This document."""
    return build_document(request.app)
