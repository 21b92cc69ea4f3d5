"""A webhook consumer: answers from a script of statuses and keeps every delivery it got."""

from __future__ import annotations

from collections import deque

from aiohttp import web

from .server import FakeServer, Recorded, hang_forever


class FakeWebhookReceiver(FakeServer):
    """POST /hook answers the scripted statuses in order, then 200; ``hang`` never answers."""

    def __init__(self) -> None:
        super().__init__()
        self.script: deque[tuple[int, dict[str, str], str]] = deque()
        self.hang = False
        self.redirect_hits = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/hook", self._hook)
        app.router.add_route("*", "/elsewhere", self._elsewhere)

    @property
    def hook_url(self) -> str:
        return f"{self.url}/hook"

    def answer(self, *statuses: int, headers: dict[str, str] | None = None, text: str = "") -> None:
        for status in statuses:
            self.script.append((status, headers or {}, text))

    @property
    def deliveries(self) -> list[Recorded]:
        return [r for r in self.requests if r.path == "/hook"]

    async def _hook(self, request: web.Request) -> web.StreamResponse:
        if self.hang:
            await hang_forever()
        status, headers, text = self.script.popleft() if self.script else (200, {}, "")
        if 300 <= status < 400:
            headers = {"Location": f"{self.url}/elsewhere", **headers}
        return web.Response(status=status, headers=headers, text=text)

    async def _elsewhere(self, request: web.Request) -> web.StreamResponse:
        self.redirect_hits += 1
        return web.Response(status=200)
