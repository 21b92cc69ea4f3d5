"""The OpenAPI document describes every /api/v1 route."""

from __future__ import annotations

from typing import Any

from calltracker.app import create_app
from calltracker.settings import Settings
from calltracker.web import openapi
from tests.admin.conftest import Client, People, bearer, embedded_only
from tests.conftest import Seeded


def api_routes() -> set[tuple[str, str]]:
    app = create_app(Settings(database_url="sqlite:///:memory:"))
    return {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.resource is not None
        and r.resource.canonical.startswith("/api/v1/")
        and r.method != "HEAD"
    }


def document() -> dict[str, Any]:
    return openapi.build_document(create_app(Settings(database_url="sqlite:///:memory:")))


def test_every_api_route_is_in_the_document() -> None:
    paths = document()["paths"]
    described = {(m.upper(), p) for p, ops in paths.items() for m in ops}
    assert described == api_routes()


def test_the_catalog_visit_and_console_routes_have_written_docs() -> None:
    # A route in DOCS that no longer exists means the docs went stale.
    assert set(openapi.DOCS) <= api_routes()
    must = {
        ("POST", "/api/v1/visits"),
        ("POST", "/api/v1/sites"),
        ("GET", "/api/v1/numbers"),
        ("GET", "/api/v1/calls"),
        ("POST", "/api/v1/users"),
        ("GET", "/api/v1/openapi.json"),
    }
    assert must <= set(openapi.DOCS)


def test_operations_state_who_may_call_them() -> None:
    paths = document()["paths"]
    assert paths["/api/v1/visits"]["post"]["security"] == []
    assert paths["/api/v1/users"]["get"]["x-roles"] == ["admin"]
    assert paths["/api/v1/calls"]["get"]["x-roles"] == ["admin", "marketer", "operator"]
    params = paths["/api/v1/pools/{pool}/stats"]["get"]["parameters"]
    assert params == [
        {"name": "pool", "in": "path", "required": True, "schema": {"type": "integer"}}
    ]


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
