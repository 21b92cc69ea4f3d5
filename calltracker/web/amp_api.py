"""The AMP number endpoint: amp-call-tracking asks it for the number an AMP page shows.

`GET /api/v1/amp/number?site_key=KEY&__amp_source_origin=ORIGIN[&client_id=CLIENT_ID(ct_vid)]`
starts a visit, as the widget's POST /api/v1/visits does, and answers
`{"phoneNumber": E.164, "formattedPhoneNumber": display}`.

It changes state (a visit, a lease), so it follows AMP's CORS rules for such requests before
doing anything: the Origin must be one of the site's own or an AMP cache's copy of one
(`https://shop-example-ru.cdn.ampproject.org`, `https://shop-example-ru.amp.cloudflare.com`);
without an Origin the runtime's `AMP-Same-Origin: true` must be there; and the
`__amp_source_origin` the runtime adds must be one of the site's origins.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import msgspec
from aiohttp import web

from calltracker.catalog.cache import SiteInfo
from calltracker.errors import CalltrackerError, Forbidden
from calltracker.keys import visits_key
from calltracker.tracking.visits import MAX_URL, OriginNotAllowed, VisitRequest
from calltracker.web.auth import public
from calltracker.web.bodies import Refusal, Reply, api
from calltracker.web.errors import ErrorBody, status_for
from calltracker.web.widget_api import check_rate

AMP_CACHE_SUFFIXES = (".cdn.ampproject.org", ".amp.cloudflare.com")
SOURCE_ORIGIN_PARAM = "__amp_source_origin"


class SourceOriginNotAllowed(Forbidden):
    code = "source_origin_not_allowed"


def amp_cache_publisher(host: str) -> str | None:
    """The publisher host an AMP cache host serves, e.g. shop-example-ru.cdn.ampproject.org.

    The cache writes the host as one label: '-' doubled, then '.' turned into '-'. Hosts the
    cache had to hash (too long, or internationalised) are not recognised.
    """
    for suffix in AMP_CACHE_SUFFIXES:
        if host.endswith(suffix):
            label = host.removesuffix(suffix)
            if not label or "." in label:
                return None
            return label.replace("--", "\0").replace("-", ".").replace("\0", "-")
    return None


def origin_allowed(site: SiteInfo, origin: str) -> bool:
    """The site's own origins, and AMP caches' (https only) for the site's hosts."""
    parts = urlsplit(origin)
    host = (parts.hostname or "").lower()
    if not host:
        return False
    if site.allows_origin(host):
        return True
    publisher = amp_cache_publisher(host)
    return parts.scheme == "https" and publisher is not None and site.allows_origin(publisher)


def source_origin(site: SiteInfo, value: str) -> str:
    """The __amp_source_origin value, when it is exactly an http(s) origin of the site."""
    parts = urlsplit(value)
    host = (parts.hostname or "").lower()
    is_origin = parts.scheme in ("http", "https") and value == f"{parts.scheme}://{parts.netloc}"
    if not (is_origin and host and site.allows_origin(host)):
        raise SourceOriginNotAllowed(f"{SOURCE_ORIGIN_PARAM} must be an origin of this site")
    return value


def cors_headers(request: web.Request, site: SiteInfo, source_param: str) -> dict[str, str]:
    """AMP's CORS checks, made before any work; the headers a passing request is answered with."""
    headers = {
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Expose-Headers": "AMP-Access-Control-Allow-Source-Origin",
        "Vary": "Origin",
    }
    origin = request.headers.get("Origin")
    if origin is not None:
        if not origin_allowed(site, origin):
            raise OriginNotAllowed(f"origin {origin!r} is not this site's nor its AMP cache's")
        headers["Access-Control-Allow-Origin"] = origin
    elif request.headers.get("AMP-Same-Origin") != "true":
        raise OriginNotAllowed("a cross-origin request must carry its Origin")
    source = source_origin(site, source_param)
    headers["AMP-Access-Control-Allow-Source-Origin"] = source
    return headers


def landing_url(request: web.Request, source: str) -> str:
    """The page's URL as far as the request tells it: the Referer, else the source origin."""
    referer = request.headers.get("Referer", "")
    if referer.startswith(("http://", "https://")) and len(referer) <= MAX_URL:
        return referer
    return source + "/"


class AmpQuery(msgspec.Struct, frozen=True):
    """What amp-call-tracking's config URL carries."""

    site_key: str
    client_id: str = ""  # CLIENT_ID(ct_vid): the AMP runtime's per-visitor id
    amp_source_origin: str = msgspec.field(default="", name=SOURCE_ORIGIN_PARAM)


class AmpNumber(msgspec.Struct, frozen=True):
    """amp-call-tracking's response format."""

    phoneNumber: str  # the field names are AMP's
    formattedPhoneNumber: str


@public
@api()
async def amp_number(request: web.Request, query: AmpQuery) -> Reply[AmpNumber]:
    """A visit for an AMP page, answered in amp-call-tracking's format."""
    # One visitor's number: no cache may hand it to another.
    headers = {"Cache-Control": "no-store"}
    try:
        check_rate(request)
        visits = request.app[visits_key]
        site = visits.site(query.site_key, None)
        headers |= cors_headers(request, site, query.amp_source_origin)
        source = headers["AMP-Access-Control-Allow-Source-Origin"]
        result = await visits.start_visit(
            VisitRequest(
                site_key=site.key,
                url=landing_url(request, source),
                visitor_id=query.client_id or None,
            ),
            user_agent=request.headers.get("User-Agent", ""),
            origin_host=urlsplit(source).hostname,
        )
    except CalltrackerError as err:
        raise Refusal(status_for(err), ErrorBody(err.code, err.message), headers) from None
    return Reply(AmpNumber(result.number, result.display), headers=headers)
