"""Who is asking: the address rate limits and sign-in lockouts count against."""

from __future__ import annotations

from aiohttp import web

from calltracker.keys import settings_key


def client_ip(request: web.Request) -> str:
    """The client's address; the proxy's first X-Forwarded-For entry when it is trusted."""
    if request.app[settings_key].trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded:
            return forwarded.split(",", 1)[0].strip()
    return request.remote or "unknown"
