"""Authentication with roles: a bearer API token or a login session; private unless @public."""

# Pages answer anonymous callers with a redirect to /login, the JSON API with 401.
# Requests that change state with a session cookie must carry the session's CSRF token
# (web/csrf.py); bearer requests need none, as no browser sends a token by itself.

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.typedefs import Handler

from calltracker.accounts import sessions as stored_sessions
from calltracker.accounts.roles import Principal, Role
from calltracker.keys import (
    current_session_key,
    principal_key,
    sessionmaker_key,
    token_verifier_key,
)
from calltracker.web import csrf, pages, sessions
from calltracker.web.errors import Unauthorized, error_response

F = TypeVar("F", bound=Callable[..., Any])


def public(handler: F) -> F:
    """Mark a handler as reachable without credentials (widget, visit API, health)."""
    handler.__dict__["calltracker_public"] = True
    return handler


def roles(*allowed: Role) -> Callable[[F], F]:
    """Roles besides admin that may call the handler; admin may call everything."""

    def mark(handler: F) -> F:
        handler.__dict__["calltracker_roles"] = frozenset(allowed) | {Role.ADMIN}
        return handler

    return mark


def handler_marks(handler: Any) -> tuple[bool, frozenset[Role]]:
    """(is public, roles allowed) for a route handler, bound methods included."""
    target = getattr(handler, "__func__", handler)
    marks = getattr(target, "__dict__", {})
    return bool(marks.get("calltracker_public")), marks.get(
        "calltracker_roles", frozenset({Role.ADMIN})
    )


def _handler_marks(request: web.Request) -> tuple[bool, frozenset[Role]]:
    return handler_marks(getattr(request.match_info, "handler", None))


async def _from_bearer(request: web.Request, header: str) -> Principal:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("an API token is required: Authorization: Bearer <token>")
    principal = await request.app[token_verifier_key].verify(token.strip())
    if principal is None:
        raise Unauthorized("invalid or revoked API token")
    return principal


async def _from_session(request: web.Request, raw: str) -> Principal | None:
    async with request.app[sessionmaker_key].begin() as session:
        info = await stored_sessions.load_session(session, raw)
    if info is None:
        return None
    await csrf.check(request, info.csrf_token)
    request[current_session_key] = info
    return Principal(name=info.username, role=info.role)


async def authenticate(request: web.Request) -> Principal:
    header = request.headers.get("Authorization", "")
    if header:
        return await _from_bearer(request, header)
    raw = request.cookies.get(sessions.COOKIE)
    if raw:
        principal = await _from_session(request, raw)
        if principal is not None:
            return principal
    raise Unauthorized("log in, or send an API token: Authorization: Bearer <token>")


def login_url(request: web.Request) -> str:
    if request.method == "GET" and request.path != "/":
        return "/login?" + urlencode({"next": request.path_qs})
    return "/login"


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method == "OPTIONS":
        return await handler(request)
    is_public, allowed = _handler_marks(request)
    if is_public or request.match_info.http_exception is not None:
        return await handler(request)
    try:
        principal = await authenticate(request)
    except Unauthorized:
        if pages.wants_page(request):
            raise web.HTTPSeeOther(login_url(request)) from None
        raise
    except csrf.CsrfFailed as err:
        if pages.wants_page(request):
            return pages.render_error(request, 403, "Form expired", err.message)
        raise
    request[principal_key] = principal
    if principal.role not in allowed:
        message = f"role {principal.role.value!r} may not use {request.path}"
        if pages.wants_page(request):
            return pages.render_error(request, 403, "Not allowed", message)
        return error_response(403, "forbidden", message)
    return await handler(request)
