"""The private JSON API: bearer tokens, roles, and the catalog endpoints."""

from __future__ import annotations

import re
from typing import Any

from aiohttp.test_utils import TestClient

from calltracker.web.auth import handler_marks
from tests.conftest import Seeded

Client = TestClient[Any, Any]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def route_path(route: Any) -> str:
    info = route.get_info()
    return str(info.get("path") or info.get("formatter") or info.get("prefix", ""))


def private_routes(client: Client) -> list[tuple[str, str]]:
    routes = []
    for route in client.app.router.routes():
        if route.method in ("HEAD", "OPTIONS") or handler_marks(route.handler)[0]:
            continue
        path = re.sub(r"\{[^}]+\}", "1", route_path(route).replace("{site}", "shop"))
        routes.append((route.method, path))
    return routes


async def test_a_wrong_token_is_401(client: Client, seeded: Seeded) -> None:
    resp = await client.get("/api/v1/sites", headers=bearer("ct_not-a-real-token"))
    assert resp.status == 401


async def test_catalog_routes_are_403_for_a_marketer(client: Client, seeded: Seeded) -> None:
    catalog = [
        (m, p)
        for m, p in private_routes(client)
        if p.startswith(("/api/v1/sites", "/api/v1/pools", "/api/v1/numbers"))
    ]
    assert len(catalog) >= 8
    for method, path in catalog:
        resp = await client.request(method, path, headers=bearer(seeded.marketer_token))
        assert resp.status == 403, (method, path)


async def test_an_admin_creates_a_site_with_a_pool_and_a_static_number(
    client: Client, seeded: Seeded
) -> None:
    h = bearer(seeded.admin_token)
    resp = await client.post(
        "/api/v1/sites",
        json={
            "key": "clinic",
            "domains": ["clinic.example.ru"],
            "default_number": "8 (812) 000-00-00",
        },
        headers=h,
    )
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["default_number"] == "+78120000000"
    resp = await client.post(
        "/api/v1/sites/clinic/pools",
        json={
            "name": "main",
            "hold_seconds": 600,
            "numbers": ["8 812 111-11-11", "+7 812 111-11-12"],
        },
        headers=h,
    )
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["numbers"] == ["+78121111111", "+78121111112"]
    resp = await client.post(
        "/api/v1/sites/clinic/static-numbers",
        json={"number": "+7 812 222-22-22", "source": "radio", "medium": "offline"},
        headers=h,
    )
    assert resp.status == 201
    visit = await client.post(
        "/api/v1/visits",
        json={
            "site_key": "clinic",
            "url": "https://clinic.example.ru/?utm_source=vk&utm_medium=cpc",
        },
        headers={"User-Agent": "Mozilla/5.0"},
    )
    assert (await visit.json())["number"] in {"+78121111111", "+78121111112"}


async def test_an_invalid_number_is_rejected_naming_it(client: Client, seeded: Seeded) -> None:
    resp = await client.post(
        f"/api/v1/pools/{seeded.pool_id}/numbers",
        json={"numbers": ["+74951239999", "12345"]},
        headers=bearer(seeded.admin_token),
    )
    assert resp.status == 400
    assert "'12345'" in (await resp.json())["message"]


async def test_a_number_tracked_twice_is_a_conflict(client: Client, seeded: Seeded) -> None:
    resp = await client.post(
        f"/api/v1/pools/{seeded.pool_id}/numbers",
        json={"numbers": [seeded.static_number]},
        headers=bearer(seeded.admin_token),
    )
    assert resp.status == 409


async def test_pool_stats_show_live_leases(client: Client, seeded: Seeded) -> None:
    for _ in range(2):
        await client.post(
            "/api/v1/visits",
            json={"site_key": "shop", "url": "https://shop.example.ru/?gclid=abc"},
            headers={"User-Agent": "Mozilla/5.0"},
        )
    resp = await client.get(
        f"/api/v1/pools/{seeded.pool_id}/stats", headers=bearer(seeded.admin_token)
    )
    stats = await resp.json()
    assert (stats["size"], stats["leased"], stats["peak_concurrent"]) == (3, 2, 2)
