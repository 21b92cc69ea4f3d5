"""GET /widget.js: the file's bytes, gzipped when accepted, cacheable, revalidated by ETag."""

from __future__ import annotations

import gzip
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from calltracker.web import widget_js
from calltracker.web.widget_js import WIDGET_JS_PATH, WidgetScript, accepts_gzip, etag_matches

MAX_GZIPPED_BYTES = 3 * 1024
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def widget_client(aiohttp_client: Callable[[web.Application], Awaitable[Client]]) -> Client:
    app = web.Application()
    widget_js.add_widget_routes(app)
    return await aiohttp_client(app)


def test_the_widget_weighs_at_most_3_kb_gzipped() -> None:
    assert len(WidgetScript.load().gzipped) <= MAX_GZIPPED_BYTES


async def test_serves_the_file_as_javascript_with_cache_headers(widget_client: Client) -> None:
    resp = await widget_client.get("/widget.js", headers={"Accept-Encoding": "identity"})
    assert resp.status == 200
    assert await resp.read() == WIDGET_JS_PATH.read_bytes()
    assert resp.headers["Content-Type"] == "application/javascript; charset=utf-8"
    assert resp.headers["Cache-Control"] == "public, max-age=300"
    assert resp.headers["Vary"] == "Accept-Encoding"
    assert "Content-Encoding" not in resp.headers
    assert resp.headers["ETag"] == WidgetScript.load().etag


async def test_gzips_when_the_client_accepts_it(widget_client: Client) -> None:
    resp = await widget_client.get(
        "/widget.js", headers={"Accept-Encoding": "gzip, deflate, br"}, auto_decompress=False
    )
    assert resp.status == 200
    assert resp.headers["Content-Encoding"] == "gzip"
    body = await resp.read()
    assert gzip.decompress(body) == WIDGET_JS_PATH.read_bytes()
    assert int(resp.headers["Content-Length"]) == len(body) <= MAX_GZIPPED_BYTES
    assert resp.headers["ETag"] != WidgetScript.load().etag


async def test_a_matching_etag_gets_304_without_a_body(widget_client: Client) -> None:
    first = await widget_client.get("/widget.js", headers={"Accept-Encoding": "gzip"})
    etag = first.headers["ETag"]
    again = await widget_client.get(
        "/widget.js", headers={"Accept-Encoding": "gzip", "If-None-Match": f'"other", W/{etag}'}
    )
    assert again.status == 304
    assert await again.read() == b""
    assert again.headers["ETag"] == etag
    assert again.headers["Cache-Control"] == "public, max-age=300"


async def test_a_stale_etag_gets_the_whole_file(widget_client: Client) -> None:
    resp = await widget_client.get("/widget.js", headers={"If-None-Match": '"stale"'})
    assert resp.status == 200
    assert await resp.read() == WIDGET_JS_PATH.read_bytes()


async def test_head_sends_the_headers_only(widget_client: Client) -> None:
    resp = await widget_client.head("/widget.js", headers={"Accept-Encoding": "identity"})
    assert resp.status == 200
    assert int(resp.headers["Content-Length"]) == len(WIDGET_JS_PATH.read_bytes())
    assert await resp.read() == b""


def test_the_etag_changes_with_the_bytes_and_not_otherwise() -> None:
    one, same, other = (WidgetScript.from_bytes(b) for b in (b"a();", b"a();", b"b();"))
    assert one == same
    assert one.etag != other.etag and one.gzip_etag != other.gzip_etag


def test_a_missing_widget_file_fails_at_startup(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        widget_js.add_widget_routes(web.Application(), tmp_path / "widget.js")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("br;q=1.0, GZIP;q=0.5", True),
        ("x-gzip", True),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("deflate, br", False),
        ("identity", False),
        ("", False),
        ("gzip;q=nonsense", False),
    ],
)
def test_accepts_gzip(header: str, expected: bool) -> None:
    assert accepts_gzip(header) is expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [('"abc"', True), ('W/"abc"', True), ('"x", "abc"', True), ("*", True), ('"abcd"', False)],
)
def test_etag_matches(header: str, expected: bool) -> None:
    assert etag_matches(header, {'"abc"'}) is expected
