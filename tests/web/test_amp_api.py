"""GET /api/v1/amp/number: amp-call-tracking's number, behind AMP's CORS rules, both modes."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from calltracker.app import create_app
from calltracker.db.models import Visit
from calltracker.keys import sessionmaker_key
from calltracker.settings import Settings
from calltracker.web.amp_api import amp_cache_publisher
from tests.conftest import Seeded, seed, with_settings

Client = TestClient[Any, Any]

SITE = "https://shop.example.ru"
GOOGLE_CACHE = "https://shop-example-ru.cdn.ampproject.org"
CLOUDFLARE_CACHE = "https://shop-example-ru.amp.cloudflare.com"
PAGE = f"{SITE}/sofas?utm_source=yandex&utm_medium=cpc&utm_campaign=spring"
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"
AMP_HEADERS = {
    "Access-Control-Allow-Credentials": "true",
    "Access-Control-Expose-Headers": "AMP-Access-Control-Allow-Source-Origin",
    "AMP-Access-Control-Allow-Source-Origin": SITE,
}


async def amp(
    client: Client,
    *,
    origin: str | None = SITE,
    source: str | None = SITE,
    referer: str | None = PAGE,
    site_key: str | None = "shop",
    user_agent: str = BROWSER_UA,
    **params: str,
) -> Any:
    if site_key is not None:
        params["site_key"] = site_key
    if source is not None:
        params["__amp_source_origin"] = source
    headers = {"User-Agent": user_agent}
    if origin is not None:
        headers["Origin"] = origin
    if referer is not None:
        headers["Referer"] = referer
    return await client.get("/api/v1/amp/number", params=params, headers=headers)


async def visits(client: Client) -> list[Visit]:
    async with client.app[sessionmaker_key]() as session:
        return list(await session.scalars(select(Visit).order_by(Visit.started_at)))


def amp_headers_of(resp: Any) -> dict[str, str]:
    return {name: resp.headers.get(name) for name in AMP_HEADERS}


@pytest.mark.parametrize("origin", [SITE, GOOGLE_CACHE, CLOUDFLARE_CACHE])
async def test_an_amp_page_gets_a_pooled_number_with_amp_cors_headers(
    client: Client, seeded: Seeded, origin: str
) -> None:
    resp = await amp(client, origin=origin)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert set(body) == {"phoneNumber", "formattedPhoneNumber"}
    displays = {"+74951230001": "+7 495 123-00-01", "+74951230002": "+7 495 123-00-02"}
    assert seeded.pool_numbers[:2] == tuple(displays)
    assert (body["phoneNumber"], body["formattedPhoneNumber"]) in displays.items()
    assert resp.headers["Access-Control-Allow-Origin"] == origin
    assert amp_headers_of(resp) == AMP_HEADERS
    assert resp.headers["Cache-Control"] == "no-store"
    assert "Origin" in resp.headers["Vary"]


async def test_the_visit_is_recorded_with_the_pages_url_and_labels(
    client: Client, seeded: Seeded
) -> None:
    body = await (await amp(client, origin=GOOGLE_CACHE)).json()
    [visit] = await visits(client)
    assert (visit.site_id, visit.url, visit.number, visit.number_kind) == (
        seeded.site_id,
        PAGE,
        body["phoneNumber"],
        "pool",
    )
    assert (visit.source, visit.medium, visit.campaign) == ("yandex", "cpc", "spring")


async def test_without_a_referer_the_visit_url_is_the_source_origin(
    client: Client, seeded: Seeded
) -> None:
    assert (await amp(client, referer=None)).status == 200
    assert [v.url for v in await visits(client)] == [SITE + "/"]


async def test_amps_client_id_is_the_visitor_so_it_keeps_its_number(
    client: Client, seeded: Seeded
) -> None:
    client_id = "amp-JQlMKZ3zA9MNDDWPs6XmBw"
    first = await (await amp(client, client_id=client_id)).json()
    again = await (await amp(client, client_id=client_id)).json()
    other = await (await amp(client)).json()
    assert again["phoneNumber"] == first["phoneNumber"] != other["phoneNumber"]
    keys = [v.visitor_key for v in await visits(client)]
    assert keys[:2] == [client_id, client_id] and keys[2] != client_id


async def test_a_same_origin_request_needs_amp_same_origin_and_gets_no_allow_origin(
    client: Client, seeded: Seeded
) -> None:
    resp = await client.get(
        "/api/v1/amp/number",
        params={"site_key": "shop", "__amp_source_origin": SITE},
        headers={"AMP-Same-Origin": "true", "User-Agent": BROWSER_UA},
    )
    assert resp.status == 200
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert amp_headers_of(resp) == AMP_HEADERS


@pytest.mark.parametrize(
    ("origin", "source", "error"),
    [
        ("https://evil.example", SITE, "origin_not_allowed"),
        ("https://evil-example-ru.cdn.ampproject.org", SITE, "origin_not_allowed"),
        ("https://shop-example-ru.cdn.ampproject.org.evil.example", SITE, "origin_not_allowed"),
        ("http://shop-example-ru.cdn.ampproject.org", SITE, "origin_not_allowed"),
        ("https://shop-example-ru.evil.ampproject.org", SITE, "origin_not_allowed"),
        (None, SITE, "origin_not_allowed"),  # neither Origin nor AMP-Same-Origin
        (SITE, None, "source_origin_not_allowed"),
        (SITE, "https://evil.example", "source_origin_not_allowed"),
        (SITE, GOOGLE_CACHE, "source_origin_not_allowed"),
        (SITE, f"{SITE}/sofas", "source_origin_not_allowed"),
        (SITE, "ftp://shop.example.ru", "source_origin_not_allowed"),
    ],
)
async def test_other_origins_and_source_origins_get_403_before_any_visit(
    client: Client, seeded: Seeded, origin: str | None, source: str | None, error: str
) -> None:
    resp = await amp(client, origin=origin, source=source)
    assert resp.status == 403
    assert (await resp.json())["error"] == error
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert "AMP-Access-Control-Allow-Source-Origin" not in resp.headers
    assert await visits(client) == []


async def test_an_unknown_or_missing_site_key_is_an_error(client: Client, seeded: Seeded) -> None:
    unknown = await amp(client, site_key="nope")
    assert (unknown.status, (await unknown.json())["error"]) == (404, "unknown_site")
    missing = await amp(client, site_key=None)
    assert (missing.status, (await missing.json())["error"]) == (400, "invalid_field")


async def test_a_malformed_client_id_is_400_with_cors_so_the_page_can_read_it(
    client: Client, seeded: Seeded
) -> None:
    resp = await amp(client, origin=GOOGLE_CACHE, client_id="no spaces!")
    assert resp.status == 400
    assert "visitor_id" in (await resp.json())["message"]
    assert resp.headers["Access-Control-Allow-Origin"] == GOOGLE_CACHE
    assert await visits(client) == []


async def test_an_exhausted_pool_and_bots_get_the_sites_own_number(
    client: Client, seeded: Seeded
) -> None:
    bot = await (await amp(client, user_agent="Mozilla/5.0 (compatible; Googlebot/2.1)")).json()
    assert bot == {"phoneNumber": "+74950000000", "formattedPhoneNumber": "+7 495 000-00-00"}
    numbers = {(await (await amp(client)).json())["phoneNumber"] for _ in seeded.pool_numbers}
    assert numbers == set(seeded.pool_numbers)
    assert await (await amp(client)).json() == {
        "phoneNumber": seeded.default_number,
        "formattedPhoneNumber": "+7 495 000-00-00",
    }


async def test_it_is_rate_limited_per_client_like_the_visit_api(
    aiohttp_client: Any, settings: Settings
) -> None:
    client = await aiohttp_client(create_app(with_settings(settings, visit_rate_per_minute=2)))
    await seed(client.app)
    assert [(await amp(client)).status for _ in range(3)] == [200, 200, 429]
    assert len(await visits(client)) == 2


@pytest.mark.parametrize(
    ("host", "publisher"),
    [
        ("shop-example-ru.cdn.ampproject.org", "shop.example.ru"),
        ("my--shop-example-ru.amp.cloudflare.com", "my-shop.example.ru"),
        ("localhost.cdn.ampproject.org", "localhost"),
        ("a.b.cdn.ampproject.org", None),
        ("cdn.ampproject.org", None),
        ("shop-example-ru.cdn.ampproject.org.evil.example", None),
        ("shop.example.ru", None),
    ],
)
def test_amp_cache_hosts_name_the_publisher_host(host: str, publisher: str | None) -> None:
    assert amp_cache_publisher(host) == publisher
