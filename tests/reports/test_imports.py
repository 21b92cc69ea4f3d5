"""Spend and deal imports through the API: line-numbered errors, replacement, idempotency."""

from __future__ import annotations

from typing import Any

from aiohttp import FormData

from tests.admin.conftest import CSRF_INPUT, add_people, login
from tests.conftest import Seeded
from tests.reports import fixture
from tests.reports.conftest import Client, Loaded, bearer, import_spend_csv
from tests.reports.tables import table_cells


async def stored_spend(client: Client, token: str, first: str, last: str) -> list[Any]:
    resp = await client.get(
        f"/api/v1/spend?site=shop&from={first}&to={last}", headers=bearer(token)
    )
    assert resp.status == 200, await resp.text()
    return list((await resp.json())["rows"])


async def total_spend(client: Client, token: str) -> float:
    resp = await client.get(
        "/api/v1/reports/calls?site=shop&from=2026-03-01&to=2026-03-04", headers=bearer(token)
    )
    return float((await resp.json())["totals"]["spend"])


async def test_the_same_csv_imported_twice_does_not_double_spend(
    client: Client, seeded: Seeded
) -> None:
    token = seeded.marketer_token
    first = await import_spend_csv(client, token, fixture.SPEND_CSV)
    second = await import_spend_csv(client, token, fixture.SPEND_CSV)
    assert first == (200, {"rows": 7, "keys": 7, "replaced": 0, "currency": "RUB",
                           "currencies": ["RUB"], "from": "2026-03-01", "to": "2026-03-04"})  # fmt: skip
    assert second[1]["replaced"] == 7
    assert len(await stored_spend(client, token, "2026-03-01", "2026-03-04")) == 7
    assert await total_spend(client, token) == 5199.5  # 4200.50 + 999.00, not twice that


async def test_a_reimport_replaces_only_the_keys_it_contains(
    client: Client, seeded: Seeded
) -> None:
    token = seeded.marketer_token
    await import_spend_csv(client, token, fixture.SPEND_CSV)
    status, body = await import_spend_csv(
        client,
        token,
        "date,source,medium,campaign,keyword,amount,currency\n"
        "2026-03-01,Yandex,CPC,brand,sofa,1200,RUB\n",
    )
    assert (status, body["replaced"]) == (200, 1)
    rows = await stored_spend(client, token, "2026-03-01", "2026-03-01")
    assert [(r["source"], r["medium"], r["amount"]) for r in rows] == [("yandex", "cpc", 1200.0)]
    assert await total_spend(client, token) == 5199.5 + 200


async def test_rows_of_one_import_with_the_same_key_add_up(client: Client, seeded: Seeded) -> None:
    text = (
        "date;source;medium;campaign;amount;currency\n"
        "01.03.2026;yandex;cpc;brand;1 000,25;RUB\n"
        "01.03.2026;yandex;cpc;brand;99,75;RUB\n"
    )
    status, body = await import_spend_csv(client, seeded.marketer_token, text)
    assert (status, body["rows"], body["keys"]) == (200, 2, 1)
    rows = await stored_spend(client, seeded.marketer_token, "2026-03-01", "2026-03-01")
    assert [(r["campaign"], r["keyword"], r["amount"]) for r in rows] == [("brand", "", 1100.0)]


async def test_bad_csv_rows_are_rejected_with_their_line_numbers(
    client: Client, seeded: Seeded
) -> None:
    text = (
        "date,source,medium,campaign,keyword,amount,currency\n"  # line 1
        "2026-03-01,yandex,cpc,brand,sofa,100,RUB\n"  # 2: fine
        '2026-03-01,yandex,cpc,"brand\nspring",sofa,abc,RUB\n'  # 3-4: one record, bad amount
        "2026-03-32,yandex,cpc,brand,sofa,100,RUB\n"  # 5: no such day
        "\n"  # 6: blank, skipped
        "2026-03-02,,cpc,brand,sofa,100,RUB\n"  # 7: no source
        "2026-03-02,yandex,cpc,brand,sofa,-5,RUB\n"  # 8: negative
        "2026-03-02,yandex,cpc,brand,sofa,1.005,RUB\n"  # 9: a third decimal
        "2026-03-02,yandex,cpc,brand\n"  # 10: short
        "2026-03-02,yandex,cpc,brand,sofa,10,RUB\n"  # 11: fine
    )
    status, body = await import_spend_csv(client, seeded.marketer_token, text)
    assert status == 400
    assert body["error"] == "invalid_rows"
    assert [d["line"] for d in body["details"]] == [3, 5, 7, 8, 9, 10]
    reasons = {d["line"]: d["reason"] for d in body["details"]}
    assert "not a number" in reasons[3]
    assert "source is empty" in reasons[7]
    assert "negative" in reasons[8]
    assert "two decimals" in reasons[9]
    assert "expected 7 fields, got 4" in reasons[10]
    assert "line 3:" in body["message"]
    assert await stored_spend(client, seeded.marketer_token, "2026-03-01", "2026-03-31") == []


