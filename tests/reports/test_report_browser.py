"""The report page in real headless Chromium: the demo data's table, charts and drill-down."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from calltracker.accounts import users
from calltracker.app import create_app
from calltracker.catalog import sites
from calltracker.db.engine import create_engine, create_sessionmaker
from calltracker.demo import sample as demo
from calltracker.demo import site as demo_site
from calltracker.settings import Settings
from tests.reports.browser import LiveServer, chromium, login_browser

PASSWORD = "marketer password 1"


async def prepare(url: str) -> demo.DemoSummary:
    """The CLI's demo site, a month of demo report data for it, and a marketer."""
    engine = create_engine(url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            await demo_site.create_demo(session, sample_data=False)
            site = await sites.get_site(session, demo_site.DEMO_SITE_KEY)
            # The end of 31 March in the site's zone: the whole of March, to the last minute.
            end_of_march = datetime(2026, 3, 31, 23, 59, 59, tzinfo=ZoneInfo(site.timezone))
            summary = await demo.seed_demo(session, site, days=31, now=end_of_march)
            await users.create_user(session, username="maria", role="marketer", password=PASSWORD)
        return summary
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[str]:
    path = tmp_path_factory.mktemp("report-browser") / "calltracker.db"
    path.write_bytes(sqlite_template.read_bytes())
    url = f"sqlite:///{path}"
    summary = asyncio.run(prepare(url))
    assert summary.calls > 100
    server = LiveServer(create_app(Settings(database_url=url)))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(base_url: str) -> Iterator[Any]:
    with chromium() as driver:
        login_browser(driver, base_url, "maria", PASSWORD)
        yield driver


def wait_for_url(browser: Any, part: str) -> None:
    """A click starts a navigation; wait until the new page is the one loaded."""
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 10).until(ec.url_contains(part))
    WebDriverWait(browser, 10).until(
        lambda b: b.execute_script("return document.readyState") == "complete"
    )


def test_the_report_page_shows_the_table_and_both_charts(browser: Any, base_url: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{base_url}/reports?site=demo&from=2026-03-01&to=2026-03-31")
    assert "Calls, cost and ROI" in browser.title
    header = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#report-table thead th")]
    assert header[:5] == ["SOURCE", "IMPRESSIONS", "CLICKS", "CTR", "VISITS"]  # upper-cased by CSS
    rows = browser.find_elements(By.CSS_SELECTOR, "#report-table tbody tr")
    sources = [row.find_element(By.CSS_SELECTOR, "td").text for row in rows]
    assert {"yandex", "google", "billboard", "radio", "vk", "(direct)"} <= set(sources)
    total = browser.find_element(By.CSS_SELECTOR, "#report-table tfoot td").text
    assert total == "Total"
    bars = browser.find_elements(By.CSS_SELECTOR, "svg.chart-bars rect.bar")
    assert len(bars) == 2 * len(rows)
    # Drawn, not just present: the browser laid the bars out with a real width.
    widest = max(bar.rect["width"] for bar in bars)
    assert widest > 100
    lines = browser.find_elements(By.CSS_SELECTOR, "svg.chart-days polyline.line")
    assert len(lines) == 2
    points = browser.find_elements(By.CSS_SELECTOR, "svg.chart-days circle.point")
    assert len(points) == 2 * 31
    assert browser.execute_script("return window.__errors || []") == []


def test_a_row_drills_down_to_the_next_level(browser: Any, base_url: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{base_url}/reports?site=demo&from=2026-03-01&to=2026-03-31")
    browser.find_element(By.LINK_TEXT, "yandex").click()
    wait_for_url(browser, "group=medium")
    header = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#report-table thead th")]
    assert header[:2] == ["SOURCE", "MEDIUM"]
    cells = browser.find_elements(By.CSS_SELECTOR, "#report-table tbody tr td:nth-child(2)")
    assert [c.text for c in cells] == ["cpc"]
    browser.find_element(By.LINK_TEXT, "cpc").click()
    wait_for_url(browser, "group=campaign")
    campaigns = browser.find_elements(By.CSS_SELECTOR, "#report-table tbody tr td:nth-child(3)")
    assert sorted(c.text for c in campaigns) == ["brand", "generic"]
    crumbs = browser.find_element(By.ID, "report-crumbs").text
    assert crumbs.startswith("All sources › yandex › cpc")


def test_the_date_range_picker_narrows_the_report(browser: Any, base_url: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{base_url}/reports?site=demo&from=2026-03-01&to=2026-03-31")
    form = browser.find_element(By.ID, "report-range")
    for name, value in (("from", "2026-03-10"), ("to", "2026-03-16")):
        field = form.find_element(By.NAME, name)
        # Typing into a date input depends on the locale's format; set the value as a picker would.
        browser.execute_script("arguments[0].value = arguments[1]", field, value)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for_url(browser, "from=2026-03-10")
    assert "to=2026-03-16" in browser.current_url
    points = browser.find_elements(By.CSS_SELECTOR, "svg.chart-days circle.point")
    assert len(points) == 2 * 7
