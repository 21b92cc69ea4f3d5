"""The OpenAPI document describes every /api/v1 route, from the handlers' own types."""

from __future__ import annotations

from typing import Any

from calltracker.app import create_app
from calltracker.settings import Settings
from calltracker.web import openapi
from calltracker.web.bodies import route_of
from tests.admin.conftest import Client, People, bearer, embedded_only
from tests.conftest import Seeded


def app_routes() -> list[Any]:
    app = create_app(Settings(database_url="sqlite:///:memory:"))
    return [
        r
        for r in app.router.routes()
        if r.resource is not None
        and r.resource.canonical.startswith("/api/v1/")
        and r.method != "HEAD"
    ]


def document() -> dict[str, Any]:
    return openapi.build_document(create_app(Settings(database_url="sqlite:///:memory:")))


def test_every_api_route_is_in_the_document() -> None:
    paths = document()["paths"]
    described = {(m.upper(), p) for p, ops in paths.items() for m in ops}
    assert described == {(r.method, r.resource.canonical) for r in app_routes()}


def test_every_api_route_declares_what_it_takes_and_answers() -> None:
    undeclared = [(r.method, r.resource.canonical) for r in app_routes() if not route_of(r.handler)]
    assert undeclared == []
    paths = document()["paths"]
    visit = paths["/api/v1/visits"]["post"]
    assert visit["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/VisitRequest"
    }
    assert "200" in visit["responses"] and "default" in visit["responses"]
    assert paths["/api/v1/tokens/{token}"]["delete"]["responses"]["204"] == {
        "description": "no content"
    }


def test_operations_state_who_may_call_them() -> None:
    paths = document()["paths"]
    assert paths["/api/v1/visits"]["post"]["security"] == []
    assert paths["/api/v1/users"]["get"]["x-roles"] == ["admin"]
    assert paths["/api/v1/calls"]["get"]["x-roles"] == ["admin", "marketer", "operator"]
    params = paths["/api/v1/pools/{pool}/stats"]["get"]["parameters"]
    assert params == [
        {"name": "pool", "in": "path", "required": True, "schema": {"type": "integer"}}
    ]


def test_query_parameters_come_from_the_handlers_query_type() -> None:
    params = document()["paths"]["/api/v1/calls"]["get"]["parameters"]
    by_name = {p["name"]: p for p in params}
    assert by_name["site_id"]["schema"] == {"type": "integer"}
    assert by_name["limit"] == {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": "1..200",
        "schema": {"type": "integer", "default": 50},
    }


def test_every_schema_reference_resolves() -> None:
    doc = document()
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    assert refs
    for ref in refs:
        assert ref.removeprefix("#/components/schemas/") in doc["components"]["schemas"], ref


@embedded_only
async def test_the_document_is_served_to_any_logged_in_role(
    client: Client, seeded: Seeded, people: People
) -> None:
    resp = await client.get("/api/v1/openapi.json", headers=bearer(people.tokens["operator"]))
    assert resp.status == 200
    assert (await resp.json())["openapi"] == "3.1.0"
