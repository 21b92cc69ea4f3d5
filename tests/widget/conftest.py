"""Fixtures for the widget's browser tests: the real server, a site's pages, headless Chromium.

Two servers share an event loop in a thread of their own (Selenium is synchronous):

- the site: the test pages on http://localhost:P1, as a customer's website serves them;
- calltracker: `create_app(settings)` on http://127.0.0.1:P2, embedded (SQLite + in-process
  pool), a new database per test copied from a template seeded with real sites. The pages load
  /widget.js from it, so every API call is a real cross-origin request.

What the tests check about the server comes from its database and its pool. A test-only
middleware wrapped around the real app records the requests that reached it (what the widget
sent, and when) and injects the faults a test asks for: a delay, or a status answered in the
app's place. "API down" is a widget loaded from a port that is then closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import StreamReader, web
from aiohttp.typedefs import Handler
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from calltracker.app import create_app
from calltracker.catalog import sites
from calltracker.cli.common import with_session
from calltracker.db.models import Visit, VisitEvent
from calltracker.keys import catalog_key, pools_key, sessionmaker_key
from calltracker.settings import Settings
from calltracker.web import widget_js
from number_pool import LeaseRecord
from tests.conftest import run_blocking

PAGES = Path(__file__).parent / "pages"
INSTALL_HINT = (
    "the widget's browser tests need Chromium and chromedriver: run `make test` (it installs "
    "them) or `apt-get update && apt-get install -y chromium chromium-driver`"
)
T = TypeVar("T")


# --- the sites in the database ---------------------------------------------------------------


@dataclass(frozen=True)
class SiteSeed:
    key: str
    country: str
    default_number: str  # what the site's own pages show
    pool_numbers: tuple[str, ...]  # handed out in this order to new visitors of a fresh pool


SITES = {
    s.key: s
    for s in (
        SiteSeed("test", "RU", "+74950000000", ("+74951234567", "+74957654321")),
        SiteSeed("shop-us", "US", "+12125550123", ("+12125550199", "+12125550177")),
        SiteSeed("shop-uk", "GB", "+442079460958", ("+442079460111", "+442079460222")),
    )
}
SITE_DOMAINS = ("localhost", "127.0.0.1")
# Long enough that no lease runs out during a test unless the test shortens it.
HOLD_SECONDS = 120


async def seed_sites(session: AsyncSession) -> None:
    for seed in SITES.values():
        site = await sites.create_site(
            session,
            key=seed.key,
            name=seed.key,
            domains=SITE_DOMAINS,
            default_number=seed.default_number,
            country=seed.country,
        )
        pool = await sites.create_pool(session, site, name="main", hold_seconds=HOLD_SECONDS)
        await sites.add_pool_numbers(session, pool, list(seed.pool_numbers))


@pytest.fixture(scope="session")
def db_template(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file with the sites above; each test gets a copy."""
    path = tmp_path_factory.mktemp("widget-db") / "sites.db"
    shutil.copy(sqlite_template, path)
    run_blocking(with_session(Settings(database_url=f"sqlite:///{path}"), seed_sites))
    return path


# --- the servers' event loop -----------------------------------------------------------------


class ServerLoop:
    """An event loop running in a thread; tests hand it coroutines and wait for the result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="widget-servers", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 15) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture(scope="session")
def server_loop() -> Iterator[ServerLoop]:
    loop = ServerLoop()
    try:
        yield loop
    finally:
        loop.close()


# --- what reached the real app, and the faults wrapped around it ------------------------------


@dataclass
class Received:
    """A request as it reached the server: what the widget sent, and when."""

    kind: str  # visit | ping | event | preflight | other
    path: str
    body: Any  # the JSON body, {} when there was none (text when it was not JSON)
    content_type: str
    origin: str | None
    at: float = field(default_factory=time.monotonic)
    status: int | None = None  # the answer's status, once given


@dataclass(frozen=True)
class Fault:
    delay: float = 0.0  # seconds the request waits before it is handled
    status: int | None = None  # answered instead of the app, as a failing server would


ROUTE_KINDS = {
    ("POST", "/api/v1/visits"): "visit",
    ("POST", "/api/v1/visits/{visit_id}/ping"): "ping",
    ("POST", "/api/v1/visits/{visit_id}/events"): "event",
}


def kind_of(request: web.Request) -> str:
    if request.method == "OPTIONS" and request.path.startswith("/api/"):
        return "preflight"
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource is not None else request.path
    return ROUTE_KINDS.get((request.method, canonical), "other")


async def read_keeping_body(request: web.Request) -> tuple[web.Request, bytes]:
    """The request's body, and a copy of the request whose body the app can still read."""
    if not request.body_exists:
        return request, b""
    copy = request.clone()  # shares the body stream, which read() below drains
    body = await request.read()
    stream = StreamReader(request.protocol, 2**16, loop=asyncio.get_running_loop())
    stream.feed_data(body)
    stream.feed_eof()
    # aiohttp has no public way to put a read body back; the app reads request.content.
    copy._payload = stream
    return copy, body