async def test_a_csv_without_the_required_columns_is_rejected_at_line_1(
    client: Client, seeded: Seeded
) -> None:
    status, body = await import_spend_csv(
        client, seeded.marketer_token, "date,source,campaign,amount\n2026-03-01,a,b,1\n"
    )
    assert status == 400
    assert body["details"][0]["line"] == 1
    assert "medium, currency" in body["details"][0]["reason"]


async def test_spend_in_another_currency_converts_at_the_rate_table_and_says_which_rate(
    client: Client, seeded: Seeded
) -> None:
    token = seeded.marketer_token
    await import_spend_csv(client, token, fixture.SPEND_CSV)  # fixes the site's currency: RUB
    status, body = await import_spend_csv(
        client,
        token,
        "date,source,medium,amount,currency\n"
        "2026-03-05,google,cpc,10,usd\n"  # Thursday: that day's rate
        "2026-03-08,google,cpc,2,USD\n"  # Sunday: Friday's rate
        "2026-03-20,google,cpc,5,USD\n",  # no rate within a week: left out, flagged
    )
    assert status == 200, body
    assert (body["currency"], body["currencies"]) == ("RUB", ["USD"])
    admin = bearer(seeded.admin_token)
    resp = await client.post(
        "/api/v1/currency-rates",
        data=b"date,currency,rate,base,source\n2026-03-05,USD,90.5,RUB,cbr\n"
        b'2026-03-06,USD,"91,25",RUB,cbr\n',
        headers={**admin, "Content-Type": "text/csv"},
    )
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"stored": 2, "from": "2026-03-05", "to": "2026-03-06"}
    resp = await client.get(
        "/api/v1/reports/calls?site=shop&from=2026-03-05&to=2026-03-20", headers=bearer(token)
    )
    report = await resp.json()
    assert report["totals"]["spend"] == 1087.5  # 10 x 90.50 + 2 x 91.25; the 5 USD are not guessed
    assert report["rates"] == [
        {"currency": "USD", "base": "RUB", "rate": 90.5, "rate_date": "2026-03-05",
         "from": "2026-03-05", "to": "2026-03-05", "source": "cbr"},
        {"currency": "USD", "base": "RUB", "rate": 91.25, "rate_date": "2026-03-06",
         "from": "2026-03-08", "to": "2026-03-08", "source": "cbr"},
    ]  # fmt: skip
    assert report["missing_rates"] == [{"currency": "USD", "date": "2026-03-20", "amount": 5.0}]
    page = await client.get(
        "/reports?site=shop&from=2026-03-05&to=2026-03-20", headers=bearer(token)
    )
    html = " ".join((await page.text()).split())
    assert "converted at 1 USD = 91.25 RUB of 2026-03-06 (cbr) for 2026-03-08" in html
    assert 'id="missing-rates"' in html and "5.00 USD on 2026-03-20" in html


async def test_rates_are_checked_line_by_line_and_kept_by_admins(
    client: Client, seeded: Seeded
) -> None:
    csv_headers = {"Content-Type": "text/csv"}
    bad = b"date,currency,rate,base\n2026-03-05,USD,0,RUB\n2026-03-05,USD,1.123456789,RUB\n"
    resp = await client.post(
        "/api/v1/currency-rates", data=bad, headers={**bearer(seeded.admin_token), **csv_headers}
    )
    assert resp.status == 400
    assert [d["line"] for d in (await resp.json())["details"]] == [2, 3]
    resp = await client.post(
        "/api/v1/currency-rates",
        data=b"date,currency,rate,base\n2026-03-05,USD,90,RUB\n",
        headers={**bearer(seeded.marketer_token), **csv_headers},
    )
    assert resp.status == 403  # marketers read rates; admins keep them
    resp = await client.get("/api/v1/currency-rates", headers=bearer(seeded.marketer_token))
    assert (await resp.json())["rates"] == []


