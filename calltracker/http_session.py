"""The one outgoing HTTP client session every adapter shares (connection pooling, one close)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from calltracker.keys import http_key

USER_AGENT = "calltracker/0.1"


async def http_ctx(app: web.Application) -> AsyncIterator[None]:
    # Adapters pass their own per-request timeouts; this total is only a backstop.
    session = aiohttp.ClientSession(
        headers={"User-Agent": USER_AGENT}, timeout=aiohttp.ClientTimeout(total=300)
    )
    app[http_key] = session
    yield
    await session.close()
