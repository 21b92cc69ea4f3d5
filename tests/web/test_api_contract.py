"""Every /api/v1 route, called for real, answers what the OpenAPI document says it answers."""

# One walk through the whole API with seeded data and real tokens, in both modes: each
# response is checked against the operation in the document the server itself serves, by
# status and media type, the JSON with jsonschema (OpenAPI 3.1 schemas are JSON Schema
# 2020-12). A route whose handler declares no response type has only the `default` error
# response in the document, so its real answer cannot pass; the walk must reach every route.

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from jsonschema import Draft202012Validator

from calltracker.app import create_app
from calltracker.keys import adspend_key, settings_key
from calltracker.settings import Settings
from calltracker.web import openapi
from tests.admin.conftest import PASSWORD, Client, add_people
from tests.admin.test_calls import add_call, add_visit
from tests.adspend.fakes.direct import Campaign, FakeDirect
from tests.conftest import Seeded

JSON = "application/json"
ORIGIN = "https://shop.example.ru"
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@dataclass
class Contract:
    client: Client
    token: str  # the admin's: every private route allows admin
    doc: dict[str, Any] = field(default_factory=dict)
    called: set[tuple[str, str]] = field(default_factory=set)

    async def call(
        self, method: str, template: str, status: int, *, token: str | None = "", **kw: Any
    ) -> Any:
        """Call the route, check the answer against the document, return its JSON."""
        params = kw.pop("path", {})
        headers = dict(kw.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token or self.token}"
        path = template.format(**params)
        resp = await self.client.request(method, path, headers=headers, **kw)
        body = await resp.read()
        assert resp.status == status, (method, path, resp.status, body[:500])
        self.called.add((method.lower(), template))
        return self.check(method, template, resp.status, resp.content_type, body)

    def check(self, method: str, template: str, status: int, media: str, body: bytes) -> Any:
        responses = self.doc["paths"][template][method.lower()]["responses"]
        declared = responses.get(str(status), responses["default"])
        content = declared.get("content")
        where = f"{method} {template} {status}"
        if content is None:
            assert not body, f"{where}: the document says no content"
            return None
        assert media in content, f"{where}: {media} is not one of {sorted(content)}"
        if media != JSON:
            return body
        data = json.loads(body)
        schema = {**content[JSON]["schema"], "components": self.doc["components"]}
        errors = sorted(
            Draft202012Validator(
                schema, format_checker=Draft202012Validator.FORMAT_CHECKER
            ).iter_errors(data),
            key=str,
        )
        assert not errors, f"{where}: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5]
        )
        return data


