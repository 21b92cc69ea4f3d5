"""CSRF: a state-changing request made with a session cookie must echo the session's token."""

# Forms send it as the hidden field `csrf_token`, scripts as the `X-CSRF-Token` header.
# Bearer-token requests are exempt: a browser never attaches a token on its own. The login
# form, which has no session yet, uses a double-submit cookie instead.

from __future__ import annotations

import hmac
import secrets

from aiohttp import web

from calltracker.errors import Forbidden
from calltracker.web.sessions import cookie_is_secure

FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
LOGIN_COOKIE = "ct_login_csrf"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


class CsrfFailed(Forbidden):
    code = "csrf_failed"


def new_token() -> str:
    return secrets.token_urlsafe(32)


async def submitted_token(request: web.Request) -> str:
    header = request.headers.get(HEADER)
    if header:
        return header
    if request.content_type in FORM_TYPES:
        # aiohttp caches the parsed form, so the handler's own request.post() reads it again.
        value = (await request.post()).get(FIELD)
        return value if isinstance(value, str) else ""
    return ""


def tokens_match(given: str, expected: str) -> bool:
    return bool(given) and bool(expected) and hmac.compare_digest(given, expected)


async def check(request: web.Request, expected: str) -> None:
    if request.method in UNSAFE_METHODS and not tokens_match(
        await submitted_token(request), expected
    ):
        raise CsrfFailed(
            "the form is missing its CSRF token or it does not match this session; "
            "reload the page and try again"
        )


def login_token(request: web.Request) -> str:
    """The login form's token: the one its cookie already holds, or a new one."""
    return request.cookies.get(LOGIN_COOKIE) or new_token()


def set_login_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        path="/login",
        httponly=True,
        secure=cookie_is_secure(request),
        samesite="Strict",
    )


async def check_login(request: web.Request) -> None:
    """A login post must carry the token its form was served with (login CSRF)."""
    if not tokens_match(await submitted_token(request), request.cookies.get(LOGIN_COOKIE, "")):
        raise CsrfFailed("the login form expired; reload the page and try again")
