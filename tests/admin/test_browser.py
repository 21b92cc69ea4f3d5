"""The console in real headless Chromium: visitor data shows as text, static numbers work."""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait
from sqlalchemy import select

from calltracker.db.models import Call, Visit
from calltracker.keys import sessionmaker_key
from calltracker.settings import AmiSettings, Secret, Settings
from tests.admin.conftest import PASSWORD, add_people
from tests.admin.live import LiveServer, chromium, live_server
from tests.conftest import seed
from tests.telephony.ami_server import AmiReplayServer
from tests.telephony.traces import load_trace

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


@pytest.fixture
def server(sqlite_template: Path, tmp_path: Path) -> Iterator[LiveServer]:
    # Embedded mode only: the browser checks rendering, which both backends share.
    db = tmp_path / "calltracker.db"
    shutil.copy(sqlite_template, db)
    settings = Settings(database_url=f"sqlite:///{db}", recordings_dir=tmp_path / "rec")
    with live_server(settings) as live:

        async def setup(app: web.Application) -> None:
            await seed(app)
            await add_people(app)

        live.run(setup)
        yield live


def log_in(driver: Any, server: LiveServer, username: str) -> None:
    driver.delete_all_cookies()
    driver.get(server.url("/login"))
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()
    # A click starts the navigation but does not wait for it: wait for the signed-in page.
    assert wait_for(driver, ".who a").text == username


def wait_for(driver: Any, css: str) -> Any:
    """The first element matching css once the page that shows it has loaded."""
    return WebDriverWait(driver, 10, poll_frequency=0.05).until(
        lambda d: (found := d.find_elements(By.CSS_SELECTOR, css)) and found[0]
    )


def assert_no_alert(driver: Any) -> None:
    try:
        text = driver.switch_to.alert.text
    except NoAlertPresentException:
        return
    pytest.fail(f"a script ran on the page and opened an alert: {text!r}")


def test_a_visitors_utm_source_shows_as_text_in_the_calls_list(
    browser: Any, server: LiveServer
) -> None:
    async def add_hostile_call(app: web.Application) -> None:
        async with app[sessionmaker_key].begin() as session:
            session.add(
                Visit(
                    id="XSSVISIT000000000000AA",
                    site_id=1,
                    visitor_key="hostile",
                    started_at=datetime(2026, 11, 20, 9, 0, tzinfo=UTC),
                    url="https://shop.example.ru/?utm_source=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E",
                    source=XSS,
                    medium="cpc",
                    touch_source=XSS,
                    touch_medium="cpc",
                    number="+74951230001",
                    number_kind="pool",
                )
            )
            await session.flush()
            session.add(
                Call(
                    linkedid="xss-1",
                    site_id=1,
                    tracking_number="+74951230001",
                    caller="+79161234567",
                    started_at=datetime(2026, 11, 20, 9, 1, tzinfo=UTC),
                    status="answered",
                    visit_id="XSSVISIT000000000000AA",
                    source=XSS,
                    medium="cpc",
                )
            )

    server.run(add_hostile_call)
    log_in(browser, server, "marketer")
    browser.get(server.url("/calls"))
    assert_no_alert(browser)
    row = browser.find_element(By.CSS_SELECTOR, "#calls tr.call")
    assert row.find_element(By.CSS_SELECTOR, ".source").text == XSS
    assert row.find_element(By.CSS_SELECTOR, ".touch-source").text == XSS
    assert browser.find_elements(By.CSS_SELECTOR, "#calls img") == []
    assert_no_alert(browser)


@pytest.fixture
def server_with_ami(sqlite_template: Path, tmp_path: Path) -> Iterator[tuple[LiveServer, Any]]:
    """The console with its AMI listener on a replay of the answered trace, held until the
    test releases it, as a call to 74957770001 from 79035550101."""
    db = tmp_path / "calltracker.db"
    shutil.copy(sqlite_template, db)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    replay = AmiReplayServer.from_trace(
        load_trace("answered"),
        hold=True,
        rewrite={"74951234567": "74957770001", "79161234567": "79035550101"},
    )
    settings = Settings(
        database_url=f"sqlite:///{db}",
        recordings_dir=tmp_path / "rec",
        ami=AmiSettings(
            host="127.0.0.1", port=port, secret=Secret("calltracker"), reconnect_max_seconds=0.2
        ),
    )
    with live_server(settings) as live:

        async def setup(app: web.Application) -> None:
            await replay.start(port)  # in the server's loop; the listener retries until then
            await seed(app)
            await add_people(app)

        live.run(setup)
        try:
            yield live, replay
        finally:

            async def stop(app: web.Application) -> None:
                await replay.close()

            live.run(stop)


def test_a_call_to_a_billboard_number_added_on_the_page_shows_its_label(
    browser: Any, server_with_ami: tuple[LiveServer, Any]
) -> None:
    server, replay = server_with_ami
    log_in(browser, server, "admin")
    browser.get(server.url("/admin/static-numbers"))
    form = browser.find_element(By.ID, "static-form")
    Select(form.find_element(By.NAME, "site")).select_by_value("shop")
    form.find_element(By.NAME, "number").send_keys("+7 495 777-00-01")
    form.find_element(By.NAME, "source").send_keys("billboard")
    medium = form.find_element(By.NAME, "medium")
    medium.clear()
    medium.send_keys("outdoor")
    form.find_element(By.NAME, "campaign").send_keys("tverskaya-2026")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    assert "Static number added." in wait_for(browser, ".alert.ok").text

    # The recorded Asterisk call, to the number just added, through the real AMI listener.
    async def ring(app: web.Application) -> None:
        replay.release(epoch=time.time())

    async def ended(app: web.Application) -> Call | None:
        async with app[sessionmaker_key]() as session:
            call: Call | None = await session.scalar(
                select(Call).where(
                    Call.tracking_number == "+74957770001", Call.ended_at.is_not(None)
                )
            )
            return call

    server.run(ring)
    deadline = time.monotonic() + 10
    while (call := server.run(ended)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert call is not None, "the replayed call was not recorded"
    assert (call.linkedid, call.attribution) == ("1795342603.59", "static")
    browser.get(server.url("/calls?number=%2B74957770001"))
    row = browser.find_element(By.CSS_SELECTOR, "#calls tr.call")
    assert "+79035550101" in row.text
    label = [row.find_element(By.CSS_SELECTOR, c).text for c in (".source", ".medium", ".campaign")]
    assert label == ["billboard", "outdoor", "tverskaya-2026"]