async def test_every_json_route_answers_as_documented(client: Client, seeded: Seeded) -> None:
    people = await add_people(client.app)
    api = Contract(client, seeded.admin_token)
    served = await client.get(
        "/api/v1/openapi.json", headers={"Authorization": f"Bearer {seeded.admin_token}"}
    )
    api.doc = await served.json()
    await api.call("GET", "/api/v1/openapi.json", 200)  # the document describes itself too

    # The visit API, as the widget and AMP pages call it.
    cors = {"Origin": ORIGIN, "User-Agent": UA}
    for template in ("/api/v1/visits", "/api/v1/visits/{visit_id}/ping"):
        await api.call("OPTIONS", template, 204, token=None, headers=cors, path={"visit_id": "x"})
    await api.call(
        "OPTIONS", "/api/v1/visits/{visit_id}/events", 204, token=None, path={"visit_id": "x"}
    )
    visit = await api.call(
        "POST",
        "/api/v1/visits",
        200,
        token=None,
        headers=cors,
        data=json.dumps(
            {"site_key": "shop", "url": f"{ORIGIN}/?utm_source=yandex&utm_medium=cpc"}
        ),  # text/plain, as the widget sends it
    )
    v = {"visit_id": visit["visit_id"]}
    await api.call(
        "POST", "/api/v1/visits/{visit_id}/ping", 200, token=None, path=v, json={"site_key": "shop"}
    )
    event = {"site_key": "shop", "type": "phone_click"}
    await api.call("POST", "/api/v1/visits/{visit_id}/events", 204, token=None, path=v, json=event)
    await api.call("POST", "/api/v1/visits", 400, token=None, json={"site_key": 5})
    await api.call(
        "GET",
        "/api/v1/amp/number",
        200,
        token=None,
        headers=cors,
        params={"site_key": "shop", "__amp_source_origin": ORIGIN},
    )

    # The catalog.
    await api.call("GET", "/api/v1/sites", 200)
    site = await api.call(
        "POST",
        "/api/v1/sites",
        201,
        json={"key": "clinic", "domains": ["clinic.example.ru"], "default_number": "+78120000000"},
    )
    s = {"site": site["key"]}
    await api.call("PATCH", "/api/v1/sites/{site}", 200, path=s, json={"name": "Clinic"})
    pool = await api.call(
        "POST", "/api/v1/sites/{site}/pools", 201, path=s, json={"numbers": ["+78121111111"]}
    )
    p = {"pool": pool["id"]}
    await api.call(
        "POST", "/api/v1/pools/{pool}/numbers", 201, path=p, json={"numbers": ["+78121111112"]}
    )
    await api.call("PATCH", "/api/v1/pools/{pool}", 200, path=p, json={"policy": "share_oldest"})
    await api.call("GET", "/api/v1/pools/{pool}/stats", 200, path=p)
    await api.call("GET", "/api/v1/pools", 200)
    static = await api.call(
        "POST",
        "/api/v1/sites/{site}/static-numbers",
        201,
        path=s,
        json={"number": "+78122222222", "source": "radio"},
    )
    await api.call("GET", "/api/v1/sites/{site}", 200, path=s)
    await api.call("GET", "/api/v1/numbers", 200, params={"kind": "static"})
    await api.call(
        "PATCH",
        "/api/v1/numbers/{number}",
        200,
        path={"number": static["id"]},
        json={"active": False},
    )
    csv = {"headers": {"Content-Type": "text/csv"}}
    good = "number,site,pool,source,medium,campaign\n+7 812 333-33-33,clinic,,tv,offline,\n"
    await api.call("POST", "/api/v1/numbers/import", 201, data=good, **csv)
    await api.call("POST", "/api/v1/numbers/import", 400, data=good + "12345,clinic,,,,\n", **csv)

    # Users and tokens; your own account (the marketer's token acts as that user).
    await api.call("GET", "/api/v1/users", 200)
    user = await api.call(
        "POST",
        "/api/v1/users",
        201,
        json={"username": "olga", "role": "operator", "password": "a long enough password"},
    )
    u = {"user": user["id"]}
    await api.call("GET", "/api/v1/users/{user}", 200, path=u)
    await api.call("PATCH", "/api/v1/users/{user}", 200, path=u, json={"extension": "105"})
    issued = await api.call("POST", "/api/v1/users/{user}/tokens", 201, path=u, json={"name": "t"})
    await api.call("GET", "/api/v1/tokens", 200)
    await api.call("DELETE", "/api/v1/tokens/{token}", 204, path={"token": issued["id"]})
    mine = people.tokens["marketer"]
    me = await api.call("GET", "/api/v1/me", 200, token=mine)
    assert me["user"]["username"] == "marketer"
    assert (await api.call("GET", "/api/v1/me", 200))["user"] is None  # a service token
    own = await api.call("POST", "/api/v1/me/tokens", 201, token=mine, json={"name": "laptop"})
    await api.call("GET", "/api/v1/me/tokens", 200, token=mine)
    await api.call(
        "DELETE", "/api/v1/me/tokens/{token}", 204, token=mine, path={"token": own["id"]}
    )
    await api.call(
        "POST",
        "/api/v1/me/password",
        204,
        token=mine,
        json={"current": PASSWORD, "password": "another long password"},
    )

    # Calls, with a visit and a recording.
    await add_visit(client.app, "CONTRACTVISIT", "yandex")
    root = client.app[settings_key].recordings_dir
    (root / "2026").mkdir(parents=True, exist_ok=True)
    (root / "2026" / "c.mp3").write_bytes(b"ID3" + bytes(64))
    call_id = await add_call(
        client.app, site_id=seeded.site_id, visit_id="CONTRACTVISIT", recording="2026/c.mp3"
    )
    c = {"call": call_id}
    await api.call("GET", "/api/v1/calls", 200, params={"status": "answered", "limit": "10"})
    await api.call("GET", "/api/v1/calls", 400, params={"site_id": "x"})
    await api.call("GET", "/api/v1/calls/{call}", 200, path=c)
    await api.call("GET", "/api/v1/calls/{call}/recording", 200, path=c)
    await api.call("GET", "/api/v1/calls/{call}", 404, path={"call": 999999})

    # Reports, spend and revenue.
    rows = [
        {
            "date": "2026-11-20",
            "source": "yandex",
            "medium": "cpc",
            "amount": 1500,
            "currency": "RUB",
        }
    ]
    await api.call("POST", "/api/v1/spend", 200, json={"site": "shop", "rows": rows})
    await api.call("POST", "/api/v1/spend", 400, json={"site": "shop", "rows": [{"date": "x"}]})
    await api.call("GET", "/api/v1/spend", 200, params={"site": "shop", "from": "2026-11-01"})
    deal = {
        "site": "shop",
        "deal_id": "D1",
        "call_id": call_id,
        "amount": 9900,
        "time": "2026-11-21T10:00:00+03:00",
    }
    await api.call("POST", "/api/v1/conversions", 201, json=deal)
    await api.call("POST", "/api/v1/conversions", 200, json=deal)
    await api.call(
        "GET",
        "/api/v1/reports/calls",
        200,
        params={"site": "shop", "from": "2026-11-01", "group": "medium"},
    )
    for group in ("campaign", "manager"):
        await api.call(
            "GET",
            "/api/v1/reports/deals",
            200,
            params={"site": "shop", "from": "2026-11-01", "group": group, "margin": "30%"},
        )
    await api.call("GET", "/api/v1/reports/deals", 400, params={"site": "shop", "margin": "x"})
    await api.call("GET", "/api/v1/deals", 200, params={"site": "shop", "status": "won"})

    # The CRMs' webhooks: public, each checked by its CRM's token or secret.
    b24 = await api.call(
        "POST",
        "/api/v1/integrations",
        201,
        json={
            "site": "shop",
            "kind": "bitrix24",
            "name": "portal",
            "config": {
                "webhook_url": "https://portal.bitrix24.ru/rest/1/c0de/",
                "deals": {"application_token": "b24-t0ken"},
            },
        },
    )
    event = {"event": "ONCRMDEALUPDATE", "data[FIELDS][ID]": "759",
             "auth[application_token]": "b24-t0ken"}  # fmt: skip
    hook = "/api/v1/crm/bitrix24/{integration}/events"
    await api.call("POST", hook, 200, token=None, path={"integration": b24["id"]}, data=event)
    await api.call(
        "POST", hook, 403, token=None, path={"integration": b24["id"]},
        data={**event, "auth[application_token]": "guess"},
    )  # fmt: skip
    amo = await api.call(
        "POST",
        "/api/v1/integrations",
        201,
        json={
            "site": "shop",
            "kind": "amocrm",
            "name": "amo",
            "config": {
                "base_url": "https://example.amocrm.ru",
                "access_token": "t",
                "deals": {"webhook_secret": "s3cret"},
            },
        },
    )
    await api.call(
        "POST",
        "/api/v1/crm/amocrm/{integration}/{secret}/events",
        200,
        token=None,
        path={"integration": amo["id"], "secret": "s3cret"},
        json={"leads": {"status": [{"id": "25399013", "status_id": "142"}]}},
    )

    # Integrations and their outbox.
    created = await api.call(
        "POST",
        "/api/v1/integrations",
        201,
        json={
            "site": "shop",
            "kind": "webhook",
            "name": "hook",
            "config": {"url": "https://hooks.example/in?t=1", "secret": WEBHOOK_SECRET},
        },
    )
    i = {"integration": created["id"]}
    assert created["secrets_set"] == ["secret", "url"]
    await api.call("GET", "/api/v1/integrations", 200, params={"site": "shop"})
    await api.call("GET", "/api/v1/integrations/{integration}", 200, path=i)
    await api.call(
        "PATCH", "/api/v1/integrations/{integration}", 200, path=i, json={"config": {"timeout": 5}}
    )
    await api.call(
        "GET", "/api/v1/integrations/{integration}/outbox", 200, path=i, params={"state": "failed"}
    )
    await api.call("POST", "/api/v1/integrations/{integration}/retry", 200, path=i)
    await api.call("DELETE", "/api/v1/integrations/{integration}", 204, path=i)

    # Ad spend pulled from a platform (a fake Direct), unmapped spend, the mapping, rates.
    direct = FakeDirect()
    await direct.start()
    try:
        await _ad_spend(api, client, direct)
    finally:
        await direct.close()

    documented = {(m, p) for p, ops in api.doc["paths"].items() for m in ops}
    assert documented - api.called == set(), "routes the walk did not call"


