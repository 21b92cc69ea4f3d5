"""The public visit API, end to end through the real app, embedded and at scale."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from calltracker.app import create_app
from calltracker.db.models import Visit, VisitEvent, Visitor
from calltracker.keys import sessionmaker_key
from calltracker.settings import Secret, Settings
from tests.conftest import Seeded, seed, with_settings

BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"
YANDEX_URL = (
    "https://shop.example.ru/sofas?utm_source=yandex&utm_medium=cpc&utm_campaign=spring"
    "&utm_term=%D0%BA%D1%83%D0%BF%D0%B8%D1%82%D1%8C+%D0%B4%D0%B8%D0%B2%D0%B0%D0%BD&yclid=123"
)
ORIGIN = "https://shop.example.ru"

Client = TestClient[Any, Any]


async def visit(client: Client, **body: Any) -> Any:
    body.setdefault("site_key", "shop")
    body.setdefault("url", "https://shop.example.ru/")
    resp = await client.post(
        "/api/v1/visits", json=body, headers={"User-Agent": BROWSER_UA, "Origin": ORIGIN}
    )
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def post_raw(client: Client, path: str, data: bytes | str, **headers: str) -> Any:
    headers.setdefault("User-Agent", BROWSER_UA)
    headers.setdefault("Content-Type", "application/json")
    return await client.post(path, data=data, headers=headers)


async def test_a_paid_visit_gets_a_pooled_number_with_its_labels(
    client: Client, seeded: Seeded
) -> None:
    body = await visit(client, url=YANDEX_URL, referrer="https://yandex.ru/")
    assert body["kind"] == "pool"
    assert body["number"] in seeded.pool_numbers
    assert body["display"].startswith("+7 495 123-")
    assert (body["source"], body["medium"], body["campaign"], body["keyword"]) == (
        "yandex",
        "cpc",
        "spring",
        "купить диван",
    )
    assert body["ttl"] == 900
    assert body["default_number"] == seeded.default_number


async def test_the_visit_is_recorded_with_its_number(client: Client, seeded: Seeded) -> None:
    body = await visit(client, url=YANDEX_URL, ga_client_id="123.456", ym_client_id="1700000000123")
    async with client.app[sessionmaker_key]() as session:
        row = await session.get(Visit, body["visit_id"])
    assert row is not None
    assert row.number == body["number"] and row.number_kind == "pool"
    assert (row.source, row.keyword, row.click_id_type) == ("yandex", "купить диван", "yclid")
    assert (row.ga_client_id, row.ym_client_id) == ("123.456", "1700000000123")


async def test_the_same_visitor_gets_the_same_number_back(client: Client, seeded: Seeded) -> None:
    first = await visit(client, url=YANDEX_URL)
    again = await visit(client, url=YANDEX_URL, visitor_id=first["visitor_id"])
    assert again["number"] == first["number"]
    assert again["visit_id"] != first["visit_id"]


async def test_live_visitors_never_share_a_number(client: Client, seeded: Seeded) -> None:
    numbers = [(await visit(client, url=YANDEX_URL))["number"] for _ in seeded.pool_numbers]
    assert sorted(numbers) == sorted(seeded.pool_numbers)


async def test_an_exhausted_pool_shows_the_default_number(client: Client, seeded: Seeded) -> None:
    for _ in seeded.pool_numbers:
        await visit(client, url=YANDEX_URL)
    body = await visit(client, url=YANDEX_URL)
    assert (body["kind"], body["number"]) == ("default", seeded.default_number)


async def test_a_ping_keeps_the_number(client: Client, seeded: Seeded) -> None:
    body = await visit(client, url=YANDEX_URL)
    resp = await post_raw(
        client, f"/api/v1/visits/{body['visit_id']}/ping", json.dumps({"site_key": "shop"})
    )
    assert resp.status == 200
    assert await resp.json() == {"number": body["number"], "ttl": 900}


async def test_a_ping_for_an_unknown_visit_is_404(client: Client, seeded: Seeded) -> None:
    resp = await post_raw(
        client, "/api/v1/visits/AAAAAAAAAAAAAAAAAAAAAA/ping", json.dumps({"site_key": "shop"})
    )
    assert resp.status == 404
    assert (await resp.json())["error"] == "unknown_visit"


async def test_a_ping_after_the_hold_time_is_404_and_the_number_is_free_again(
    aiohttp_client: Any, settings: Settings
) -> None:
    client = await aiohttp_client(create_app(settings))
    await seed(client.app, hold_seconds=1, numbers=("+74951230001",))
    body = await visit(client, url=YANDEX_URL)
    await asyncio.sleep(1.3)
    resp = await post_raw(
        client, f"/api/v1/visits/{body['visit_id']}/ping", json.dumps({"site_key": "shop"})
    )
    assert resp.status == 404
    assert (await visit(client, url=YANDEX_URL))["number"] == "+74951230001"


async def test_known_bots_get_the_default_number_and_no_lease(
    client: Client, seeded: Seeded
) -> None:
    resp = await client.post(
        "/api/v1/visits",
        json={"site_key": "shop", "url": YANDEX_URL},
        headers={"User-Agent": "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)"},
    )
    body = await resp.json()
    assert (body["kind"], body["number"]) == ("default", seeded.default_number)
    # Every pooled number is still free for people.
    numbers = {(await visit(client, url=YANDEX_URL))["number"] for _ in seeded.pool_numbers}
    assert numbers == set(seeded.pool_numbers)


async def test_only_chosen_mediums_get_pooled_numbers(
    aiohttp_client: Any, settings: Settings
) -> None:
    client = await aiohttp_client(create_app(settings))
    seeded = await seed(client.app, pooled_mediums=["cpc"])
    paid = await visit(client, url=YANDEX_URL)
    organic = await visit(
        client, url="https://shop.example.ru/", referrer="https://www.google.com/"
    )
    assert paid["kind"] == "pool"
    assert (organic["kind"], organic["number"], organic["source"]) == (
        "default",
        seeded.default_number,
        "google",
    )


async def test_a_returning_direct_visitor_keeps_the_last_paid_source(
    client: Client, seeded: Seeded
) -> None:
    first = await visit(client, url=YANDEX_URL)
    direct = await visit(client, url="https://shop.example.ru/", visitor_id=first["visitor_id"])
    assert (direct["source"], direct["medium"], direct["campaign"]) == ("yandex", "cpc", "spring")
    async with client.app[sessionmaker_key]() as session:
        row = await session.get(Visit, direct["visit_id"])
        visitor = await session.scalar(
            select(Visitor).where(Visitor.visitor_key == first["visitor_id"])
        )
    assert row is not None and (row.touch_source, row.touch_medium) == ("(direct)", "(none)")
    assert visitor is not None and (visitor.first_source, visitor.last_source) == (
        "yandex",
        "yandex",
    )


async def test_a_phone_click_is_stored_with_the_number_shown(
    client: Client, seeded: Seeded
) -> None:
    body = await visit(client, url=YANDEX_URL)
    resp = await post_raw(
        client,
        f"/api/v1/visits/{body['visit_id']}/events",
        json.dumps({"site_key": "shop", "type": "phone_click"}),
    )
    assert resp.status == 204
    async with client.app[sessionmaker_key]() as session:
        event = await session.scalar(select(VisitEvent))
    assert event is not None and (event.type, event.number) == ("phone_click", body["number"])


async def test_cors_answers_the_sites_origin_and_refuses_others(
    client: Client, seeded: Seeded
) -> None:
    pre = await client.options(
        "/api/v1/visits",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert pre.headers["Access-Control-Allow-Origin"] == ORIGIN
    ok = await client.post(
        "/api/v1/visits",
        json={"site_key": "shop", "url": YANDEX_URL},
        headers={"Origin": "https://www.shop.example.ru", "User-Agent": BROWSER_UA},
    )
    assert ok.status == 200
    assert ok.headers["Access-Control-Allow-Origin"] == "https://www.shop.example.ru"
    evil = await client.post(
        "/api/v1/visits",
        json={"site_key": "shop", "url": YANDEX_URL},
        headers={"Origin": "https://evil.example.com", "User-Agent": BROWSER_UA},
    )
    assert evil.status == 403
    assert "Access-Control-Allow-Origin" not in evil.headers
    pre_evil = await client.options(
        "/api/v1/visits", headers={"Origin": "https://evil.example.com"}
    )
    assert "Access-Control-Allow-Origin" not in pre_evil.headers


async def test_malformed_json_is_400(client: Client, seeded: Seeded) -> None:
    resp = await post_raw(client, "/api/v1/visits", "{not json")
    assert resp.status == 400
    assert (await resp.json())["error"] == "malformed_json"


async def test_bad_fields_are_400_naming_the_field(client: Client, seeded: Seeded) -> None:
    cases = [
        ({"site_key": "shop"}, "url"),
        ({"site_key": "shop", "url": "https://shop.example.ru/?" + "a" * 2100}, "url"),
        (
            {"site_key": "shop", "url": "https://shop.example.ru/?utm_source=" + "x" * 300},
            "utm_source",
        ),
        ({"site_key": "shop", "url": "ftp://shop.example.ru/"}, "url"),
        ({"site_key": 5, "url": "https://shop.example.ru/"}, "site_key"),
        ({"site_key": "shop", "url": "https://shop.example.ru/", "visitor_id": "x"}, "visitor_id"),
    ]
    for body, field in cases:
        resp = await post_raw(client, "/api/v1/visits", json.dumps(body))
        assert resp.status == 400, body
        assert field in (await resp.json())["message"], body


async def test_an_unknown_site_key_is_404(client: Client, seeded: Seeded) -> None:
    resp = await post_raw(
        client, "/api/v1/visits", json.dumps({"site_key": "nope", "url": "https://a.ru/"})
    )
    assert resp.status == 404
    assert (await resp.json())["error"] == "unknown_site"


async def test_a_body_over_8_kb_is_413(client: Client, seeded: Seeded) -> None:
    body = json.dumps({"site_key": "shop", "url": "https://a.ru/", "pad": "x" * 9000})
    resp = await post_raw(client, "/api/v1/visits", body)
    assert resp.status == 413
    assert (await resp.json())["error"] == "too_large"


async def test_one_client_over_the_rate_gets_429(aiohttp_client: Any, settings: Settings) -> None:
    client = await aiohttp_client(create_app(with_settings(settings, visit_rate_per_minute=3)))
    await seed(client.app)
    statuses = []
    for _ in range(5):
        resp = await post_raw(
            client, "/api/v1/visits", json.dumps({"site_key": "shop", "url": YANDEX_URL})
        )
        statuses.append(resp.status)
    assert statuses == [200, 200, 200, 429, 429]


async def test_a_lease_survives_a_server_restart(aiohttp_client: Any, settings: Settings) -> None:
    first_app = await aiohttp_client(create_app(settings))
    await seed(first_app.app)
    body = await visit(first_app, url=YANDEX_URL)
    await first_app.close()

    second = await aiohttp_client(create_app(settings))
    resp = await post_raw(
        second, f"/api/v1/visits/{body['visit_id']}/ping", json.dumps({"site_key": "shop"})
    )
    assert resp.status == 200
    assert (await resp.json())["number"] == body["number"]
    again = await visit(second, url=YANDEX_URL, visitor_id=body["visitor_id"])
    assert again["number"] == body["number"]
    other = await visit(second, url=YANDEX_URL)
    assert other["number"] != body["number"]


async def test_concurrent_visits_are_all_recorded(client: Client, seeded: Seeded) -> None:
    bodies = await asyncio.gather(*(visit(client, url=YANDEX_URL) for _ in range(50)))
    async with client.app[sessionmaker_key]() as session:
        count = await session.scalar(select(func.count()).select_from(Visit))
    assert count == 50
    pooled = [b["number"] for b in bodies if b["kind"] == "pool"]
    assert len(pooled) == len(set(pooled)) == len(seeded.pool_numbers)


async def test_visits_are_recorded_after_postgresql_drops_the_connections(
    aiohttp_client: Any, pg_url: str, redis_prefix: str, redis_url: str, tmp_path: Path
) -> None:
    # What a PostgreSQL restart does to a running server: every connection it held dies.
    settings = Settings(
        database_url=pg_url,
        redis_url=Secret(redis_url),
        redis_prefix=redis_prefix,
        recordings_dir=tmp_path / "recordings",
        agi_port=0,
    )
    client = await aiohttp_client(create_app(settings))
    await seed(client.app)
    before = await visit(client, url=YANDEX_URL)
    admin = await asyncpg.connect(settings.database_url)
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    assert killed >= 1  # the visit writer's kept connection among them

    after = await visit(client, url=YANDEX_URL)

    async with client.app[sessionmaker_key]() as session:
        ids = set(await session.scalars(select(Visit.id)))
    assert ids == {before["visit_id"], after["visit_id"]}
