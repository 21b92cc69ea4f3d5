"""The real app on a real port in a thread of its own, for the synchronous Selenium tests."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

from calltracker.app import create_app
from calltracker.settings import Settings

T = TypeVar("T")
INSTALL_HINT = (
    "the console's browser tests need Chromium and chromedriver at /usr/bin: "
    "run `apt-get update && apt-get install -y chromium chromium-driver`"
)
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


@dataclass
class LiveServer:
    app: web.Application
    loop: asyncio.AbstractEventLoop
    port: int

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def run(self, work: Callable[[web.Application], Coroutine[Any, Any, T]]) -> T:
        """Run a coroutine on the server's loop (seeding rows, as the server itself would)."""
        return asyncio.run_coroutine_threadsafe(work(self.app), self.loop).result(30)


@contextmanager
def live_server(settings: Settings) -> Iterator[LiveServer]:
    loop = asyncio.new_event_loop()
    app = create_app(settings)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, name="console-live-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(app, loop, port)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@contextmanager
def chromium() -> Iterator[Any]:
    """Headless Chromium; a missing browser fails the test with how to install it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = "/usr/bin/chromedriver"
    if browser is None or not Path(driver_path).is_file():
        pytest.fail(INSTALL_HINT, pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    with tempfile.TemporaryDirectory(prefix="ct-console-chrome-") as profile:
        for flag in (*CHROME_FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(driver_path))
        try:
            driver.set_page_load_timeout(15)
            yield driver
        finally:
            driver.quit()