async def _ad_spend(api: Contract, client: Client, direct: FakeDirect) -> None:
    today = datetime.now(ZoneInfo("Europe/Moscow")).date()  # the seeded site's days
    direct.add(str(today), Campaign(9, "Без меток"), 1, 0, "", 100, 4, "50")
    config = {"token": direct.token, "api_url": direct.api_url, "rate_limit": 2.0}
    account = await api.call(
        "POST",
        "/api/v1/ad-accounts",
        201,
        # Switched off, so the server's own rounds leave it to this walk.
        json={"site": "shop", "platform": "yandex_direct", "name": "Direct", "config": config,
              "enabled": False},
    )  # fmt: skip
    assert account["secrets_set"] == ["token"]
    a = {"account": account["id"]}
    await api.call("POST", "/api/v1/ad-accounts", 400, json={"site": "shop", "name": "x"})
    await api.call("GET", "/api/v1/ad-accounts", 200, params={"site": "shop"})
    await api.call(
        "PATCH", "/api/v1/ad-accounts/{account}", 200, path=a, json={"config": {"tracking": False}}
    )
    await api.call("POST", "/api/v1/ad-accounts/{account}/sync", 202, path=a)
    assert (await client.app[adspend_key].sync_account(account["id"])).ok
    pulled = await api.call("GET", "/api/v1/ad-accounts/{account}", 200, path=a)
    assert pulled["status"]["pulled_through"] == str(today)

    window = {"site": "shop", "from": str(today), "to": str(today)}
    unmapped = await api.call("GET", "/api/v1/spend/unmapped", 200, params=window)
    assert [c["campaign_id"] for c in unmapped["campaigns"]] == ["9"]
    await api.call("GET", "/api/v1/spend/unmapped", 400, params={"site": "shop", "from": "x"})
    # Spend in dollars: one day has a rate, the other has none (a missing rate).
    rows = [
        {"date": str(today), "source": "google", "medium": "cpc", "amount": 10, "currency": "USD"},
        {"date": str(today - timedelta(days=20)), "source": "google", "medium": "cpc",
         "amount": 5, "currency": "USD"},
    ]  # fmt: skip
    await api.call("POST", "/api/v1/spend", 200, json={"site": "shop", "rows": rows})
    rate = {"date": str(today), "currency": "USD", "rate": "90.5", "base": "RUB", "source": "cbr"}
    await api.call("POST", "/api/v1/currency-rates", 200, json={"rates": [rate]})
    bad = "date,currency,rate,base\n2026-03-05,USD,0,RUB\n"
    csv = {"Content-Type": "text/csv"}
    await api.call("POST", "/api/v1/currency-rates", 400, data=bad, headers=csv)
    listed = await api.call("GET", "/api/v1/currency-rates", 200, params={"currency": "usd"})
    assert [r["rate"] for r in listed["rates"]] == ["90.50"]
    report = await api.call(
        "GET",
        "/api/v1/reports/calls",
        200,
        params={"site": "shop", "from": str(today - timedelta(days=20)), "to": str(today)},
    )
    assert report["rates"] and report["missing_rates"] and report["unmapped_spend"]

    mapping = await api.call(
        "PUT",
        "/api/v1/ad-mappings",
        200,
        json={"site": "shop", "platform": "yandex_direct", "campaign_id": "9",
              "source": "yandex", "medium": "cpc"},
    )  # fmt: skip
    assert mapping["rows_remapped"] == 1
    await api.call("PUT", "/api/v1/ad-mappings", 400, json={"site": "shop", "platform": "x"})
    await api.call("GET", "/api/v1/ad-mappings", 200, params={"site": "shop"})
    m = {"mapping": mapping["id"]}
    await api.call("DELETE", "/api/v1/ad-mappings/{mapping}", 200, path=m)
    await api.call("DELETE", "/api/v1/ad-accounts/{account}", 204, path=a)


async def _undeclared(request: web.Request) -> web.Response:
    return web.json_response({"sites": []})


def test_a_route_without_declared_types_cannot_pass() -> None:
    # What the walk relies on: an undeclared route documents only errors, so its answer fails.
    app = create_app(Settings(database_url="sqlite:///:memory:"))
    app.router.add_get("/api/v1/undeclared", _undeclared)
    contract = Contract(client=None, token="", doc=openapi.build_document(app))  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="'error' is a required property"):
        contract.check("GET", "/api/v1/undeclared", 200, JSON, b'{"sites": []}')
    contract.check("GET", "/api/v1/undeclared", 404, JSON, b'{"error": "x", "message": "y"}')
