"""GET /metrics (Prometheus text, parsed by prometheus_client) and /healthz, in both modes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from calltracker.app import create_app
from calltracker.db.models import Call
from calltracker.keys import sessionmaker_key
from calltracker.settings import AmiSettings, Secret, Settings
from tests.conftest import Mode, Seeded, seed
from tests.telephony.ami_server import AmiReplayServer
from tests.telephony.conftest import trace

Client = TestClient[Any, Any]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
DID = "74951234567"  # the number the recorded "answered" call dials
UA = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0 Safari/537.36"}


def parse(text: str) -> tuple[set[str], Samples]:
    """Family names and every sample by (name, sorted labels); raises on a malformed text."""
    families: set[str] = set()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return families, samples


async def scrape(client: Client, token: str) -> tuple[set[str], Samples]:
    resp = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "text/plain"
    return parse(await resp.text())


@pytest.fixture
async def server() -> AsyncIterator[AmiReplayServer]:
    async with AmiReplayServer.from_trace(trace("answered"), hold=True) as replay:
        yield replay


@pytest.fixture
async def app_client(aiohttp_client: Any, settings: Settings, server: AmiReplayServer) -> Client:
    ami = AmiSettings(
        host="127.0.0.1", port=server.port, secret=Secret("calltracker"), reconnect_max_seconds=0.2
    )
    client: Client = await aiohttp_client(create_app(replace(settings, ami=ami, agi_port=-1)))
    return client


async def visit(client: Client, seeded: Seeded, visitor: str) -> dict[str, Any]:
    resp = await client.post(
        "/api/v1/visits",
        json={
            "site_key": seeded.site_key,
            "url": "https://shop.example.ru/?utm_medium=cpc",
            "visitor_id": f"visitor-{visitor}",
        },
        headers=UA,
    )
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def wait_for_ended_call(client: Client, timeout: float = 10.0) -> Call:
    deadline = time.monotonic() + timeout
    while True:
        async with client.app[sessionmaker_key]() as session:
            call = await session.scalar(select(Call).where(Call.status != "ringing"))
        if call is not None:
            return call
        assert time.monotonic() < deadline, "the replayed call was not stored"
        await asyncio.sleep(0.05)


async def test_metrics_parse_and_count_visits_leases_calls_requests_and_pools(
    app_client: Client, server: AmiReplayServer, mode: Mode
) -> None:
    numbers = ("+" + DID, "+74951234568", "+74951234569")
    seeded = await seed(app_client.app, numbers=numbers)
    shown = [(await visit(app_client, seeded, f"v{i}"))["kind"] for i in range(5)]
    assert shown == ["pool"] * 3 + ["default"] * 2  # 3 numbers: the last two find none free
    await app_client.post(
        f"/api/v1/visits/{'x' * 22}/ping", json={"site_key": "shop"}, headers=UA
    )  # a 404 on a routed pattern: labelled by the pattern, not the visit id
    assert (await app_client.get("/no/such/page/123")).status == 404
    server.release(epoch=time.time())
    call = await wait_for_ended_call(app_client)
    assert call.status == "answered"

    families, samples = await scrape(app_client, seeded.admin_token)
    pool = (("pool", str(seeded.pool_id)), ("site", "shop"))
    assert samples[("calltracker_visits_total", (("kind", "pool"),))] == 3
    assert samples[("calltracker_visits_total", (("kind", "default"),))] == 2
    assert samples[("calltracker_leases_total", (("pool", str(seeded.pool_id)),))] == 3
    assert samples[("calltracker_calls_total", (("status", "answered"),))] == 1
    assert samples[("calltracker_pool_numbers", pool)] == 3
    assert samples[("calltracker_pool_leased", pool)] == 3
    assert samples[("calltracker_pool_utilisation_ratio", pool)] == 1.0
    assert samples[("calltracker_pool_exhaustions_total", pool)] == 2
    assert samples[("calltracker_pool_peak_leased", pool)] == 3
    visits_route = (("method", "POST"), ("route", "/api/v1/visits"))
    assert samples[("calltracker_http_request_duration_seconds_count", visits_route)] == 5
    assert 0 < samples[("calltracker_http_request_duration_seconds_sum", visits_route)] < 5
    ping = (("method", "POST"), ("route", "/api/v1/visits/{visit_id}/ping"), ("status", "404"))
    assert samples[("calltracker_http_responses_total", ping)] == 1
    assert (
        samples[
            (
                "calltracker_http_responses_total",
                (("method", "GET"), ("route", "unmatched"), ("status", "404")),
            )
        ]
        == 1
    )
    assert not any(
        "x" * 22 in value or "/no/such" in value for _, labels in samples for _, value in labels
    )
    for state in ("pending", "sending", "failed", "dead"):
        assert samples[("calltracker_outbox_rows", (("state", state),))] == 0
    assert samples[("calltracker_dependency_up", (("dependency", "database"),))] == 1
    assert samples[("calltracker_dependency_up", (("dependency", "redis"),))] == 1
    assert samples[("calltracker_ami_leader", ())] == 1
    assert samples[("calltracker_ami_connected", ())] == 1
    assert samples[("calltracker_ami_open_calls", ())] == 0
    if mode.name == "scale":
        assert samples[("calltracker_ami_lock_held", ())] == 1
    else:
        assert "calltracker_ami_lock_held" not in families


async def test_metrics_need_an_admin_token(app_client: Client) -> None:
    seeded = await seed(app_client.app)
    assert (await app_client.get("/metrics")).status == 401
    marketer = {"Authorization": f"Bearer {seeded.marketer_token}"}
    assert (await app_client.get("/metrics", headers=marketer)).status == 403


async def test_healthz_reports_each_dependency_the_leader_and_the_outbox(
    app_client: Client, mode: Mode
) -> None:
    deadline = time.monotonic() + 5
    while True:
        resp = await app_client.get("/healthz")
        body = await resp.json()
        if body["checks"]["ami"]["connected"] or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert resp.status == 200 and body["status"] == "ok", body
    checks = body["checks"]
    assert checks["database"]["ok"] and checks["redis"]["ok"]
    ami = checks["ami"]
    assert ami["ok"] and ami["leader"] and ami["connected"]
    assert ami["holder"] == ami["identity"]
    assert ami["election"] == ("redis" if mode.name == "scale" else "single")
    outbox = checks["outbox"]
    assert outbox["ok"]
    assert {k: outbox[k] for k in ("pending", "sending", "failed", "dead")} == dict.fromkeys(
        ("pending", "sending", "failed", "dead"), 0
    )
    assert isinstance(body["pid"], int)


async def test_healthz_without_asterisk_configured_is_ok_and_says_so(client: Client) -> None:
    body = await (await client.get("/healthz")).json()
    assert body["status"] == "ok"
    assert body["checks"]["ami"] == {"ok": True, "configured": False}
