"""The real-Asterisk suite: one Asterisk and three SIPp phones per session, calltracker per test.

It runs whenever an Asterisk and SIPp are found (pbx.locate, sipp.sipp_binary). Without
them its tests are skipped, and the run's last lines say so and how to get them; under
CI=true they must run, so a missing piece fails the run instead.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from calltracker.app import create_app
from calltracker.db.auth_models import User
from calltracker.keys import ami_key, sessionmaker_key
from calltracker.settings import AmiSettings, Secret, Settings
from tests.admin.conftest import CSRF_INPUT, PASSWORD, password_hash
from tests.conftest import Seeded, seed

from .pbx import AsteriskUnavailable, Pbx, Ports, locate
from .sipp import EXTENSIONS, HOW_TO_GET, CallPlan, Phones, TrunkCall, sipp_binary

Client = TestClient[Any, Any]
HERE = Path(__file__).resolve().parent
MARKER = "asterisk"
RUN_HINT = (
    "to run it: `bash scripts/ensure-test-services.sh` (as root it installs SIPp and the "
    "Asterisk's runtime packages), keep shared/asterisk beside the checkout or set "
    "CALLTRACKER_TEST_ASTERISK, then `make test PYTEST_ARGS='tests/asterisk'`"
)
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"
ORIGIN = "https://shop.example.ru"
OPERATORS = {f"op{ext}": ext for ext in EXTENSIONS}
# pjsip.conf's phone passwords, as shipped: the phones register with them.
PHONE_PASSWORDS = {ext: f"change-me-{ext}" for ext in EXTENSIONS}

_not_run: list[str] = []


def on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(MARKER)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if _not_run:
        terminalreporter.section("real-Asterisk suite (tests/asterisk) NOT RUN", sep="!")
        terminalreporter.write_line(f"why: {_not_run[0]}")
        terminalreporter.write_line(RUN_HINT)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed call's report also shows what the provider got and what the PBX logged."""
    report = yield
    lab = getattr(item, "funcargs", {}).get("lab")
    if report.failed and call.when == "call" and isinstance(lab, Lab):
        for trunk in lab.trunk_calls:
            report.sections.append(
                (f"provider's side of {trunk.plan.did}", f"responses: {trunk.responses()}")
            )
        report.sections.append(("PBX messages.log", lab.pbx.log_tail(15)))
    return report


# -- the PBX and the phones, once per session --------------------------------------------------


@dataclass
class Lab:
    pbx: Pbx
    phones: Phones
    workdir: Path
    calls: int = 0  # serial numbers for callers and scenario files
    trunk_calls: list[TrunkCall] = field(default_factory=list)

    def next_serial(self) -> int:
        self.calls += 1
        return self.calls

    def call(self, plan: CallPlan) -> TrunkCall:
        trunk = TrunkCall(plan, self.pbx.ports.sip, self.workdir, f"{self.calls:03d}-{plan.did}")
        self.trunk_calls.append(trunk)
        return trunk


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    try:
        build = locate()
        if sipp_binary() is None:
            raise AsteriskUnavailable(f"no SIPp: {HOW_TO_GET}")
    except AsteriskUnavailable as err:
        if on_ci():
            pytest.fail(f"CI=true and the real-Asterisk suite cannot run: {err}")
        _not_run.append(str(err))
        pytest.skip(f"real-Asterisk suite not run: {err}")
    workdir = tmp_path_factory.mktemp("asterisk")
    pbx = Pbx(build, workdir, Ports.pick(), secrets.token_hex(16))
    pbx.start()
    phones = Phones(pbx.ports.sip, PHONE_PASSWORDS, workdir)
    try:
        pbx.cli("module load cdr_custom.so", check=False)  # noloaded by the tree's base
        phones.start()
        wait_registered(pbx)
        yield Lab(pbx, phones, workdir)
    finally:
        phones.stop()
        pbx.stop()