def parse_body(body: bytes) -> Any:
    """The JSON the widget sent; anything else as text, for the test to fail on."""
    try:
        return json.loads(body) if body else {}
    except ValueError:
        return body.decode("utf-8", "replace")


class Traffic:
    """The test-only middleware's state: the requests received and the faults to inject."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._faults: dict[str, Fault] = {}

    def of(self, kind: str) -> list[Received]:
        return [r for r in list(self.received) if r.kind == kind]

    @property
    def visits(self) -> list[Received]:
        return self.of("visit")

    @property
    def pings(self) -> list[Received]:
        return self.of("ping")

    @property
    def events(self) -> list[Received]:
        return self.of("event")

    @property
    def preflights(self) -> list[str]:
        return [r.path for r in self.of("preflight")]

    def delay(self, kind: str, seconds: float) -> None:
        """From now on, requests of this kind wait `seconds` before the app handles them."""
        self._faults[kind] = Fault(delay=seconds)

    def fail(self, kind: str, status: int = 500) -> None:
        """From now on, requests of this kind get `status` and never reach the app."""
        self._faults[kind] = Fault(status=status)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        kind = kind_of(request)
        request, body = await read_keeping_body(request)
        entry = Received(
            kind=kind,
            path=request.path,
            body=parse_body(body),
            content_type=request.content_type,
            origin=request.headers.get("Origin"),
        )
        self.received.append(entry)
        fault = self._faults.get(kind)
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)
        if fault is not None and fault.status is not None:
            response: web.StreamResponse = injected_error(request, fault.status)
        else:
            response = await handler(request)
        entry.status = response.status
        return response


def injected_error(request: web.Request, status: int) -> web.Response:
    """A failure answered with CORS, as the visit API's own error answers are.

    (A 500 from an exception the API does not catch has no CORS header: Chromium then logs
    "blocked by CORS policy" on the site's console, which these tests count as an error.)
    """
    response = web.json_response(
        {"error": "injected", "message": "a fault injected by the test"}, status=status
    )
    origin = request.headers.get("Origin")
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
    return response


# --- the real server -------------------------------------------------------------------------


class Calltracker:
    """`create_app(settings)` listening on 127.0.0.1, with the Traffic middleware around it."""

    def __init__(self, loop: ServerLoop, settings: Settings) -> None:
        self._loop = loop
        self.traffic = Traffic()
        self.app = create_app(settings)
        self.app.middlewares.insert(0, self.traffic.middleware)
        self._runner = web.AppRunner(self.app, shutdown_timeout=2)
        self.port = 0

    def start(self) -> None:
        async def start() -> int:
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", 0).start()
            port: int = self._runner.addresses[0][1]
            return port

        self.port = self._loop.run(start())

    def stop(self) -> None:
        self._loop.run(self._runner.cleanup())

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def widget_url(self) -> str:
        return f"{self.origin}/widget.js"

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run on the server's loop: the app's database engine and pool live there."""
        return self._loop.run(coro)

    # the database

    def visits(self) -> list[Visit]:
        """The visits recorded, oldest first."""

        async def query() -> list[Visit]:
            async with self.app[sessionmaker_key]() as session:
                rows = await session.scalars(select(Visit).order_by(Visit.started_at))
                return list(rows)

        return self.run(query())

    def events(self) -> list[VisitEvent]:
        async def query() -> list[VisitEvent]:
            async with self.app[sessionmaker_key]() as session:
                return list(await session.scalars(select(VisitEvent).order_by(VisitEvent.id)))

        return self.run(query())

    def site_key(self, visit: Visit) -> str:
        return self.app[catalog_key].current.sites_by_id[visit.site_id].key

    def configure_site(
        self, key: str, *, selectors: list[str] | None = None, hold_seconds: int | None = None
    ) -> None:
        """Change a site as an admin would, then reload the catalog as the server does."""

        async def change() -> None:
            async with self.app[sessionmaker_key].begin() as session:
                site = await sites.get_site(session, key)
                if selectors is not None:
                    site.selectors = selectors
                if hold_seconds is not None:
                    for pool in await sites.list_pools(session, site.id):
                        pool.hold_seconds = hold_seconds
            await self.app[catalog_key].refresh()

        self.run(change())

    # the pool

    def lease(self, visit: Visit) -> LeaseRecord:
        """The pool's latest record of the visit's lease."""

        async def query() -> LeaseRecord:
            records = await self.app[pools_key].history(visit.number, 0, time.time() + 86400)
            return [r for r in records if r.visit_id == visit.id][-1]

        return self.run(query())

    def live_leases(self, key: str) -> int:
        """Leases of the site's pool that have not run out."""

        async def query() -> int:
            pool = self.app[catalog_key].current.sites_by_key[key].pool
            assert pool is not None
            return (await self.app[pools_key].stats(pool.pool_id, time.time())).leased

        return self.run(query())


@pytest.fixture
def database_url(db_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "calltracker.db"
    shutil.copy(db_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def api(
    server_loop: ServerLoop, site_server: SitePages, database_url: str, tmp_path: Path
) -> Iterator[Calltracker]:
    """The real server for one test, on a fresh copy of the seeded database."""
    settings = Settings(
        database_url=database_url,
        recordings_dir=tmp_path / "recordings",
        visit_rate_per_minute=100_000,
    )
    server = Calltracker(server_loop, settings)
    server.start()
    site_server.api = server
    try:
        yield server
    finally:
        site_server.api = None
        server.stop()


# --- the site's pages ------------------------------------------------------------------------


class SitePages:
    """A customer's website on http://localhost:port: the test pages with the widget's tag.

    The widget comes from the real server on http://127.0.0.1: another origin.
    """

    def __init__(self) -> None:
        self.api: Calltracker | None = None
        self.port = 0
        self.app = web.Application()
        self.app.router.add_get("/pages/{name}", self.page)
        self.app.router.add_get("/streamed", self.streamed)

    @property
    def site_origin(self) -> str:
        return f"http://localhost:{self.port}"

    def page_url(self, name: str, **query: str) -> str:
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        return f"{self.site_origin}/pages/{name}" + (f"?{qs}" if qs else "")

    def _api(self) -> Calltracker:
        if self.api is None:
            raise web.HTTPServiceUnavailable(text="no calltracker server in this test")
        return self.api

    async def page(self, request: web.Request) -> web.Response:
        """A test page; `{{script}}` becomes the widget's tag, built from the query string."""
        name = request.match_info["name"]
        path = PAGES / name
        if not path.is_file() or path.parent != PAGES:
            raise web.HTTPNotFound()
        q = request.query
        attrs = f' data-site="{q.get("site", "test")}"'
        if "ping" in q:
            attrs += f' data-ping-interval="{q["ping"]}"'
        if "selectors" in q:
            attrs += f' data-ct-selectors="{q["selectors"]}"'
        src = q.get("widget") or self._api().widget_url
        tag = f'<script async src="{src}"{attrs}></script>'
        html = path.read_text(encoding="utf-8").replace("{{script}}", tag)
        return web.Response(text=html, content_type="text/html")

    async def streamed(self, request: web.Request) -> web.StreamResponse:
        """A page that stops in the middle of its number until the widget has asked for one."""
        api = self._api()
        resp = web.StreamResponse(headers={"Content-Type": "text/html; charset=utf-8"})
        await resp.prepare(request)
        # The comment's padding makes the parser go ahead with what it has.
        await resp.write(
            b'<!doctype html><html><head><meta charset="utf-8"><title>Streamed</title></head>'
            + f'<body><script async src="{api.widget_url}" data-site="test"></script>'.encode()
            + b"<!--"
            + b" " * 4096
            + b'--><p id="phone">8 495 000'
        )
        deadline = time.monotonic() + 5
        while not api.traffic.visits and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # for the answer to reach the widget
        await resp.write(
            b"-00-00</p><script>window.numberBeforeTheRest = calltracker.number();</script>"
            b'<p id="after">+7 495 000-00-00</p></body></html>'
        )
        await resp.write_eof()
        return resp


@pytest.fixture(scope="session")
def site_server(server_loop: ServerLoop) -> Iterator[SitePages]:
    pages = SitePages()
    runner = web.AppRunner(pages.app, shutdown_timeout=2)

    async def start() -> int:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port: int = runner.addresses[0][1]
        return port

    pages.port = server_loop.run(start())
    try:
        yield pages
    finally:
        server_loop.run(runner.cleanup())


@pytest.fixture
def refusing_widget_url() -> Iterator[str]:
    """A widget.js URL served to one connection, then the port closes: API calls are refused."""
    body = widget_js.WidgetScript.load().body
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/javascript\r\nConnection: close\r\n"
        f"Cache-Control: no-store\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    port: int = listener.getsockname()[1]

    def serve() -> None:
        with listener, contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data and (chunk := conn.recv(4096)):
                    data += chunk
                conn.sendall(head + body)

    thread = threading.Thread(target=serve, name="widget-once", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}/widget.js"
    thread.join(11)


# --- the browser ---------------------------------------------------------------------------


def find_chromium() -> tuple[str, str]:
    browser = next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p),
        None,
    )
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return browser, driver


@pytest.fixture(scope="session")
def chrome() -> Iterator[Any]:
    """One headless Chromium for the whole widget suite; each test gets a fresh tab."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = find_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with tempfile.TemporaryDirectory(prefix="ct-chrome-") as profile:
        for flag in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
        ):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(driver_path))
        try:
            driver.set_page_load_timeout(15)
            yield driver
        finally:
            driver.quit()


@pytest.fixture
def browser(chrome: Any, site_server: SitePages, api: Calltracker) -> Iterator[Any]:
    """The suite's Chromium in a fresh tab (a fresh sessionStorage), with no cookies or storage."""
    chrome.switch_to.new_window("tab")
    close_other_tabs(chrome)
    chrome.execute_cdp_cmd("Network.clearBrowserCookies", {})
    for origin in (site_server.site_origin, api.origin):
        chrome.execute_cdp_cmd(
            "Storage.clearDataForOrigin",
            {"origin": origin, "storageTypes": "local_storage,cookies"},
        )
    chrome.get_log("browser")  # drop what earlier tests logged
    yield chrome
    errors = script_errors(chrome)
    # Stop every widget before the server stops, or one would ping the next test's port.
    # Closing through CDP does not bring a hidden tab to the front (which would ping).
    close_other_tabs(chrome)
    chrome.get("about:blank")
    assert errors == [], "the page logged script errors"


def close_other_tabs(chrome: Any) -> None:
    current = chrome.current_window_handle
    for target in chrome.execute_cdp_cmd("Target.getTargets", {})["targetInfos"]:
        if target["type"] == "page" and target["targetId"] != current:
            chrome.execute_cdp_cmd("Target.closeTarget", {"targetId": target["targetId"]})


def script_errors(chrome: Any) -> list[str]:
    """Uncaught errors and unhandled rejections logged since the last call.

    Read from the DevTools log, not from window.onerror: a cross-origin script's errors are
    muted for the page, and its unhandled rejections are not reported to it at all.
    """
    return [
        entry["message"]
        for entry in chrome.get_log("browser")
        if entry["level"] == "SEVERE" and entry["source"] != "network"
    ]


def wait_for(condition: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll until `condition()` is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def wait() -> Callable[..., Any]:
    return wait_for
