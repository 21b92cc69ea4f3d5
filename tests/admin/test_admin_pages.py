"""Admin pages: sites, pools, static numbers, CSV import, users and tokens."""

from __future__ import annotations

from typing import Any

import aiohttp
from sqlalchemy import select

from calltracker.db.models import TrackingNumber
from calltracker.keys import catalog_key, sessionmaker_key
from tests.admin.conftest import PASSWORD, Client, People, bearer, embedded_only, login
from tests.conftest import Seeded


async def post_form(client: Client, path: str, csrf: str, **fields: Any) -> aiohttp.ClientResponse:
    return await client.post(path, data={"csrf_token": csrf, **fields}, allow_redirects=False)


async def test_site_settings_are_saved_from_the_form(
    client: Client, seeded: Seeded, people: People
) -> None:
    csrf = await login(client, "admin")
    resp = await post_form(
        client,
        "/admin/sites/shop",
        csrf,
        name="Shop",
        domains="shop.example.ru, new.example.ru",
        default_number="8 495 000-00-01",
        country="RU",
        timezone="Europe/Moscow",
        pooled_mediums="cpc\npaid",
        target_min_talk_seconds="45",
        unique_window_days="14",
        fallback_number_id="0",
    )
    assert resp.status == 303, await resp.text()
    site = await (await client.get("/api/v1/sites/shop")).json()
    assert site["domains"] == ["shop.example.ru", "new.example.ru"]
    assert site["default_number"] == "+74950000001"
    assert site["pooled_mediums"] == ["cpc", "paid"]
    assert (site["target_min_talk_seconds"], site["unique_window_days"]) == (45, 14)
    info = client.app[catalog_key].current.sites_by_key["shop"]
    assert info.pools_traffic("cpc") and not info.pools_traffic("organic")


@embedded_only
async def test_a_bad_site_setting_is_shown_on_the_form(
    client: Client, seeded: Seeded, people: People
) -> None:
    csrf = await login(client, "admin")
    resp = await post_form(
        client, "/admin/sites/shop", csrf, default_number="+74950000000", timezone="Mars/Olympus"
    )
    assert resp.status == 400
    assert "unknown time zone &#39;Mars/Olympus&#39;" in await resp.text()


@embedded_only
async def test_the_site_page_shows_the_widget_snippet(
    client: Client, seeded: Seeded, people: People
) -> None:
    await login(client, "admin")
    html = await (await client.get("/admin/sites/shop")).text()
    assert (
        "&lt;script async src=&#34;http://127.0.0.1:8080/widget.js&#34; "
        "data-site=&#34;shop&#34;&gt;&lt;/script&gt;" in html
    )


async def test_an_admin_adds_a_static_number_for_a_billboard(
    client: Client, seeded: Seeded, people: People
) -> None:
    csrf = await login(client, "admin")
    resp = await post_form(
        client,
        "/admin/static-numbers",
        csrf,
        site="shop",
        number="8 (495) 300-00-07",
        source="billboard",
        medium="outdoor",
        campaign="tverskaya-2026",
    )
    assert (resp.status, resp.headers["Location"]) == (303, "/admin/static-numbers?done=added")
    number = client.app[catalog_key].current.lookup_number("74953000007")
    assert number is not None
    assert (number.kind, number.source, number.medium, number.campaign) == (
        "static",
        "billboard",
        "outdoor",
        "tverskaya-2026",
    )
    listing = await (await client.get("/admin/static-numbers")).text()
    assert "+74953000007" in listing and "tverskaya-2026" in listing


async def test_a_pool_is_created_and_edited_from_its_pages(
    client: Client, seeded: Seeded, people: People
) -> None:
    csrf = await login(client, "admin")
    resp = await post_form(
        client,
        "/admin/sites/shop/pools",
        csrf,
        name="brand",
        hold_minutes="10",
        policy="share_oldest",
        numbers="+7 495 400-00-01\n+7 495 400-00-02",
    )
    assert resp.status == 303, await resp.text()
    pool_path = resp.headers["Location"].split("?")[0]
    resp = await post_form(client, pool_path, csrf, hold_minutes="20", policy="default_number")
    assert resp.status == 303
    pools = (await (await client.get("/api/v1/pools")).json())["pools"]
    brand = next(p for p in pools if p["name"] == "brand")
    assert (brand["hold_seconds"], brand["policy"], brand["numbers"]) == (1200, "default_number", 2)


async def test_the_pools_page_shows_live_utilisation(
    client: Client, seeded: Seeded, people: People
) -> None:
    await client.post(
        "/api/v1/visits",
        json={"site_key": "shop", "url": "https://shop.example.ru/?gclid=1"},
        headers={"User-Agent": "Mozilla/5.0"},
    )
    await login(client, "admin")
    html = await (await client.get("/admin/pools")).text()
    assert "1/3 (33%)" in html
    pools = (await (await client.get("/api/v1/pools")).json())["pools"]
    live = pools[0]["live"]
    assert (live["leased"], live["peak_concurrent"], live["exhaustion_count"]) == (1, 1, 0)
    assert live["recommended_size"] >= 1


CSV_BAD = (
    "number,site,pool,source,medium,campaign\n"
    "+7 495 500-00-01,shop,main,,,\n"
    "12345,shop,main,,,\n"
    "+7 495 500-00-03,nope,,radio,offline,\n"
    "+7 495 500-00-01,shop,main,,,\n"
    "+7 495 500-00-05,shop,,,,\n"
    "+74951230001,shop,main,,,\n"  # already in the seeded pool
)


