"""A real server in a thread and headless Chromium, for the report page's browser test."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

INSTALL_HINT = (
    "the report page's browser test needs Chromium and chromedriver: run `make services` "
    "(it installs them) or `apt-get update && apt-get install -y chromium chromium-driver`"
)
CHROME_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run",
)  # fmt: skip


class LiveServer:
    """Runs an aiohttp app on 127.0.0.1 in its own thread and event loop.

    Selenium's calls block, so the server cannot share the test's event loop.
    """

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app, access_log=None)
        self.port = 0
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="live-server", daemon=True
        )

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def start(self) -> str:
        self.thread.start()
        self.run(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.run(site.start())
        self.port = self.runner.addresses[0][1]
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.run(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


def find_chromium() -> tuple[str, str]:
    browser = next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p),
        None,
    )
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return browser, driver


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Headless Chromium with the project's flags and a throwaway profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = find_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    with tempfile.TemporaryDirectory(prefix="ct-chrome-") as profile:
        for flag in (*CHROME_FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        options.add_argument("--window-size=1280,1600")
        driver = webdriver.Chrome(options=options, service=Service(driver_path))
        try:
            driver.set_page_load_timeout(20)
            yield driver
        finally:
            driver.quit()


def login_browser(driver: Any, base_url: str, username: str, password: str) -> None:
    """Log in through the console's login form, as a person would."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base_url}/login")
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form[action='/login'] button[type=submit]").click()
    WebDriverWait(driver, 10).until(ec.none_of(ec.url_contains("/login")))
