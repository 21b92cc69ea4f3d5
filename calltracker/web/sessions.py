"""The login session's cookie, and the session behind a request (accounts/sessions.py)."""

from __future__ import annotations

from aiohttp import web

from calltracker.accounts.sessions import MAX_AGE, SessionInfo
from calltracker.keys import current_session_key, settings_key

COOKIE = "ct_session"


def current_session(request: web.Request) -> SessionInfo | None:
    """The login session behind the request; None for bearer tokens and anonymous calls."""
    return request[current_session_key] if current_session_key in request else None


def cookie_is_secure(request: web.Request) -> bool:
    # Behind a TLS-terminating proxy the request itself is plain HTTP; public_url says https.
    return request.secure or request.app[settings_key].public_url.startswith("https://")


def set_session_cookie(request: web.Request, response: web.StreamResponse, raw: str) -> None:
    response.set_cookie(
        COOKIE,
        raw,
        max_age=int(MAX_AGE.total_seconds()),
        path="/",
        httponly=True,
        secure=cookie_is_secure(request),
        # Lax: links from mail or chat still open the console logged in; cross-site POSTs
        # carry no cookie (and would fail the CSRF check anyway).
        samesite="Lax",
    )


def clear_session_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path="/")
