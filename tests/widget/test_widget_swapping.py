"""The widget finds the site's number in a page, in any format, and swaps in the leased one."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.widget.conftest import Calltracker, SitePages

READ_TEXTS = """
const out = {};
for (const id of arguments[0]) out[id] = document.getElementById(id).textContent;
return out;
"""
READ_HREFS = """
const out = {};
for (const id of arguments[0]) out[id] = document.getElementById(id).getAttribute('href');
return out;
"""


def texts(browser: Any, *ids: str) -> dict[str, str]:
    result: dict[str, str] = browser.execute_script(READ_TEXTS, list(ids))
    return result


def hrefs(browser: Any, *ids: str) -> dict[str, str]:
    result: dict[str, str] = browser.execute_script(READ_HREFS, list(ids))
    return result


def open_swapped(browser: Any, wait: Callable[..., Any], api: Calltracker, url: str) -> str:
    """Open the page and wait for its number: the one the server leased for the visit."""
    browser.get(url)
    number: str = wait(
        lambda: browser.execute_script("return window.calltracker && window.calltracker.number()"),
        what="the widget to get a number",
    )
    [visit] = api.visits()
    assert (visit.number, visit.number_kind) == (number, "pool")
    return number


def test_every_russian_format_is_swapped_and_keeps_its_format(
    browser: Any, site_server: SitePages, api: Calltracker, wait: Callable[..., Any]
) -> None:
    assert open_swapped(browser, wait, api, site_server.page_url("formats.html")) == "+74951234567"
    expected = {
        "f-intl-brackets": "+7 (495) 123-45-67",
        "f-trunk-spaces": "8 495 123 45 67",
        "f-trunk-dashes": "8-495-123-45-67",
        "f-trunk-digits": "84951234567",
        "f-e164": "+74951234567",
        "f-trunk-brackets": "8 (495) 123-45-67",
        "f-nbsp": "+7\u00a0495\u00a0123\u201145\u201167",
        "f-seven-no-plus": "7 495 123-45-67",
        "f-national": "(495) 123-45-67",
        "f-dots": "+7.495.123.45.67",
        "f-two": "Call 8 495 123 45 67 or +7 (495) 123-45-67 today",
    }
    assert texts(browser, *expected) == expected


def test_other_numbers_longer_digit_runs_scripts_and_textareas_are_left_alone(
    browser: Any, site_server: SitePages, api: Calltracker, wait: Callable[..., Any]
) -> None:
    open_swapped(browser, wait, api, site_server.page_url("formats.html"))
    unchanged = {
        "u-other": "8 800 555-35-35",
        "u-near": "+7 495 000-00-01",
        "u-longer-before": "Order 184950000000",
        "u-longer-after": "Invoice 49500000001",
        "u-script": 'var sitePhone = "84950000000";',
        "t-other": "8 800 555-35-35",
    }
    assert texts(browser, *unchanged) == unchanged
    assert browser.execute_script("return document.getElementById('u-textarea').value") == (
        "84950000000"
    )
    assert hrefs(browser, "t-other") == {"t-other": "tel:88005553535"}


def test_tel_links_get_the_new_number_written_as_before(
    browser: Any, site_server: SitePages, api: Calltracker, wait: Callable[..., Any]
) -> None:
    open_swapped(browser, wait, api, site_server.page_url("formats.html"))
    assert hrefs(browser, "t-e164", "t-trunk", "t-dashes") == {
        "t-e164": "tel:+74951234567",
        "t-trunk": "tel:84951234567",
        "t-dashes": "tel:+7-495-123-45-67",
    }
    assert texts(browser, "t-e164", "t-trunk") == {
        "t-e164": "Call us",
        "t-trunk": "8 495 123-45-67",
    }


def test_a_number_split_over_elements_of_a_tel_link_is_swapped_keeping_the_markup(
    browser: Any, site_server: SitePages, api: Calltracker, wait: Callable[..., Any]
) -> None:
    open_swapped(browser, wait, api, site_server.page_url("formats.html"))
    inner = browser.execute_script("return document.getElementById('t-split').innerHTML")
    assert inner == '<span class="code">+7 (495)</span> <b>123-45-67</b>'


def test_elements_matched_by_configured_selectors_show_the_number(
    browser: Any, site_server: SitePages, api: Calltracker, wait: Callable[..., Any]
) -> None:
    api.configure_site("test", selectors=[".server-phone"])
    open_swapped(browser, wait, api, site_server.page_url("formats.html", selectors=".ct-phone"))
    assert texts(browser, "s-empty", "s-other", "s-server") == {
        "s-empty": "+7 495 123-45-67",  # no number in it: the server's display format
        "s-other": "+7 (495) 123-45-67",  # another number: written in its format
        "s-server": "8 (495) 123-45-67",  # the site's number split over two spans
    }
    inner = browser.execute_script("return document.getElementById('s-server').innerHTML")
    assert inner == "<span>8 (495)</span> <span>123-45-67</span>"


def test_without_selectors_a_split_number_outside_links_is_left_alone(
    browser: Any, site_server: SitePages, api: Calltracker, wait: Callable[..., Any]
) -> None:
    open_swapped(browser, wait, api, site_server.page_url("formats.html"))
    assert texts(browser, "s-empty", "s-other", "s-server") == {
        "s-empty": "Call us",
        "s-other": "+7 (499) 111-22-33",
        "s-server": "8 (495) 000-00-00",
    }


@pytest.mark.parametrize(
    ("country", "site_key", "expected", "untouched"),
    [
        (
            "us",
            "shop-us",
            {
                "us-national": "(212) 555-0199",
                "us-intl": "+1 212-555-0199",
                "us-dots": "212.555.0199",
                "us-trunk": "1-212-555-0199",
                "us-intl-brackets": "+1 (212) 555-0199",
            },
            {"uk-intl": "+44 20 7946 0958", "uk-national": "020 7946 0958"},
        ),
        (
            "uk",
            "shop-uk",
            {
                "uk-intl": "+44 20 7946 0111",
                "uk-national": "020 7946 0111",
                "uk-intl-trunk": "+44 (0)20 7946 0111",
                "uk-00": "0044 20 7946 0111",
            },
            {"us-national": "(212) 555-0123", "us-intl": "+1 212-555-0123"},
        ),
    ],
)
def test_national_formats_of_other_countries_are_swapped(
    browser: Any,
    site_server: SitePages,
    api: Calltracker,
    wait: Callable[..., Any],
    country: str,
    site_key: str,
    expected: dict[str, str],
    untouched: dict[str, str],
) -> None:
    open_swapped(browser, wait, api, site_server.page_url("intl.html", site=site_key))
    assert texts(browser, *expected) == expected
    assert texts(browser, *untouched) == untouched
    new = "tel:+12125550199" if country == "us" else "tel:+442079460111"
    assert hrefs(browser, f"{country}-tel") == {f"{country}-tel": new}
    assert [api.site_key(v) for v in api.visits()] == [site_key]


LATE_POPUP = """
const popup = document.createElement('div');
popup.id = 'popup';
popup.innerHTML = 'Call <a id="popup-tel" href="tel:84950000000">8 (495) 000-00-00</a> now';
document.getElementById('slot').appendChild(popup);
"""


def test_content_added_later_is_swapped(
    browser: Any, site_server: SitePages, api: Calltracker, wait: Callable[..., Any]
) -> None:
    open_swapped(browser, wait, api, site_server.page_url("simple.html"))
    browser.execute_script(LATE_POPUP)
    wait(
        lambda: texts(browser, "popup")["popup"] == "Call 8 (495) 123-45-67 now",
        what="the pop-up's number to be swapped",
    )
    assert hrefs(browser, "popup-tel") == {"popup-tel": "tel:84951234567"}


def test_text_and_links_changed_later_are_swapped(
    browser: Any, site_server: SitePages, api: Calltracker, wait: Callable[..., Any]
) -> None:
    open_swapped(browser, wait, api, site_server.page_url("simple.html"))
    browser.execute_script(
        "document.getElementById('phone').firstChild.data = 'Now: +7 495 000 00 00';"
        "document.getElementById('next').setAttribute('href', 'tel:+74950000000');"
    )
    wait(
        lambda: texts(browser, "phone")["phone"] == "Now: +7 495 123 45 67",
        what="the changed text to be swapped",
    )
    wait(lambda: hrefs(browser, "next")["next"] == "tel:+74951234567", what="the new tel: href")


def test_a_number_the_parser_delivers_after_the_widget_started_is_swapped(
    browser: Any, site_server: SitePages, api: Calltracker, wait: Callable[..., Any]
) -> None:
    browser.get(f"{site_server.site_origin}/streamed")
    assert browser.execute_script("return window.numberBeforeTheRest") == "+74951234567"
    assert [v.number for v in api.visits()] == ["+74951234567"]
    assert texts(browser, "phone", "after") == {
        "phone": "8 495 123-45-67",
        "after": "+7 495 123-45-67",
    }


COUNT_MUTATIONS = """
window.mutations = 0;
new MutationObserver((rs) => { window.mutations += rs.length; })
  .observe(document.documentElement, {subtree: true, childList: true, characterData: true, attributes: true});
"""


def test_swapping_does_not_feed_on_its_own_mutations(
    browser: Any, site_server: SitePages, api: Calltracker, wait: Callable[..., Any]
) -> None:
    open_swapped(browser, wait, api, site_server.page_url("simple.html"))
    browser.execute_script(COUNT_MUTATIONS + LATE_POPUP)
    wait(lambda: "123-45-67" in texts(browser, "popup")["popup"], what="the pop-up swapped")
    settled = browser.execute_script("return window.mutations")
    time.sleep(0.5)
    assert browser.execute_script("return window.mutations") == settled
    # the pop-up added (1), its text and its link's href and text swapped: a handful, not a loop
    assert settled <= 4