async def test_rows_of_one_key_in_two_currencies_are_refused(
    client: Client, seeded: Seeded
) -> None:
    status, body = await import_spend_csv(
        client,
        seeded.marketer_token,
        "date,source,medium,amount,currency\n2026-03-05,yandex,cpc,10,RUB\n2026-03-05,yandex,cpc,1,USD\n",
    )
    assert status == 400
    assert body["details"][0]["line"] == 3
    assert "differs from RUB" in body["details"][0]["reason"]


async def test_json_rows_and_a_multipart_upload_import_like_csv(
    client: Client, seeded: Seeded
) -> None:
    h = bearer(seeded.marketer_token)
    resp = await client.post(
        "/api/v1/spend",
        json={
            "site": "shop",
            "rows": [
                {"date": "2026-03-01", "source": "yandex", "medium": "cpc", "campaign": "brand",
                 "amount": 10.5, "currency": "RUB"},
                {"date": "2026-03-01", "source": "google", "medium": "cpc", "amount": "x",
                 "currency": "RUB"},
            ],
        },
        headers=h,
    )  # fmt: skip
    assert resp.status == 400
    assert [d["line"] for d in (await resp.json())["details"]] == [2]
    form = FormData()
    form.add_field("site", "shop")
    form.add_field(
        "file", fixture.SPEND_CSV.encode(), filename="spend.csv", content_type="text/csv"
    )
    resp = await client.post("/api/v1/spend", data=form, headers=h)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["keys"] == 7


async def test_a_deal_posted_twice_counts_once(client: Client, loaded: Loaded) -> None:
    deal = {"site": "shop", "deal_id": "d1", "call_id": loaded.calls["c1"], "amount": 5000,
            "time": "2026-03-05T12:00:00+03:00"}  # fmt: skip
    resp = await client.post("/api/v1/conversions", json=deal, headers=loaded.headers)
    assert resp.status == 200  # nothing new: the fixture posted d1 already
    assert (await resp.json())["conversions"] == [
        {"deal_id": "d1", "id": 1, "call_id": loaded.calls["c1"], "matched": True, "created": False}
    ]
    body = await (
        await client.get(
            "/api/v1/reports/calls?site=shop&from=2026-03-01&to=2026-03-03", headers=loaded.headers
        )
    ).json()
    assert body["totals"]["revenue"] == 7000.0


async def test_a_resent_deal_with_a_new_amount_replaces_the_old_one(
    client: Client, loaded: Loaded
) -> None:
    deal = {"site": "shop", "deal_id": "d1", "call_id": loaded.calls["c1"], "amount": "6000",
            "time": "2026-03-05T12:00:00+03:00"}  # fmt: skip
    resp = await client.post("/api/v1/conversions", json=deal, headers=loaded.headers)
    assert resp.status == 200
    body = await (
        await client.get(
            "/api/v1/reports/calls?site=shop&from=2026-03-01&to=2026-03-03", headers=loaded.headers
        )
    ).json()
    assert body["totals"]["revenue"] == 8000.0


async def test_a_deal_by_phone_matches_the_callers_latest_call_before_the_deal(
    client: Client, loaded: Loaded
) -> None:
    async def post(deal_id: str, time: str) -> Any:
        resp = await client.post(
            "/api/v1/conversions",
            json={"site": "shop", "deal_id": deal_id, "phone": fixture.CALLER_A, "amount": 1,
                  "time": time},
            headers=loaded.headers,
        )  # fmt: skip
        return (await resp.json())["conversions"][0]

    assert (await post("x1", "2026-03-03T17:59:00+03:00"))["call_id"] == loaded.calls["c4"]
    assert (await post("x2", "2026-03-03T18:00:00+03:00"))["call_id"] == loaded.calls["c5"]
    unmatched = await post("x3", "2026-03-02T14:59:00+03:00")  # before caller A's first call
    assert (unmatched["call_id"], unmatched["matched"]) == (None, False)


