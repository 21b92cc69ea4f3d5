"""The console's doors: login, logout, the landing redirect, and the CSS/JS the login page needs."""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from calltracker.accounts import sessions as stored_sessions
from calltracker.accounts import users
from calltracker.accounts.roles import Role
from calltracker.keys import login_throttle_key, principal_key, sessionmaker_key
from calltracker.web import csrf, pages, sessions
from calltracker.web.auth import public, roles
from calltracker.web.client_address import client_ip

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_TYPES = {".css": "text/css", ".js": "application/javascript"}


def safe_next(raw: str) -> str:
    """Only a local path: an open redirect would make the login page a phishing aid."""
    if raw.startswith("/") and not raw.startswith(("//", "/\\")) and "\n" not in raw:
        return raw
    return "/"


def _login_page(
    request: web.Request, *, error: str = "", username: str = "", status: int = 200
) -> web.Response:
    token = csrf.login_token(request)
    response = pages.render(
        request,
        "login.html",
        {
            "error": error,
            "username": username,
            "login_csrf": token,
            "next": safe_next(request.query.get("next", "/")),
        },
        status=status,
    )
    csrf.set_login_cookie(request, response, token)
    return response


@public
async def login_form(request: web.Request) -> web.Response:
    return _login_page(request)


@public
async def login(request: web.Request) -> web.Response:
    form = await request.post()
    username = pages.form_text(form, "username")
    try:
        await csrf.check_login(request)
    except csrf.CsrfFailed as err:
        return _login_page(request, error=err.message, username=username, status=403)
    throttle = request.app[login_throttle_key]
    address = client_ip(request)
    wait = throttle.retry_after(username, address)
    if wait:
        # Refused before the password is looked at, so guessing on gains nothing.
        log.warning("event=login_throttled username=%r address=%s", username, address)
        minutes = -(-wait // 60)
        response = _login_page(
            request,
            error=f"Too many failed sign-ins. Try again in {minutes} min.",
            username=username,
            status=429,
        )
        response.headers["Retry-After"] = str(wait)
        return response
    password = form.get("password")
    async with request.app[sessionmaker_key].begin() as session:
        user = await users.authenticate(
            session, username, password if isinstance(password, str) else ""
        )
        raw = await stored_sessions.start_session(session, user) if user is not None else None
    if raw is None:
        throttle.failed(username, address)
        log.info("event=login_failed username=%r address=%s", username, address)
        return _login_page(
            request, error="Wrong username or password.", username=username, status=401
        )
    throttle.succeeded(username)
    old = request.cookies.get(sessions.COOKIE)
    if old:
        async with request.app[sessionmaker_key].begin() as session:
            await stored_sessions.end_session(session, old)
    response = web.HTTPSeeOther(safe_next(pages.form_text(form, "next", "/")))
    sessions.set_session_cookie(request, response, raw)
    raise response


@roles(Role.MARKETER, Role.OPERATOR)
async def logout(request: web.Request) -> web.Response:
    raw = request.cookies.get(sessions.COOKIE)
    if raw:
        async with request.app[sessionmaker_key].begin() as session:
            await stored_sessions.end_session(session, raw)
    response = web.HTTPSeeOther("/login")
    sessions.clear_session_cookie(response)
    raise response


@roles(Role.MARKETER, Role.OPERATOR)
async def home(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther(pages.landing_path(request, request[principal_key].role))


@public
async def static_file(request: web.Request) -> web.Response:
    """Only files with a known type, only from web/static/ itself."""
    name = request.match_info["name"]
    path = (STATIC_DIR / name).resolve()
    if path.parent != STATIC_DIR or path.suffix not in STATIC_TYPES or not path.is_file():
        raise web.HTTPNotFound()
    return web.Response(
        body=path.read_bytes(),
        content_type=STATIC_TYPES[path.suffix],
        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
    )
