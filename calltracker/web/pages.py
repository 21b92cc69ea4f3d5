"""Rendering for the console's pages: layout context, nav per role, headers, static files."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from multidict import MultiDictProxy

from calltracker.accounts.roles import Role
from calltracker.errors import Invalid
from calltracker.keys import principal_key
from calltracker.web.sessions import current_session

# Pages are same-origin only: no inline script, no framing. Visitor-sent text is escaped by
# Jinja; this policy means even a missed escape could not run a script.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "media-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

ALL = frozenset(Role)
MARKETER = frozenset({Role.ADMIN, Role.MARKETER})
OPERATOR = frozenset({Role.ADMIN, Role.OPERATOR})
ADMIN = frozenset({Role.ADMIN})


@dataclass(frozen=True)
class NavItem:
    label: str
    path: str
    roles: frozenset[Role]


# Who sees which link; tests check it against each page's @roles. Pages other teams add
# (reports, spend) appear once their route exists.
NAV = (
    NavItem("Calls", "/calls", ALL),
    NavItem("Console", "/operator", OPERATOR),
    NavItem("Reports", "/reports", MARKETER),
    NavItem("Deals", "/reports/deals", MARKETER),
    NavItem("Spend", "/reports/spend", MARKETER),
    NavItem("Sites", "/admin/sites", ADMIN),
    NavItem("Pools", "/admin/pools", ADMIN),
    NavItem("Static numbers", "/admin/static-numbers", ADMIN),
    NavItem("Import", "/admin/numbers/import", ADMIN),
    NavItem("Integrations", "/admin/integrations", ADMIN),
    NavItem("Rates", "/admin/currency-rates", ADMIN),
    NavItem("Users", "/admin/users", ADMIN),
)
# Where "/" sends each role: the first of these that exists.
LANDING = {
    Role.ADMIN: ("/admin/sites", "/calls"),
    Role.MARKETER: ("/reports", "/calls"),
    Role.OPERATOR: ("/console", "/calls"),
}


def registered_paths(app: web.Application) -> frozenset[str]:
    return frozenset(r.canonical for r in app.router.resources())


def nav_for(request: web.Request, role: Role) -> list[NavItem]:
    paths = registered_paths(request.app)
    return [item for item in NAV if role in item.roles and item.path in paths]


def landing_path(request: web.Request, role: Role) -> str:
    paths = registered_paths(request.app)
    return next((p for p in LANDING[role] if p in paths), "/account")


def base_context(request: web.Request) -> dict[str, Any]:
    info = current_session(request)
    principal = request[principal_key] if principal_key in request else None
    role = principal.role if principal is not None else None
    return {
        "me": info,
        "role": role.value if role is not None else "",
        "csrf_token": info.csrf_token if info is not None else "",
        "nav": nav_for(request, role) if role is not None else [],
        "path": request.path,
    }


def with_page_headers(response: web.Response) -> web.Response:
    response.headers.update(PAGE_HEADERS)
    return response


def render(
    request: web.Request, template: str, context: Mapping[str, Any], *, status: int = 200
) -> web.Response:
    full = base_context(request)
    full.update(context)
    return with_page_headers(aiohttp_jinja2.render_template(template, request, full, status=status))


def render_error(request: web.Request, status: int, title: str, message: str) -> web.Response:
    return render(request, "error.html", {"title": title, "message": message}, status=status)


def wants_page(request: web.Request) -> bool:
    """Pages get HTML and login redirects; the JSON API and /metrics get JSON and 401."""
    return not request.path.startswith("/api/") and request.path != "/metrics"


def form_text(form: MultiDictProxy[Any], name: str, default: str = "") -> str:
    value = form.get(name, default)
    return value.strip() if isinstance(value, str) else default


def form_int(form: MultiDictProxy[Any], name: str, default: int | None = None) -> int | None:
    raw = form_text(form, name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise Invalid(f"{name} must be a whole number, got {raw!r}", code="invalid_field") from None


def form_lines(form: MultiDictProxy[Any], name: str) -> list[str]:
    """A textarea or comma list as clean items: one per line or comma."""
    raw = form_text(form, name)
    return [part.strip() for line in raw.splitlines() for part in line.split(",") if part.strip()]
