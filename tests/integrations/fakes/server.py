"""The shared machinery of the fakes: start on port 0, record requests, go down and come back."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)


@dataclass
class _Failure:
    status: int
    body: Any
    headers: dict[str, str]


class FakeServer:
    """Base class: subclasses add routes in ``routes`` and keep their state as attributes."""

    def __init__(self) -> None:
        self.port = 0
        self.requests: list[Recorded] = []
        self._runner: web.AppRunner | None = None
        self._failures: deque[_Failure] = deque()
        self._fail_until = 0.0
        self._fail_for: _Failure | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._record])
        self.routes(app)
        # No access log: it would print query strings, and secrets ride in some of them (GA4).
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = runner.addresses[0][1]
        self._runner = runner

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def down(self) -> None:
        """Stop listening and drop open connections: clients now get connection refused."""
        await self.close()

    async def up(self) -> None:
        """Listen again on the same port, with the state kept."""
        await self.start()

    def fail_next(
        self, count: int, status: int, body: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        """Answer the next ``count`` requests with this status and (JSON or text) body."""
        for _ in range(count):
            self._failures.append(_Failure(status, body, headers or {}))

    def fail_for(
        self, seconds: float, status: int, body: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        """Answer every request with this status for ``seconds``."""
        self._fail_until = time.monotonic() + seconds
        self._fail_for = _Failure(status, body, headers or {})

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            Recorded(request.method, request.path, dict(request.query), dict(request.headers), body)
        )
        failure = None
        if self._failures:
            failure = self._failures.popleft()
        elif self._fail_for is not None and time.monotonic() < self._fail_until:
            failure = self._fail_for
        if failure is not None:
            return _respond(failure)
        return await handler(request)


def _respond(failure: _Failure) -> web.Response:
    if failure.body is None or isinstance(failure.body, str):
        return web.Response(status=failure.status, text=failure.body or "", headers=failure.headers)
    return web.json_response(failure.body, status=failure.status, headers=failure.headers)


async def hang_forever() -> None:
    await asyncio.Event().wait()
