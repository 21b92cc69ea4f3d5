"""Serves /widget.js: the site script, read and gzipped once at startup, cached by ETag."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

from aiohttp import hdrs, web

from calltracker.web.auth import public

WIDGET_JS_PATH = Path(__file__).resolve().parents[1] / "widget" / "widget.js"
DEMO_HTML_PATH = Path(__file__).resolve().parent / "static" / "demo.html"
CONTENT_TYPE = "application/javascript; charset=utf-8"
# Short enough that a widget fix reaches every site within minutes; the ETag makes the
# revalidation after that a cheap 304.
CACHE_CONTROL = "public, max-age=300"


@dataclass(frozen=True)
class WidgetScript:
    """The widget's bytes in both encodings and the ETag of each."""

    body: bytes
    gzipped: bytes
    etag: str
    gzip_etag: str

    @classmethod
    def from_bytes(cls, body: bytes) -> WidgetScript:
        digest = hashlib.sha256(body).hexdigest()[:20]
        # mtime=0: the same bytes on every worker and restart, so caches agree.
        gzipped = gzip.compress(body, compresslevel=9, mtime=0)
        # A strong ETag names one representation, so the gzipped one gets its own.
        return cls(body, gzipped, f'"{digest}"', f'"{digest}-gz"')

    @classmethod
    def load(cls, path: Path = WIDGET_JS_PATH) -> WidgetScript:
        return cls.from_bytes(path.read_bytes())

    @public
    async def handle(self, request: web.Request) -> web.Response:
        """GET/HEAD /widget.js."""
        use_gzip = accepts_gzip(request.headers.get(hdrs.ACCEPT_ENCODING, ""))
        etag = self.gzip_etag if use_gzip else self.etag
        headers = {
            hdrs.CACHE_CONTROL: CACHE_CONTROL,
            hdrs.ETAG: etag,
            hdrs.VARY: hdrs.ACCEPT_ENCODING,
            hdrs.X_CONTENT_TYPE_OPTIONS: "nosniff",
            # Sites that isolate themselves (COEP) may still load the script.
            "Cross-Origin-Resource-Policy": "cross-origin",
        }
        if_none_match = request.headers.get(hdrs.IF_NONE_MATCH)
        if if_none_match is not None and etag_matches(if_none_match, {self.etag, self.gzip_etag}):
            return web.Response(status=304, headers=headers)
        if use_gzip:
            headers[hdrs.CONTENT_ENCODING] = "gzip"
        return web.Response(
            body=self.gzipped if use_gzip else self.body,
            headers={**headers, hdrs.CONTENT_TYPE: CONTENT_TYPE},
        )


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header allows gzip (an explicit q=0 refuses it)."""
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip"):
            continue
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


def etag_matches(if_none_match: str, etags: set[str]) -> bool:
    """Weak comparison (RFC 9110 13.1.2), as If-None-Match requires."""
    if if_none_match.strip() == "*":
        return True
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return not tags.isdisjoint(etags)


@public
async def demo_page(request: web.Request) -> web.FileResponse:
    """GET /demo/: a landing page of the demo site (key "demo") with the widget on it."""
    return web.FileResponse(DEMO_HTML_PATH, headers={hdrs.CACHE_CONTROL: "no-cache"})


def add_widget_routes(app: web.Application, path: Path = WIDGET_JS_PATH) -> WidgetScript:
    """Register GET/HEAD /widget.js; the file is read now, so a missing one fails startup."""
    script = WidgetScript.load(path)
    app.router.add_get("/widget.js", script.handle)
    return script
