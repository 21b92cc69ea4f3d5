"""The console in real headless Chromium, fed by a recorded Asterisk call replayed over AMI."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import select

from calltracker.db.models import Call
from calltracker.keys import ami_key, operator_hub_key, sessionmaker_key
from calltracker.settings import AmiSettings, Secret, Settings
from tests.admin.conftest import PASSWORD
from tests.admin.live import LiveServer, chromium, live_server
from tests.operator.conftest import (
    BROWSER_UA,
    HOSTILE,
    REFERRER,
    SITE_ORIGIN,
    FakeCall,
    add_operators,
    seed_site,
    wait_for_visit,
)
from tests.telephony.ami_server import AmiReplayServer
from tests.telephony.traces import Trace, TraceBlock, load_trace

# The recorded call: DID 74951234567 from 79161234567 rings 101 at 0.506 s, answered at
# 2.509 s, hung up at 6.012 s (../ami-traces/README.md).
LINKEDID = "1795342603.59"
RING_OFFSET = 0.506
LANDING = (
    "https://shop.example.ru/sofas?utm_source=yandex&utm_medium=cpc"
    f"&utm_campaign={quote(HOSTILE)}&utm_term=sofa"
)


@pytest.fixture(scope="module")
def browsers() -> Iterator[tuple[Any, Any]]:
    """Two browsers, one per operator: each keeps its own login."""
    with chromium() as first, chromium() as second:
        yield first, second


@contextmanager
def replay(trace: Trace, blocks: Sequence[TraceBlock]) -> Iterator[tuple[AmiReplayServer, Any]]:
    """A replaying Asterisk on a loop of its own, holding the call until released."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="ami-replay", daemon=True)
    thread.start()
    server = AmiReplayServer(
        blocks, login_response=trace.login_response.raw, banner=trace.banner, speed=1.0, hold=True
    )
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
        yield server, loop
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@contextmanager
def console_server(
    sqlite_template: Path, tmp_path: Path, blocks: Sequence[TraceBlock] | None = None
) -> Iterator[tuple[LiveServer, AmiReplayServer, Any]]:
    trace = load_trace("answered")
    with replay(trace, trace.stream if blocks is None else blocks) as (ami, ami_loop):
        db = tmp_path / "calltracker.db"
        shutil.copy(sqlite_template, db)
        settings = Settings(
            database_url=f"sqlite:///{db}",
            recordings_dir=tmp_path / "rec",
            agi_port=-1,
            ami=AmiSettings(
                host="127.0.0.1",
                port=ami.port,
                secret=Secret("calltracker"),
                reconnect_max_seconds=0.5,
            ),
        )
        with live_server(settings) as live:
            live.run(setup(live.url("")))
            wait_until(
                lambda: ami.logins >= 1 and live.app[ami_key].status().connected, "AMI login"
            )
            yield live, ami, ami_loop


def setup(base_url: str) -> Any:
    async def run(app: web.Application) -> None:
        await seed_site(app)
        await add_operators(app)
        # A visitor from a yandex/cpc ad is shown the DID the recorded call dials.
        async with aiohttp.ClientSession() as http:
            resp = await http.post(
                base_url + "/api/v1/visits",
                json={"site_key": "shop", "url": LANDING, "referrer": REFERRER},
                headers={"User-Agent": BROWSER_UA, "Origin": SITE_ORIGIN},
            )
            body = await resp.json()
        assert body["number"] == "+74951234567", body
        await wait_for_visit(app, body["visit_id"])

    return run


