"""The demo landing page, served by the real server with the data `calltracker demo` creates."""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from calltracker.cli.common import with_session
from calltracker.db.migrate import upgrade
from calltracker.demo.site import DEMO_POOL, DEMO_SITE_KEY, create_demo
from calltracker.settings import Settings
from tests.conftest import run_blocking

if TYPE_CHECKING:
    from tests.widget.conftest import Calltracker

SCREENSHOT = Path("/tmp/demo.png")
READ = """
const out = {};
for (const [id, attr] of arguments[0]) {
  const el = document.getElementById(id);
  out[id + (attr ? '@' + attr : '')] = el && (attr ? el.getAttribute(attr) : el.textContent);
}
return out;
"""


@pytest.fixture(scope="module")
def db_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `make run` starts from: `calltracker migrate`, then `calltracker demo`."""
    path = tmp_path_factory.mktemp("demo-db") / "calltracker.db"
    # Without the report sample data: this test counts the visits the page itself makes.
    run_blocking(upgrade(f"sqlite:///{path}"))
    run_blocking(
        with_session(
            Settings(database_url=f"sqlite:///{path}"),
            functools.partial(create_demo, sample_data=False),
        )
    )
    return path


@pytest.fixture
def large_window(browser: Any) -> Iterator[Any]:
    """A desktop-sized window for the screenshot, put back afterwards."""
    size = browser.get_window_size()
    browser.set_window_size(1280, 900)
    yield browser
    browser.set_window_size(size["width"], size["height"])


def read(browser: Any, *ids: str) -> dict[str, str | None]:
    pairs = [id_.split("@", 1) if "@" in id_ else [id_, ""] for id_ in ids]
    result: dict[str, str | None] = browser.execute_script(READ, pairs)
    return result


def test_the_demo_page_shows_a_pooled_number_in_every_format_its_link_and_late_pop_up(
    large_window: Any, api: Calltracker, wait: Callable[..., Any]
) -> None:
    browser = large_window
    browser.get(f"{api.origin}/demo/")
    number = wait(
        lambda: browser.execute_script("return window.calltracker && window.calltracker.number()"),
        what="the widget to get a number",
    )
    # A fresh pool hands out its first number; the server recorded the visit with it.
    assert number == DEMO_POOL[0] == "+74951000001"
    [visit] = api.visits()
    assert (api.site_key(visit), visit.number, visit.number_kind) == (DEMO_SITE_KEY, number, "pool")
    assert [v.body["site_key"] for v in api.traffic.visits] == [DEMO_SITE_KEY]
    expected = {
        "header-phone": "+7 (495) 100-00-01",
        "header-phone@href": "tel:+74951000001",
        "f-intl-brackets": "+7 (495) 100-00-01",
        "f-intl-spaces": "+7 495 100 00 01",
        "f-trunk-spaces": "8 495 100 00 01",
        "f-trunk-dashes": "8-495-100-00-01",
        "f-trunk-brackets": "8 (495) 100-00-01",
        "f-digits": "84951000001",
        "f-e164": "+74951000001",
        "f-sentence": "Call us on 8 (495) 100-00-01, 9 am to 9 pm.",
        "f-link": "Call 8 495 100-00-01",
        "f-link@href": "tel:84951000001",
        "f-other": "8 800 555-35-35",
    }
    assert read(browser, *expected) == expected
    # The pop-up appears a second after load; the widget swaps the number in it too.
    popup = {"popup-phone": "+7 (495) 100-00-01", "popup-phone@href": "tel:+74951000001"}
    wait(lambda: read(browser, *popup) == popup, what="the demo pop-up's number to be swapped")
    status = read(browser, "status")["status"] or ""
    assert status.splitlines() == [
        "number:  +74951000001",
        "display: +7 495 100-00-01",
        "kind:    pool",
    ]
    # For a person to look at: the whole page, pop-up open (no checks on pixels).
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
    )
    SCREENSHOT.write_bytes(base64.b64decode(shot["data"]))
