"""The integrations API and CLI an admin uses, through the real app factory; secrets never show."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from calltracker.app import create_app
from calltracker.cli.main import main, setup_logging
from calltracker.integrations.webhook import generate_secret
from calltracker.keys import outbox_settings_key, recorder_key, sessionmaker_key
from calltracker.settings import Settings
from calltracker.telephony.calls import CallEnded, CallStarted, CallStatus
from tests.conftest import Mode, Seeded, seed

from .fakes.amocrm import FakeAmoCrm
from .fakes.bitrix24 import FakeBitrix24
from .fakes.webhook_receiver import FakeWebhookReceiver
from .outbox_support import World, bitrix_config, tiny_settings, wait_until

Client = TestClient[Any, Any]
embedded_only = pytest.mark.parametrize("mode", ["embedded"], indirect=True)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(name="api")
async def api_fixture(aiohttp_client: Any, settings: Settings) -> Client:
    app = create_app(settings)
    app[outbox_settings_key] = tiny_settings()
    client: Client = await aiohttp_client(app)
    return client


@pytest.fixture(name="seeded_api")
async def seeded_api_fixture(api: Client) -> Seeded:
    return await seed(api.app)


def world_of(api: Client, seeded: Seeded, settings: Settings) -> World:
    return World(api.app[sessionmaker_key], seeded.site_id, settings.database_url)


async def dead_or_done(world: World) -> bool:
    states = await world.states()
    return bool(states) and all(s in ("dead", "done") for s in states)


async def cli(monkeypatch: pytest.MonkeyPatch, mode: Mode, *argv: str) -> int:
    monkeypatch.setenv("CALLTRACKER_DATABASE_URL", mode.database_url)
    # main() runs its own event loop, so it gets a thread of its own.
    return await asyncio.to_thread(main, list(argv))


async def test_an_admin_adds_an_integration_and_sees_which_secrets_are_set_not_their_values(
    api: Client, seeded_api: Seeded, bitrix: FakeBitrix24
) -> None:
    h = bearer(seeded_api.admin_token)
    resp = await api.post(
        "/api/v1/integrations",
        json={
            "site": "shop",
            "kind": "bitrix24",
            "name": "Main CRM",
            "config": bitrix_config(bitrix),
            "trigger": "unique",
        },
        headers=h,
    )
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    assert created["secrets_set"] == ["webhook_url"]
    assert "webhook_url" not in created["config"]
    assert created["config"]["call_logging"] == "activity"
    assert (created["trigger"], created["stage"], created["enabled"]) == ("unique", "hangup", True)
    assert created["outbox"] == {
        "pending": 0,
        "sending": 0,
        "failed": 0,
        "dead": 0,
        "done": 0,
        "auth_failed": 0,
    }

    listing = await (await api.get("/api/v1/integrations?site=shop", headers=h)).json()
    assert [i["name"] for i in listing["integrations"]] == ["Main CRM"]

    resp = await api.patch(
        f"/api/v1/integrations/{created['id']}",
        json={"config": {"source_id": "WEB"}, "name": "CRM"},
        headers=h,
    )
    patched = await resp.json()
    assert resp.status == 200, patched
    assert (patched["name"], patched["config"]["source_id"]) == ("CRM", "WEB")
    assert patched["secrets_set"] == ["webhook_url"]  # kept, though the PATCH left it out

    resp = await api.delete(f"/api/v1/integrations/{created['id']}", headers=h)
    assert resp.status == 204
    resp = await api.get(f"/api/v1/integrations/{created['id']}", headers=h)
    assert resp.status == 404


@embedded_only
@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"kind": "bitrix24", "name": "x", "config": {}}, 400, "site is required"),
        ({"site": "shop", "kind": "crm", "name": "x", "config": {}}, 400, "kind must be one of"),
        (
            {"site": "shop", "kind": "bitrix24", "name": "x", "config": {"webhook_url": "nope"}},
            400,
            "bitrix24.webhook_url: must look like",
        ),
        (
            {"site": "shop", "kind": "amocrm", "name": "x", "config": {"base_url": "https://a"}},
            400,
            "amocrm.access_token: is required",
        ),
        ({"site": "nowhere", "kind": "amocrm", "name": "x", "config": {}}, 404, "unknown site"),
    ],
)
async def test_a_bad_integration_is_refused_naming_the_field(
    api: Client, seeded_api: Seeded, body: dict[str, Any], status: int, message: str
) -> None:
    resp = await api.post("/api/v1/integrations", json=body, headers=bearer(seeded_api.admin_token))
    assert resp.status == status
    assert message in (await resp.json())["message"]


@embedded_only
async def test_integrations_are_for_admins_only(api: Client, seeded_api: Seeded) -> None:
    for method, path in [
        ("GET", "/api/v1/integrations"),
        ("POST", "/api/v1/integrations"),
        ("GET", "/api/v1/integrations/1/outbox"),
        ("POST", "/api/v1/integrations/1/retry"),
    ]:
        resp = await api.request(method, path, headers=bearer(seeded_api.marketer_token))
        assert resp.status == 403, (method, path)
        assert (await api.request(method, path)).status == 401, (method, path)


async def test_a_permanent_rejection_shows_in_the_api_and_the_cli_and_retries_on_request(
    api: Client,
    seeded_api: Seeded,
    settings: Settings,
    mode: Mode,
    bitrix: FakeBitrix24,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    h = bearer(seeded_api.admin_token)
    world = world_of(api, seeded_api, settings)
    integration_id = await world.integration("bitrix24", bitrix_config(bitrix))
    bitrix.denied_methods.add("crm.lead.add")
    await world.call()
    await wait_until(lambda: dead_or_done(world), what="the row dead")

    dead = await (
        await api.get(f"/api/v1/integrations/{integration_id}/outbox?state=dead", headers=h)
    ).json()
    (row,) = dead["rows"]
    assert "Access denied." in row["last_error"] and row["error_kind"] == "permanent"
    detail = await (await api.get(f"/api/v1/integrations/{integration_id}", headers=h)).json()
    assert detail["outbox"]["dead"] == 1
    assert "Access denied." in detail["last_errors"][0]["last_error"]
    pending = await api.get(f"/api/v1/integrations/{integration_id}/outbox?state=nope", headers=h)
    assert pending.status == 400

    assert await cli(monkeypatch, mode, "integration", "status", str(integration_id)) == 0
    out = capsys.readouterr().out
    assert "dead 1" in out and "Access denied." in out

    bitrix.denied_methods.clear()
    resp = await api.post(
        f"/api/v1/integrations/{integration_id}/retry", json={"dead": True}, headers=h
    )
    assert await resp.json() == {"retried": 1}
    await wait_until(lambda: dead_or_done(world), what="the retry")
    assert await world.states() == ["done"]
    assert len(bitrix.leads) == 1


async def test_the_cli_adds_lists_and_retries(
    seeded_api: Seeded,
    mode: Mode,
    bitrix: FakeBitrix24,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = f'{{"webhook_url": "{bitrix.webhook_url}", "rate_limit": 50}}'
    code = await cli(
        monkeypatch,
        mode,
        "integration",
        "add",
        "shop",
        "bitrix24",
        "--name",
        "CRM",
        "--config-json",
        config,
        "--trigger",
        "target",
    )
    added = capsys.readouterr()
    assert code == 0, added.err
    assert "trigger target, stage hangup, enabled" in added.out
    assert "secrets set: webhook_url" in added.out

    assert await cli(monkeypatch, mode, "integration", "list") == 0
    listing = capsys.readouterr().out
    assert "\tbitrix24\tCRM\ttarget\thangup\tenabled\t0\t0\t0" in listing

    assert await cli(monkeypatch, mode, "integration", "retry", "1", "--dead") == 0
    assert "0 failed and dead row(s) of integration 1 queued again" in capsys.readouterr().out

    bad = '{"webhook_url": "https://b24.example/rest/1/c0de/", "colour": "red"}'
    code = await cli(
        monkeypatch,
        mode,
        "integration",
        "add",
        "shop",
        "bitrix24",
        "--name",
        "X",
        "--config-json",
        bad,
    )
    err = capsys.readouterr().err
    assert code == 1 and "unknown field(s) colour" in err and "c0de" not in err


async def test_secrets_never_reach_logs_or_api_responses(
    api: Client,
    seeded_api: Seeded,
    settings: Settings,
    mode: Mode,
    bitrix: FakeBitrix24,
    amo: FakeAmoCrm,
    receiver: FakeWebhookReceiver,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging("DEBUG")  # as `calltracker serve` configures it, at its most talkative
    caplog.set_level(logging.DEBUG)
    h = bearer(seeded_api.admin_token)
    whsec = generate_secret()
    secrets = {
        bitrix.code: "bitrix24",
        "amo-wr0ng-t0ken": "amocrm",
        whsec: "webhook",
        "hook-t0ken-42": "webhook url",
        "ga4-s3cret-value": "ga4",
        "y0-metrica-oauth-t0ken": "metrica",
    }
    configs = {
        "bitrix24": bitrix_config(bitrix),
        # A wrong token: the auth failure goes through the logs and the rows too.
        "amocrm": {"base_url": amo.url, "access_token": "amo-wr0ng-t0ken"},
        "webhook": {
            "url": f"{receiver.hook_url}?token=hook-t0ken-42",
            "secret": whsec,
            "allow_private_network": True,
        },
        "ga4": {"measurement_id": "G-ABC123", "api_secret": "ga4-s3cret-value"},
        "metrica": {"counter_id": 1, "oauth_token": "y0-metrica-oauth-t0ken"},
    }
    bodies: list[str] = []
    ids = []
    for kind, config in configs.items():
        # GA4 and Metrica stay off: their default endpoints are Google's and Yandex's.
        enabled = kind not in ("ga4", "metrica")
        resp = await api.post(
            "/api/v1/integrations",
            json={"site": "shop", "kind": kind, "name": kind, "config": config, "enabled": enabled},
            headers=h,
        )
        assert resp.status == 201
        bodies.append(await resp.text())
        ids.append((await resp.json())["id"])
    world = world_of(api, seeded_api, settings)
    await world.call()

    async def settled() -> bool:
        rows = await world.rows()
        return len(rows) == 3 and all(r.state not in ("pending", "sending") for r in rows)

    await wait_until(settled, what="every integration tried")
    states = {r.integration_id: (r.state, r.error_kind) for r in await world.rows()}
    assert states[ids[1]] == ("failed", "auth")  # amoCRM refused the token
    assert len(receiver.deliveries) == 1 and len(bitrix.leads) == 1

    bodies.append(await (await api.get("/api/v1/integrations", headers=h)).text())
    for integration_id in ids:
        for path in ("", "/outbox"):
            resp = await api.get(f"/api/v1/integrations/{integration_id}{path}", headers=h)
            bodies.append(await resp.text())
    resp = await api.patch(
        f"/api/v1/integrations/{ids[0]}", json={"config": {"source_id": "WEB"}}, headers=h
    )
    bodies.append(await resp.text())
    assert await cli(monkeypatch, mode, "integration", "status") == 0
    assert await cli(monkeypatch, mode, "integration", "list") == 0
    captured = capsys.readouterr()
    outputs = {"api": "\n".join(bodies), "logs": caplog.text, "cli": captured.out + captured.err}
    assert "authentication failed" in outputs["api"] and "event=outbox_failed" in outputs["logs"]
    for secret, kind in secrets.items():
        for where, text in outputs.items():
            assert secret not in text, f"the {kind} secret leaked into the {where}"


async def test_a_server_restarted_mid_retry_loses_and_doubles_nothing(
    settings: Settings, bitrix: FakeBitrix24
) -> None:
    async def start() -> web.AppRunner:
        app = create_app(settings)
        app[outbox_settings_key] = tiny_settings()
        runner = web.AppRunner(app)
        await runner.setup()  # runs the cleanup contexts' startup: db ... outbox workers
        return runner

    first = await start()
    seeded = await seed(first.app)
    world = World(first.app[sessionmaker_key], seeded.site_id, settings.database_url)
    await world.integration("bitrix24", bitrix_config(bitrix))
    await bitrix.down()
    for _ in range(3):
        await world.call()

    async def retrying() -> bool:
        rows = await world.rows()
        return all(r.state == "failed" and r.attempts >= 2 for r in rows)

    await wait_until(retrying, what="rows retrying while the CRM is down")
    await first.cleanup()  # the server stops mid-retry
    assert {row.state for row in await _rows_of(settings, seeded)} == {"failed"}

    await bitrix.up()
    second = await start()
    try:
        world = World(second.app[sessionmaker_key], seeded.site_id, settings.database_url)
        await wait_until(lambda: dead_or_done(world), what="delivery after the restart")
        assert await world.states() == ["done", "done", "done"]
        assert len(bitrix.leads) == 3
        assert len({lead["ORIGIN_ID"] for lead in bitrix.leads.values()}) == 3
    finally:
        await second.cleanup()


async def _rows_of(settings: Settings, seeded: Seeded) -> list[Any]:
    from calltracker.db.engine import create_engine, create_sessionmaker

    engine = create_engine(settings.database_url)
    try:
        world = World(create_sessionmaker(engine), seeded.site_id, settings.database_url)
        return await world.rows()
    finally:
        await engine.dispose()


async def test_the_apps_call_recorder_writes_outbox_rows_that_the_workers_deliver(
    api: Client, seeded_api: Seeded, settings: Settings, bitrix: FakeBitrix24
) -> None:
    world = world_of(api, seeded_api, settings)
    await world.integration("bitrix24", bitrix_config(bitrix))
    recorder = api.app[recorder_key]
    started = datetime.now(UTC) - timedelta(minutes=2)
    did = seeded_api.pool_numbers[0].lstrip("+")
    await recorder.handle(
        CallStarted("1795342603.59", did, "89161234567", started, "SIP/t-1", "u1")
    )
    assert await world.rows() == []  # a hangup-stage integration: nothing at ring
    ended = CallEnded(
        linkedid="1795342603.59",
        did=did,
        caller="89161234567",
        started_at=started,
        answered_at=started + timedelta(seconds=5),
        ended_at=started + timedelta(seconds=95),
        wait_seconds=5.0,
        talk_seconds=90.0,
        status=CallStatus.ANSWERED,
        dial_status="ANSWER",
        operator="101",
        recording="",
        uniqueid="u1",
    )
    await recorder.handle(ended)
    await recorder.handle(ended)  # replayed after a reconnect

    await wait_until(lambda: dead_or_done(world), what="the recorded call delivered")
    (row,) = await world.rows()
    assert row.state == "done"
    (lead,) = bitrix.leads.values()
    assert lead["PHONE"][0]["VALUE"] == "+79161234567"  # E.164, as the recorder stored it