async def test_deals_in_a_csv_are_matched_and_bad_lines_named(
    client: Client, loaded: Loaded
) -> None:
    text = (
        "deal_id,call_id,phone,amount,currency,time\n"
        f"k1,{loaded.calls['c6']},,300,RUB,2026-03-04 10:00\n"
        "k2,,,300,RUB,2026-03-04 10:00\n"
        "k3,,+79160000006,300,EUR,2026-03-04 10:00\n"
        "k4,999999,,300,RUB,2026-03-04 10:00\n"
        "k5,,+79160000006,300,,yesterday\n"
    )
    resp = await client.post(
        "/api/v1/conversions?site=shop",
        data=text.encode(),
        headers={**loaded.headers, "Content-Type": "text/csv"},
    )
    assert resp.status == 400
    details = (await resp.json())["details"]
    assert [d["line"] for d in details] == [3, 4, 5, 6]
    assert "call_id or phone" in details[0]["reason"]
    assert "EUR differs from the site's RUB" in details[1]["reason"]
    assert "no call 999999" in details[2]["reason"]
    assert "ISO 8601" in details[3]["reason"]
    resp = await client.post(
        "/api/v1/conversions?site=shop",
        data="\n".join(text.splitlines()[:2]).encode(),
        headers={**loaded.headers, "Content-Type": "text/csv"},
    )
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["conversions"][0]["call_id"] == loaded.calls["c6"]


async def test_an_operator_may_not_read_reports_or_post_spend(
    client: Client, seeded: Seeded
) -> None:
    from calltracker.accounts import tokens
    from calltracker.keys import sessionmaker_key

    async with client.app[sessionmaker_key].begin() as session:
        _, token = await tokens.create_token(session, name="op", role="operator")
    for method, path in [
        ("GET", "/api/v1/reports/calls?site=shop"),
        ("GET", "/reports/calls.csv?site=shop"),
        ("POST", "/api/v1/spend?site=shop"),
        ("POST", "/api/v1/conversions"),
        ("GET", "/reports"),
    ]:
        resp = await client.request(method, path, headers=bearer(token))
        assert resp.status == 403, (method, path)


async def test_the_spend_page_imports_an_upload_and_lists_bad_lines(
    client: Client, seeded: Seeded
) -> None:
    h = bearer(seeded.marketer_token)
    resp = await client.get("/reports/spend", headers=h)
    assert resp.status == 200
    assert 'enctype="multipart/form-data"' in await resp.text()

    def upload(text: str) -> FormData:
        form = FormData()
        form.add_field("site", "shop")
        form.add_field("file", text.encode(), filename="spend.csv", content_type="text/csv")
        return form

    resp = await client.post("/reports/spend", data=upload(fixture.SPEND_CSV + "x,y\n"), headers=h)
    assert resp.status == 400
    assert table_cells(await resp.text(), "spend-errors") == [
        ["Line", "Problem"], ["9", "expected 9 fields, got 2"]
    ]  # fmt: skip
    resp = await client.post("/reports/spend", data=upload(fixture.SPEND_CSV), headers=h)
    assert resp.status == 200
    html = await resp.text()
    assert "Imported 7 rows into 7 day/label amounts (0 replaced)" in " ".join(html.split())
    rows = table_cells(html, "spend-rows")
    assert rows[1] == [
        "2026-03-04", "yandex", "cpc", "brand", "sofa", "900", "30", "999.00 RUB", "import"
    ]  # fmt: skip
    assert len(rows) == 1 + 7


async def test_a_logged_in_marketer_uploads_spend_with_the_forms_csrf_token(
    client: Client, seeded: Seeded
) -> None:
    await add_people(client.app)
    await login(client, "marketer")
    page = await (await client.get("/reports/spend")).text()
    found = CSRF_INPUT.search(page)
    assert found is not None

    def upload(token: str | None) -> FormData:
        form = FormData()
        if token is not None:
            form.add_field("csrf_token", token)
        form.add_field("site", "shop")
        form.add_field(
            "file", fixture.SPEND_CSV.encode(), filename="s.csv", content_type="text/csv"
        )
        return form

    resp = await client.post("/reports/spend", data=upload(None))
    assert resp.status == 403  # a cross-site form cannot import spend with the cookie alone
    resp = await client.post("/reports/spend", data=upload(found.group(1)))
    assert resp.status == 200, await resp.text()
    assert len(table_cells(await resp.text(), "spend-rows")) == 1 + 7