def wait_registered(pbx: Pbx, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        out = pbx.cli("pjsip show contacts")
        # "Contact:  101/sip:101@127.0.0.1:40001  a1b2c3d4e5 Avail  0.3": registered, and
        # answering the PBX's qualify (an unreachable contact is not dialled).
        phones = {
            ext: [line for line in out.splitlines() if f" {ext}/sip:{ext}@" in line]
            for ext in EXTENSIONS
        }
        if all(len(lines) == 1 and " Avail " in lines[0] for lines in phones.values()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the phones did not register:\n{out}\n{pbx.log_tail()}")
        time.sleep(0.2)


@pytest.fixture
def pbx(lab: Lab) -> Iterator[Pbx]:
    """The session's PBX, checked idle before and after each test."""
    assert lab.phones.alive(), "a SIPp phone died"
    wait_idle(lab.pbx)
    yield lab.pbx
    for trunk in lab.trunk_calls:
        trunk.kill()
    lab.trunk_calls.clear()
    if lab.pbx.channels():
        # A failed test may leave its call up (its SIPp gone): clear it for the next test.
        lab.pbx.cli("channel request hangup all")
    wait_idle(lab.pbx)


def wait_idle(pbx: Pbx, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while pbx.channels():
        if time.monotonic() > deadline:
            raise AssertionError(f"channels left over: {pbx.channels()}")
        time.sleep(0.2)


# -- calltracker ----------------------------------------------------------------------------------


def tracker_settings(lab: Lab, database_url: str, tmp_path: Path, **ami: Any) -> Settings:
    """calltracker as a user sets it up for this PBX: AMI, FastAGI on the dialplan's port."""
    pbx = lab.pbx
    ami.setdefault("port", pbx.ports.ami)
    ami.setdefault("reconnect_max_seconds", 0.5)
    return Settings(
        database_url=database_url,
        recordings_dir=tmp_path / "recordings",
        visit_rate_per_minute=100_000,
        agi_host="127.0.0.1",
        agi_port=pbx.ports.agi,
        ami=AmiSettings(host="127.0.0.1", secret=Secret(pbx.ami_secret), **ami),
    )


@dataclass
class Tracker:
    """A running calltracker and what a user reads from it."""

    client: Client
    seeded: Seeded

    @property
    def app(self) -> Any:
        return self.client.app

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.seeded.admin_token}"}

    async def visit(self, campaign: str, keyword: str = "sofa") -> dict[str, Any]:
        """A visitor from a Yandex ad; the answer names the number the widget shows them."""
        url = (
            f"{ORIGIN}/?utm_source=yandex&utm_medium=cpc&utm_campaign={campaign}&utm_term={keyword}"
        )
        resp = await self.client.post(
            "/api/v1/visits",
            json={"site_key": "shop", "url": url},
            headers={"User-Agent": BROWSER_UA, "Origin": ORIGIN},
        )
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        assert body["kind"] == "pool", body
        return body

    async def calls(self) -> list[dict[str, Any]]:
        """The calls page's data: GET /api/v1/calls as an admin reads it."""
        resp = await self.client.get("/api/v1/calls", headers=self.admin)
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        return list(body["calls"])

    async def ended_calls(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            calls = await self.calls()
            done = [c for c in calls if c["status"] != "ringing"]
            if len(done) >= count:
                return sorted(done, key=lambda c: c["started_at"])
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} ended calls expected; the calls page has {calls}")
            await asyncio.sleep(0.2)

    async def wait_answered(self, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            calls = [c for c in await self.calls() if c["answered_at"]]
            if calls:
                return calls[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"no answered call; the page has {await self.calls()}")
            await asyncio.sleep(0.1)

    async def recording(self, call: dict[str, Any]) -> bytes:
        assert call["recording_url"], call
        resp = await self.client.get(call["recording_url"], headers=self.admin)
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "audio/mpeg"
        return await resp.read()

    async def connected(self, connects: int = 1, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            status = self.app[ami_key].status()
            if status.connected and status.connects >= connects:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"AMI not connected: {status}")
            await asyncio.sleep(0.05)

    async def console(self, username: str) -> Console:
        """An operator's console: logged in through the form, its websocket open."""
        return await Console.open(str(self.client.make_url("/")), username)


async def add_operators(app: Any) -> None:
    async with app[sessionmaker_key].begin() as session:
        for name, ext in OPERATORS.items():
            session.add(
                User(username=name, role="operator", password_hash=password_hash(), extension=ext)
            )


async def start_tracker(aiohttp_client: Any, settings: Settings, *, fresh: bool = True) -> Tracker:
    client = await aiohttp_client(create_app(settings))
    if fresh:
        seeded = await seed(client.app)
        await add_operators(client.app)
    else:
        seeded = await reseeded(client)
    return Tracker(client, seeded)


async def reseeded(client: Client) -> Seeded:
    """The Seeded of a database seeded by an earlier app: a new admin token for this one."""
    from calltracker.accounts import tokens
    from calltracker.catalog import sites

    async with client.app[sessionmaker_key].begin() as session:
        site = await sites.get_site(session, "shop")
        _, admin = await tokens.create_token(session, name="again", role="admin")
    return Seeded("shop", site.id, 0, "", (), "", admin, "")


@pytest.fixture
async def tracker(
    lab: Lab, pbx: Pbx, aiohttp_client: Any, sqlite_url: str, tmp_path: Path
) -> AsyncIterator[Tracker]:
    """calltracker in embedded mode (SQLite, in-process pool), connected to the PBX."""
    found = await start_tracker(aiohttp_client, tracker_settings(lab, sqlite_url, tmp_path))
    await found.connected()
    yield found


# -- the operator console -------------------------------------------------------------------


class Console:
    """A logged-in operator's websocket; every card it is sent, in order."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._http = http
        self._ws = ws
        self.cards: list[dict[str, Any]] = []
        self.hello: dict[str, Any] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, base: str, username: str) -> Console:
        # unsafe: the jar keeps cookies of an IP address (the test server is 127.0.0.1).
        http = aiohttp.ClientSession(base, cookie_jar=aiohttp.CookieJar(unsafe=True))
        page = await http.get("/login")
        token = CSRF_INPUT.search(await page.text())
        assert token is not None
        resp = await http.post(
            "/login",
            data={"username": username, "password": PASSWORD, "csrf_token": token.group(1)},
            allow_redirects=False,
        )
        assert resp.status == 303, await resp.text()
        ws = await http.ws_connect("/operator/ws", origin=base.rstrip("/"))
        console = cls(http, ws)
        await console._wait(lambda: bool(console.hello), "the hello", 10)
        return console

    async def _read(self) -> None:
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = msg.json()
            if data["type"] == "hello":
                self.hello = data
                self.cards.extend(data["cards"])
            elif data["type"] == "card":
                self.cards.append(data["card"])

    def states(self, caller: str) -> list[str]:
        """The states its card for this caller went through, repeats folded."""
        seen: list[str] = []
        for card in self.cards:
            if card["caller"].endswith(caller) and (not seen or seen[-1] != card["state"]):
                seen.append(card["state"])
        return seen

    def last(self, caller: str) -> dict[str, Any]:
        cards = [c for c in self.cards if c["caller"].endswith(caller)]
        assert cards, f"no card for {caller}: {self.cards}"
        return cards[-1]

    async def _wait(self, check: Any, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if self._reader.done() or time.monotonic() > deadline:
                raise AssertionError(f"console: no {what}; cards {self.cards}")
            await asyncio.sleep(0.05)

    async def until_state(self, caller: str, state: str, timeout: float = 20.0) -> dict[str, Any]:
        await self._wait(lambda: state in self.states(caller), f"{state} card", timeout)
        return self.last(caller)

    async def close(self) -> None:
        await self._ws.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self._http.close()


@pytest.fixture
async def consoles() -> AsyncIterator[list[Console]]:
    """Consoles opened by a test, closed after it."""
    opened: list[Console] = []
    yield opened
    for console in opened:
        await console.close()
