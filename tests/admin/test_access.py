"""Access control: every private route refuses anonymous and wrong-role callers."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from calltracker.accounts.roles import Role
from calltracker.app import create_app
from calltracker.settings import Settings
from calltracker.web import pages
from calltracker.web.auth import handler_marks
from tests.admin.conftest import CSRF_INPUT, PASSWORD, Client, People, bearer, embedded_only, login
from tests.conftest import Seeded

# Ids that exist nowhere, so that an allowed request cannot change real rows.
PARAMS = {
    "site": "shop",
    "pool": "999999",
    "user": "999999",
    "token": "999999",
    "call": "999999",
    "number": "999999",
    "visit_id": "AAAAAAAAAAAAAAAAAAAAAA",
    "name": "app.css",
}


def fill(path: str) -> str:
    for name, value in PARAMS.items():
        path = path.replace("{" + name + "}", value)
    # Any other id: one that exists nowhere, so an allowed request changes nothing.
    return re.sub(r"\{[^}]+\}", "999999", path)


def private_routes(app: web.Application) -> list[tuple[str, str, frozenset[Role]]]:
    out = []
    for route in app.router.routes():
        is_public, allowed = handler_marks(route.handler)
        if is_public or route.method in ("HEAD", "OPTIONS") or route.resource is None:
            continue
        out.append((route.method, fill(route.resource.canonical), allowed))
    return out


def is_page(path: str) -> bool:
    # As web/pages.wants_page: the JSON API and /metrics (Prometheus) answer 401/403 in JSON.
    return not path.startswith("/api/") and path != "/metrics"


async def test_every_private_route_refuses_anonymous_callers(
    client: Client, seeded: Seeded
) -> None:
    routes = private_routes(client.app)
    assert len(routes) >= 60
    for method, path, _ in routes:
        resp = await client.request(method, path, allow_redirects=False)
        if is_page(path):
            assert resp.status == 303, (method, path, resp.status)
            assert resp.headers["Location"].startswith("/login"), (method, path)
        else:
            assert resp.status == 401, (method, path, resp.status)
            assert (await resp.json())["error"] == "unauthorized"


@embedded_only
async def test_an_anonymous_page_visit_goes_to_login_and_back_after_it(
    client: Client, seeded: Seeded, people: People
) -> None:
    page = await client.get("/admin/sites?x=1")
    assert page.url.path == "/login"
    html = await page.text()
    assert 'name="next" value="/admin/sites?x=1"' in html
    token = CSRF_INPUT.search(html)
    assert token is not None
    resp = await client.post(
        "/login",
        data={
            "username": "admin",
            "password": PASSWORD,
            "csrf_token": token.group(1),
            "next": "/admin/sites?x=1",
        },
        allow_redirects=False,
    )
    assert resp.headers["Location"] == "/admin/sites?x=1"


async def test_every_private_route_refuses_the_wrong_role(
    client: Client, seeded: Seeded, people: People
) -> None:
    routes = private_routes(client.app)
    refused = 0
    for role in (Role.MARKETER, Role.OPERATOR):
        csrf = await login(client, role.value)
        for method, path, allowed in routes:
            if role in allowed:
                continue
            if is_page(path):
                # With a valid CSRF token, so the 403 can only come from the role check.
                resp = await client.request(method, path, data={"csrf_token": csrf})
                assert resp.status == 403, (role, method, path, resp.status)
                assert "Not allowed" in await resp.text(), (role, method, path)
            else:
                resp = await client.request(method, path, headers=bearer(people.tokens[role]))
                assert resp.status == 403, (role, method, path, resp.status)
                assert (await resp.json())["error"] == "forbidden", (role, method, path)
            refused += 1
    assert refused >= 80


async def test_an_admin_reaches_every_private_route(
    client: Client, seeded: Seeded, people: People
) -> None:
    csrf = await login(client, "admin")
    for method, path, allowed in private_routes(client.app):
        assert Role.ADMIN in allowed
        if path == "/logout":
            continue
        if is_page(path):
            resp = await client.request(
                method, path, data={"csrf_token": csrf}, allow_redirects=False
            )
        else:
            resp = await client.request(method, path, headers=bearer(people.tokens["admin"]))
        assert resp.status not in (401, 403), (method, path, resp.status)


EXPECTED: dict[str, dict[str, int]] = {
    "operator": {
        "/console": 200,
        "/calls": 200,
        "/account": 200,
        "/api/v1/calls": 200,
        "/api/v1/me": 200,
        "/reports": 403,
        "/reports/spend": 403,
        "/admin/sites": 403,
        "/admin/users": 403,
        "/api/v1/sites": 403,
        "/api/v1/users": 403,
    },
    "marketer": {
        "/calls": 200,
        "/reports": 200,
        "/reports/spend": 200,
        "/api/v1/calls": 200,
        "/console": 403,
        "/admin/sites": 403,
        "/admin/static-numbers": 403,
        "/api/v1/pools": 403,
    },
}


async def test_each_role_reaches_exactly_its_part(
    client: Client, seeded: Seeded, people: People
) -> None:
    for role, expected in EXPECTED.items():
        await login(client, role)
        for path, status in expected.items():
            resp = await client.get(path)
            assert resp.status == status, (role, path, resp.status)


@embedded_only
async def test_home_sends_each_role_to_its_landing_page(
    client: Client, seeded: Seeded, people: People
) -> None:
    landing = {"admin": "/admin/sites", "marketer": "/reports", "operator": "/console"}
    for role, path in landing.items():
        await login(client, role)
        resp = await client.get("/", allow_redirects=False)
        assert resp.headers["Location"] == path, role


def nav_routes(app: web.Application) -> dict[str, Any]:
    return {
        r.resource.canonical: r.handler
        for r in app.router.routes()
        if r.method == "GET" and r.resource is not None
    }


def test_the_nav_shows_a_role_only_pages_it_may_open() -> None:
    handlers = nav_routes(create_app(Settings(database_url="sqlite:///:memory:")))
    shown = 0
    for item in pages.NAV:
        if item.path in handlers:
            _, allowed = handler_marks(handlers[item.path])
            assert item.roles == allowed, item.path
            shown += 1
    assert shown >= 8


# The list of what needs no login, plus the login form and its CSS/JS.
ALLOWED_PUBLIC = re.compile(
    r"^(/healthz|/widget\.js|/api/v1/visits.*|/api/v1/amp/.*|/login|/static/\{name\}"
    # The widget's demo page: static HTML with no data.
    r"|/demo/"
    # Recording links sent to CRMs: each carries its own HMAC signature.
    r"|/recordings/\{call\}\.mp3"
    # The CRMs' outgoing webhooks: each checked by its CRM's token, or the secret in its URL.
    r"|/api/v1/crm/bitrix24/\{integration\}/events|/api/v1/crm/amocrm/\{integration\}/\{secret\}/events)$"
)


def test_only_the_listed_routes_are_public() -> None:
    app = create_app(Settings(database_url="sqlite:///:memory:"))
    public = {
        r.resource.canonical
        for r in app.router.routes()
        if r.resource is not None and handler_marks(r.handler)[0]
    }
    assert "/login" in public and "/api/v1/visits" in public
    assert {p for p in public if not ALLOWED_PUBLIC.match(p)} == set()