def wait_until(predicate: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def release(ami: AmiReplayServer, loop: Any) -> float:
    """Start the recorded call now; returns when (monotonic) it was let go."""
    at = time.monotonic()
    loop.call_soon_threadsafe(ami.release, time.time())
    return at


def open_console(driver: Any, live: LiveServer, username: str) -> None:
    driver.delete_all_cookies()
    driver.get(live.url("/login?next=/operator"))
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()
    wait_live(driver)


def wait_live(driver: Any) -> None:
    WebDriverWait(driver, 10, poll_frequency=0.05).until(
        lambda d: d.find_element(By.ID, "console-status").get_attribute("data-state") == "live"
    )


def card_el(driver: Any) -> Any:
    found = driver.find_elements(By.CSS_SELECTOR, f"#cards .call-card[data-id='{LINKEDID}']")
    return found[0] if found else None


def card_text(driver: Any, selector: str) -> str:
    return str(card_el(driver).find_element(By.CSS_SELECTOR, selector).text)


def wait_card(driver: Any, predicate: Any, timeout: float = 10.0) -> Any:
    def check(d: Any) -> Any:
        el = card_el(d)
        return el if el is not None and predicate(el) else False

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(check)


def assert_no_alert(driver: Any) -> None:
    try:
        text = driver.switch_to.alert.text
    except NoAlertPresentException:
        return
    pytest.fail(f"a script from visitor data ran on the page: {text!r}")


def test_the_ringing_operator_sees_where_the_caller_came_from_until_the_hangup(
    browsers: tuple[Any, Any], sqlite_template: Path, tmp_path: Path
) -> None:
    op101, op102 = browsers
    with console_server(sqlite_template, tmp_path) as (live, ami, ami_loop):
        open_console(op101, live, "op101")
        open_console(op102, live, "op102")
        released = release(ami, ami_loop)
        wait_card(op101, lambda el: el.find_element(By.CSS_SELECTOR, ".source").text == "yandex")
        shown = time.monotonic() - released - RING_OFFSET
        assert shown < 1.0, f"the card came {shown:.2f} s after the phone rang"
        assert card_text(op101, ".medium") == "cpc"
        assert card_text(op101, ".caller") == "+79161234567"
        assert card_text(op101, ".attribution") == "exact"
        assert card_text(op101, ".keyword") == "sofa"
        # Visitor-sent values are text: the campaign's markup shows as written, never runs.
        assert card_text(op101, ".campaign") == HOSTILE
        assert card_text(op101, ".landing") == LANDING
        assert card_text(op101, ".referrer") == REFERRER
        assert card_text(op101, ".visit-time")
        assert op101.find_elements(By.CSS_SELECTOR, "#cards img") == []

        wait_card(op101, lambda el: el.get_attribute("data-state") == "ended")

        async def talk_seconds(app: web.Application) -> int:
            async with app[sessionmaker_key]() as session:
                talk = await session.scalar(
                    select(Call.talk_seconds).where(Call.linkedid == LINKEDID)
                )
            return int(talk or 0)

        talk = live.run(talk_seconds)
        assert talk >= 3
        assert card_text(op101, ".state") == "answered"
        assert card_text(op101, ".talk-time") == f"0:{talk:02d}"
        assert_no_alert(op101)
        # 102's phone never rang: its console, connected all along, shows nothing.
        assert op102.find_element(By.ID, "console-status").get_attribute("data-state") == "live"
        assert op102.find_elements(By.CSS_SELECTOR, "#cards .call-card") == []


def ringing_forever(trace: Trace) -> list[TraceBlock]:
    """The recorded call up to the operator's answer: it rings and stays in progress."""
    stream = list(trace.stream)
    answer = next(
        i for i, b in enumerate(stream) if b.event == "DialEnd" and "Channel" in b.headers
    )
    return stream[:answer]


def test_a_reloaded_console_shows_the_call_still_ringing(
    browsers: tuple[Any, Any], sqlite_template: Path, tmp_path: Path
) -> None:
    driver, _ = browsers
    blocks = ringing_forever(load_trace("answered"))
    with console_server(sqlite_template, tmp_path, blocks) as (live, ami, ami_loop):
        open_console(driver, live, "op101")
        release(ami, ami_loop)
        wait_card(driver, lambda el: el.get_attribute("data-state") == "ringing")
        driver.refresh()
        wait_live(driver)
        # A fresh page: the card can only have come from the server again.
        card = wait_card(driver, lambda el: el.get_attribute("data-state") == "ringing")
        assert card.find_element(By.CSS_SELECTOR, ".source").text == "yandex"


def test_a_dropped_socket_reconnects_by_itself_and_catches_up(
    browsers: tuple[Any, Any], sqlite_template: Path, tmp_path: Path
) -> None:
    driver, _ = browsers
    blocks = ringing_forever(load_trace("answered"))
    with console_server(sqlite_template, tmp_path, blocks) as (live, ami, ami_loop):
        open_console(driver, live, "op101")
        release(ami, ami_loop)
        wait_card(driver, lambda el: el.get_attribute("data-state") == "ringing")
        driver.execute_script("window.ctSamePage = 42;")

        async def drop_then_answer(app: web.Application) -> int:
            hub = app[operator_hub_key]
            before = hub.connections
            hub.disconnect_all()  # the consoles are unsubscribed at once, their sockets close
            assert hub.consoles == 0
            # Answered while no console listens: only a reconnect can bring this news.
            await FakeCall(app, linkedid=LINKEDID).answer("101")
            return before

        before = live.run(drop_then_answer)
        card = wait_card(driver, lambda el: el.get_attribute("data-state") == "answered")
        assert card.find_element(By.CSS_SELECTOR, ".state").text == "answered by 101"
        assert driver.execute_script("return window.ctSamePage;") == 42  # not a page reload
        assert live.run(_connections) > before
        wait_live(driver)


async def _connections(app: web.Application) -> int:
    return app[operator_hub_key].connections
