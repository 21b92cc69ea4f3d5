"""The widget's visit: what it sends, how it survives failures, reloads, hidden tabs and expiry."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from calltracker.web.widget_js import WIDGET_JS_PATH
from tests.widget.conftest import SITES, script_errors

if TYPE_CHECKING:
    from tests.widget.conftest import Calltracker, SitePages

NUMBER = "return window.calltracker && window.calltracker.number()"
PHONE = "return document.getElementById('phone').textContent"
FIRST, SECOND = SITES["test"].pool_numbers  # a fresh pool hands them out in this order


def open_swapped(browser: Any, wait: Callable[..., Any], url: str) -> str:
    browser.get(url)
    number: str = wait(lambda: browser.execute_script(NUMBER), what="the widget to get a number")
    return number


def hide_until_the_lease_runs_out(browser: Any, api: Calltracker, wait: Callable[..., Any]) -> None:
    """Put another tab in front (the widget stops pinging) until the pool lets the lease go."""
    page = browser.current_window_handle
    browser.switch_to.new_window("tab")
    wait(lambda: api.live_leases("test") == 0, timeout=5, what="the lease to run out")
    browser.switch_to.window(page)  # visible again: the widget pings at once


# --- what the visit request carries ---------------------------------------------------------


def test_the_visit_request_carries_landing_url_referrer_and_analytics_ids(
    browser: Any, site_server: SitePages, api: Calltracker, wait: Callable[..., Any]
) -> None:
    cookies = (
        ("_ga", "GA1.1.123456789.1700000000"),
        ("_ym_uid", "1700000000123"),
        # GA4's session cookies of two streams, in the older and the newer format.
        ("_ga_ABC123", "GS1.1.1700000500.3.1.1700000900.0.0.0"),
        ("_ga_XYZ9", "GS2.1.s1700000600$o4$g1$t1700000950$j60$l0$h0"),
    )
    for name, value in cookies:
        browser.execute_cdp_cmd(
            "Network.setCookie", {"name": name, "value": value, "url": site_server.site_origin}
        )
    browser.get(site_server.page_url("referrer.html"))
    browser.find_element("id", "ad").click()
    wait(lambda: browser.execute_script(NUMBER), what="the widget to get a number")
    landing = site_server.page_url(
        "simple.html", utm_source="yandex", utm_medium="cpc", gclid="abc123"
    )
    [visit] = api.traffic.visits
    sent = dict(visit.body)
    assert sorted(sent.pop("ga_sessions").split(" ")) == [
        "_ga_ABC123=GS1.1.1700000500.3.1.1700000900.0.0.0",
        "_ga_XYZ9=GS2.1.s1700000600$o4$g1$t1700000950$j60$l0$h0",
    ]
    assert sent == {
        "site_key": "test",
        "url": landing,
        "referrer": site_server.page_url("referrer.html"),
        "ga_client_id": "123456789.1700000000",
        "ym_client_id": "1700000000123",
    }
    [row] = api.visits()
    # Every GA4 event of the visit's calls and deals carries its session on that stream.
    assert sorted(row.ga_sessions.split()) == ["ABC123.1700000500", "XYZ9.1700000600"]
    assert (row.url, row.referrer, row.ga_client_id, row.ym_client_id) == (
        landing,
        site_server.page_url("referrer.html"),
        "123456789.1700000000",
        "1700000000123",
    )
    assert (api.site_key(row), row.source, row.medium, row.click_id_type, row.click_id) == (
        "test",
        "yandex",
        "cpc",
        "gclid",
        "abc123",
    )


def test_requests_are_cross_origin_text_plain_without_preflight(
    browser: Any, site_server: SitePages, api: Calltracker, wait: Callable[..., Any]
) -> None:
    open_swapped(browser, wait, site_server.page_url("simple.html", ping="0.2"))
    wait(lambda: api.traffic.pings and api.traffic.pings[0].status, what="a ping answered")
    browser.find_element("id", "tel").click()
    wait(lambda: api.traffic.events, what="the phone_click event")
    requests = [api.traffic.visits[0], api.traffic.pings[0], api.traffic.events[0]]
    assert {(r.content_type, r.origin) for r in requests} == {
        ("text/plain", site_server.site_origin)
    }
    assert api.traffic.preflights == []
    # The server understood each of them: a visit, a renewed lease, a stored click.
    wait(lambda: api.traffic.events[0].status == 204, what="the event to be stored")
    assert [r.status for r in requests[:2]] == [200, 200]
    [visit] = api.visits()
    assert api.lease(visit).last_seen_at > api.lease(visit).started_at
    assert [(e.visit_id, e.type) for e in api.events()] == [(visit.id, "phone_click")]


def test_the_visitor_id_from_the_server_is_kept_in_local_storage_and_sent_next_time(
    browser: Any, site_server: SitePages, api: Calltracker, wait: Callable[..., Any]
) -> None:
    open_swapped(browser, wait, site_server.page_url("simple.html"))
    [first] = api.visits()
    assert browser.execute_script("return localStorage.getItem('ct_vid')") == first.visitor_key
    browser.switch_to.new_window("tab")  # a new tab: a new session, so a new visit
    open_swapped(browser, wait, site_server.page_url("simple.html"))
    assert [v.body.get("visitor_id") for v in api.traffic.visits] == [None, first.visitor_key]
    assert [v.visitor_key for v in api.visits()] == [first.visitor_key] * 2


BLOCK_LOCAL_STORAGE = """
Object.defineProperty(window, 'localStorage', {
  get() { throw new DOMException('blocked', 'SecurityError'); },
});
"""


def test_the_visitor_id_falls_back_to_a_first_party_cookie_for_a_year(
    browser: Any, site_server: SitePages, api: Calltracker, wait: Callable[..., Any]
) -> None:
    browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": BLOCK_LOCAL_STORAGE}
    )
    open_swapped(browser, wait, site_server.page_url("simple.html"))
    [first] = api.visits()
    cookie = browser.get_cookie("ct_vid")
    assert cookie is not None and cookie["value"] == first.visitor_key
    assert cookie["expiry"] - time.time() > 364 * 24 * 3600
    assert script_errors(browser) == []
    browser.switch_to.new_window("tab")
    browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": BLOCK_LOCAL_STORAGE}
    )
    open_swapped(browser, wait, site_server.page_url("simple.html"))
    assert [v.body.get("visitor_id") for v in api.traffic.visits] == [None, first.visitor_key]
    assert [v.visitor_key for v in api.visits()] == [first.visitor_key] * 2


# --- the page keeps its own number when the API does not answer -----------------------------


def assert_page_kept_its_number(browser: Any) -> None:
    assert browser.execute_script(PHONE) == "8 (495) 000-00-00"
    assert browser.execute_script("return document.getElementById('tel').getAttribute('href')") == (
        "tel:+74950000000"
    )
    assert browser.execute_script(NUMBER) is None
    assert browser.execute_script("return window.pageScriptRan") is True
    assert script_errors(browser) == []


def test_the_page_keeps_its_number_when_the_api_fails(
    browser: Any, site_server: SitePages, api: Calltracker, wait: Callable[..., Any]
) -> None:
    api.traffic.fail("visit", 500)
    browser.get(site_server.page_url("simple.html"))
    wait(lambda: api.traffic.visits, what="the visit request")
    time.sleep(0.3)
    assert_page_kept_its_number(browser)
    assert [v.status for v in api.traffic.visits] == [500]


def test_the_page_keeps_its_number_when_the_api_refuses_connections(
    browser: Any,
    site_server: SitePages,
    api: Calltracker,
    wait: Callable[..., Any],
    refusing_widget_url: str,
) -> None:
    browser.get(site_server.page_url("simple.html", widget=refusing_widget_url))
    wait(
        lambda: browser.execute_script("return typeof window.calltracker.onNumber") == "function",
        what="the widget to load",
    )
    time.sleep(0.5)
    assert_page_kept_its_number(browser)


def test_the_page_keeps_its_number_when_the_api_answers_after_two_seconds(
    browser: Any, site_server: SitePages, api: Calltracker, wait: Callable[..., Any]
) -> None:
    slow_seconds = 2.4
    api.traffic.delay("visit", slow_seconds)
    browser.get(site_server.page_url("simple.html"))
    wait(lambda: api.traffic.visits, what="the visit request")
    started = api.traffic.visits[0].at
    time.sleep(max(0.0, started + slow_seconds + 0.5 - time.monotonic()))
    assert_page_kept_its_number(browser)
    # The server did answer, late: a visit the page gave up on.
    assert api.traffic.visits[0].status == 200
    assert [v.number for v in api.visits()] == [FIRST]


# --- one visit per tab session, kept alive by pings -----------------------------------------


def test_a_reload_and_a_navigation_keep_the_visit_and_its_number(
    browser: Any, site_server: SitePages, api: Calltracker, wait: Callable[..., Any]
) -> None:
    first = open_swapped(browser, wait, site_server.page_url("simple.html"))
    [visit] = api.visits()
    leased_at = api.lease(visit).last_seen_at
    browser.refresh()
    wait(lambda: len(api.traffic.pings) == 1, what="the ping after the reload")
    assert browser.execute_script(NUMBER) == first
    assert browser.execute_script(PHONE) == "8 (495) 123-45-67"
    browser.find_element("id", "next").click()
    wait(lambda: len(api.traffic.pings) == 2, what="the ping after the navigation")
    assert browser.execute_script(PHONE) == "8 (495) 123-45-67"
    assert len(api.traffic.visits) == 1
    assert {p.path for p in api.traffic.pings} == {f"/api/v1/visits/{visit.id}/ping"}
    # The pings renewed the visit's lease in the pool; no other visit was recorded.
    wait(lambda: api.traffic.pings[1].status == 200, what="the second ping's answer")
    assert api.lease(visit).last_seen_at > leased_at
    assert [v.id for v in api.visits()] == [visit.id]


def test_a_new_ad_click_in_the_same_tab_starts_a_new_visit(
    browser: Any, site_server: SitePages, api: Calltracker, wait: Callable[..., Any]
) -> None:
    open_swapped(browser, wait, site_server.page_url("simple.html", utm_source="google"))
    # Waiting for the number, not just the request: the widget keeps the new visit once the
    # answer is in, and a reload before that would rightly start yet another visit.
    open_swapped(browser, wait, site_server.page_url("simple.html", utm_source="yandex"))
    assert len(api.traffic.visits) == 2
    browser.refresh()
    wait(lambda: api.traffic.pings, what="the ping after the reload")
    assert [v.body["url"].rsplit("=", 1)[1] for v in api.traffic.visits] == ["google", "yandex"]
    assert [v.source for v in api.visits()] == ["google", "yandex"]


def test_pings_run_while_the_page_is_visible_stop_while_hidden_and_resume_at_once(
    browser: Any, site_server: SitePages, api: Calltracker, wait: Callable[..., Any]
) -> None:
    # A second tab in front hides the first: real Page Visibility in headless Chromium.
    open_swapped(browser, wait, site_server.page_url("simple.html", ping="0.5"))
    page = browser.current_window_handle
    wait(lambda: len(api.traffic.pings) >= 2, what="two pings while visible")
    browser.switch_to.new_window("tab")
    time.sleep(0.2)  # a ping already on the wire may still land
    hidden_count = len(api.traffic.pings)
    [visit] = api.visits()
    hidden_seen_at = api.lease(visit).last_seen_at
    time.sleep(1.5)
    assert len(api.traffic.pings) == hidden_count, "pinged while hidden"
    assert api.lease(visit).last_seen_at == hidden_seen_at, "the lease was renewed while hidden"
    shown_at = time.monotonic()
    browser.switch_to.window(page)
    wait(
        lambda: len(api.traffic.pings) > hidden_count,
        timeout=2,
        what="a ping after the page showed",
    )
    assert api.traffic.pings[hidden_count].at - shown_at < 0.4, (
        "the first ping should not wait an interval"
    )


def test_an_expired_visit_gets_a_new_one_and_the_page_swaps_to_its_number(
    browser: Any, site_server: SitePages, api: Calltracker, wait: Callable[..., Any]
) -> None:
    api.configure_site("test", hold_seconds=1)
    assert open_swapped(browser, wait, site_server.page_url("simple.html", ping="0.3")) == FIRST
    browser.execute_script(
        "window.seen = []; window.calltracker.onNumber((n) => seen.push(n.number));"
    )
    [first] = api.visits()
    hide_until_the_lease_runs_out(browser, api, wait)
    wait(lambda: len(api.traffic.visits) == 2, what="a new visit after the 404")
    assert 404 in [p.status for p in api.traffic.pings]
    wait(lambda: browser.execute_script(NUMBER) == SECOND, what="the new number")
    assert browser.execute_script(PHONE) == "8 (495) 765-43-21"
    assert browser.execute_script("return document.getElementById('tel').getAttribute('href')") == (
        "tel:+74957654321"
    )
    assert browser.execute_script("return window.seen") == [FIRST, SECOND]
    assert api.traffic.visits[1].body["visitor_id"] == first.visitor_key
    assert [(v.visitor_key, v.number) for v in api.visits()] == [
        (first.visitor_key, FIRST),
        (first.visitor_key, SECOND),
    ]


def test_an_expired_visit_falls_back_to_the_site_number_when_no_new_one_comes(
    browser: Any, site_server: SitePages, api: Calltracker, wait: Callable[..., Any]
) -> None:
    api.configure_site("test", hold_seconds=1)
    open_swapped(browser, wait, site_server.page_url("simple.html", ping="0.3"))
    api.traffic.fail("visit", 500)
    hide_until_the_lease_runs_out(browser, api, wait)
    wait(lambda: browser.execute_script(NUMBER) == "+74950000000", what="the site's number")
    assert browser.execute_script(PHONE) == "8 (495) 000-00-00"
    assert [p.status for p in api.traffic.pings][-1] == 404
    assert [v.status for v in api.traffic.visits] == [200, 500]
    pings = len(api.traffic.pings)
    time.sleep(0.7)
    assert len(api.traffic.pings) == pings, "no lease left to keep alive"


def test_a_click_on_a_tel_link_reports_phone_click(
    browser: Any, site_server: SitePages, api: Calltracker, wait: Callable[..., Any]
) -> None:
    open_swapped(browser, wait, site_server.page_url("simple.html"))
    browser.find_element("id", "tel").click()
    wait(lambda: api.traffic.events, what="the phone_click event")
    [visit] = api.visits()
    [event] = api.traffic.events
    assert event.path == f"/api/v1/visits/{visit.id}/events"
    assert event.body == {"site_key": "test", "type": "phone_click"}
    wait(lambda: api.events(), what="the click to be stored")
    assert [(e.visit_id, e.type, e.number) for e in api.events()] == [
        (visit.id, "phone_click", FIRST)
    ]


# --- the page's API -------------------------------------------------------------------------


def test_number_is_null_until_known_then_the_e164_number(
    browser: Any, site_server: SitePages, api: Calltracker, wait: Callable[..., Any]
) -> None:
    api.traffic.delay("visit", 0.8)
    browser.get(site_server.page_url("simple.html"))
    wait(lambda: api.traffic.visits, what="the visit request")
    assert browser.execute_script("return window.calltracker.number()") is None
    wait(lambda: browser.execute_script(NUMBER) == FIRST, what="the number")


def test_on_number_is_called_once_known_and_at_once_when_already_known(
    browser: Any, site_server: SitePages, api: Calltracker, wait: Callable[..., Any]
) -> None:
    browser.get(site_server.page_url("queued.html"))  # queues a callback before the widget loads
    wait(lambda: browser.execute_script("return window.got.length"), what="the queued callback")
    late = browser.execute_script(
        "const got = []; window.calltracker.onNumber((n) => got.push(n)); return got;"
    )
    expected = {"number": FIRST, "display": "+7 495 123-45-67", "kind": "pool"}
    assert browser.execute_script("return window.got") == [expected]
    assert late == [expected]


def test_the_only_global_is_window_calltracker(
    browser: Any, site_server: SitePages, api: Calltracker, wait: Callable[..., Any]
) -> None:
    keys = "return Object.getOwnPropertyNames(window)"
    browser.get(site_server.page_url("blank.html"))
    browser.execute_script(keys)  # chromedriver's own helpers appear on the first call
    before = set(browser.execute_script(keys))
    open_swapped(browser, wait, site_server.page_url("simple.html"))
    added = set(browser.execute_script(keys)) - before
    assert added == {"calltracker", "pageScriptRan"}


def test_loaded_twice_the_widget_makes_one_visit(
    browser: Any, site_server: SitePages, api: Calltracker, wait: Callable[..., Any]
) -> None:
    open_swapped(browser, wait, site_server.page_url("twice.html"))
    time.sleep(0.3)
    assert len(api.traffic.visits) == 1
    assert len(api.visits()) == 1
    assert browser.execute_script(PHONE) == "8 495 123-45-67"


def test_the_widget_runs_in_strict_mode() -> None:
    lines = WIDGET_JS_PATH.read_text(encoding="utf-8").splitlines()
    assert lines[1].startswith("((w, d) => {") and lines[2].strip() == "'use strict';"