async def test_a_csv_import_lists_every_bad_line_and_imports_nothing(
    client: Client, seeded: Seeded, people: People
) -> None:
    csrf = await login(client, "admin")
    resp = await post_form(client, "/admin/numbers/import", csrf, text=CSV_BAD)
    assert resp.status == 400
    html = await resp.text()
    for line in ("3", "4", "5", "6", "7"):
        assert f'<td class="num">{line}</td>' in html, line
    assert '<td class="num">2</td>' not in html
    assert "duplicate of line 2" in html and "already tracked" in html
    async with client.app[sessionmaker_key]() as session:
        count = len((await session.scalars(select(TrackingNumber))).all())
    assert count == 4  # the seeded 3 pooled + 1 static, nothing more


async def test_a_good_csv_file_imports_pooled_and_static_numbers(
    client: Client, seeded: Seeded, people: People
) -> None:
    csrf = await login(client, "admin")
    data = aiohttp.FormData()
    data.add_field("csrf_token", csrf)
    data.add_field(
        "file",
        b"number;site;pool;source;medium;campaign\n"
        b"+7 495 500-00-01;shop;main;;;\n"
        b"8 495 500-00-02;shop;;radio;offline;spring\n",
        filename="numbers.csv",
        content_type="text/csv",
    )
    resp = await client.post("/admin/numbers/import", data=data)
    assert resp.status == 200, await resp.text()
    assert "Imported 2 number(s)." in await resp.text()
    catalog = client.app[catalog_key].current
    pooled, static = catalog.numbers["+74955000001"], catalog.numbers["+74955000002"]
    assert (pooled.kind, pooled.pool_id) == ("pool", seeded.pool_id)
    assert (static.kind, static.source, static.campaign) == ("static", "radio", "spring")


async def test_the_import_api_answers_per_line_errors(
    client: Client, seeded: Seeded, people: People
) -> None:
    resp = await client.post(
        "/api/v1/numbers/import",
        data=CSV_BAD,
        headers={**bearer(people.tokens["admin"]), "Content-Type": "text/csv"},
    )
    assert resp.status == 400
    body = await resp.json()
    assert [e["line"] for e in body["errors"]] == [3, 4, 5, 6, 7]
    assert body["errors"][0]["value"] == "12345"


async def test_an_admin_adds_a_user_who_can_then_log_in(
    client: Client, seeded: Seeded, people: People
) -> None:
    csrf = await login(client, "admin")
    resp = await post_form(
        client, "/admin/users", csrf, username="Olga", role="operator", password="s3cret-pass-1"
    )
    assert resp.status == 303
    await login(client, "olga", "s3cret-pass-1")
    me = await (await client.get("/api/v1/me")).json()
    assert (me["name"], me["role"]) == ("olga", "operator")


async def test_disabling_a_user_ends_their_sessions_and_tokens(
    client: Client, seeded: Seeded, people: People
) -> None:
    await login(client, "marketer")
    marketer_cookie = client.session.cookie_jar.filter_cookies(client.make_url("/"))["ct_session"]
    csrf = await login(client, "admin")
    resp = await post_form(
        client, f"/admin/users/{people.ids['marketer']}", csrf, role="marketer", disabled="1"
    )
    assert resp.status == 303
    client.session.cookie_jar.clear()
    gone = await client.get("/api/v1/me", headers={"Cookie": f"ct_session={marketer_cookie.value}"})
    assert gone.status == 401
    token = await client.get("/api/v1/me", headers=bearer(people.tokens["marketer"]))
    assert token.status == 401


async def test_a_user_token_carries_the_users_current_role(
    client: Client, seeded: Seeded, people: People
) -> None:
    token = bearer(people.tokens["marketer"])
    assert (await client.get("/api/v1/users", headers=token)).status == 403
    resp = await client.patch(
        f"/api/v1/users/{people.ids['marketer']}",
        json={"role": "admin"},
        headers=bearer(people.tokens["admin"]),
    )
    assert resp.status == 200
    assert (await client.get("/api/v1/users", headers=token)).status == 200


async def test_a_user_creates_and_revokes_their_own_token(
    client: Client, seeded: Seeded, people: People
) -> None:
    csrf = await login(client, "operator")
    resp = await post_form(client, "/account/tokens", csrf, name="softphone")
    assert resp.status == 200
    html = await resp.text()
    plaintext = html.split('<p class="token" id="token">')[1].split("</p>")[0]
    me = await (await client.get("/api/v1/me", headers=bearer(plaintext))).json()
    assert me["user"]["username"] == "operator" and me["role"] == "operator"
    tokens = (await (await client.get("/api/v1/me/tokens")).json())["tokens"]
    mine = next(t for t in tokens if t["name"] == "operator:softphone")
    resp = await post_form(client, f"/account/tokens/{mine['id']}/revoke", csrf)
    assert resp.status == 303
    assert (await client.get("/api/v1/me", headers=bearer(plaintext))).status == 401


async def test_changing_your_password_needs_the_current_one(
    client: Client, seeded: Seeded, people: People
) -> None:
    csrf = await login(client, "operator")
    wrong = await post_form(
        client, "/account/password", csrf, current="nope", password="a-new-password"
    )
    assert wrong.status == 400
    ok = await post_form(
        client, "/account/password", csrf, current=PASSWORD, password="a-new-password"
    )
    assert ok.status == 303
    assert (await client.get("/account")).status == 200  # this session stays
    await login(client, "operator", "a-new-password")
