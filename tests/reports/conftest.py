"""Fixtures for the report tests: the hand-made fixture loaded into the app, on both databases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import Seeded
from tests.reports import fixture

Client = TestClient[Any, Any]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class Loaded:
    seeded: Seeded
    calls: dict[str, int]  # call id by linkedid
    headers: dict[str, str]  # the marketer's


async def import_spend_csv(client: Client, token: str, text: str, site: str = "shop") -> Any:
    resp = await client.post(
        f"/api/v1/spend?site={site}",
        data=text.encode(),
        headers={**bearer(token), "Content-Type": "text/csv"},
    )
    return resp.status, await resp.json()


@pytest.fixture
async def loaded(client: Client, seeded: Seeded) -> Loaded:
    """The fixture's visits and calls, its spend CSV and its deals, through the real API."""
    calls = await fixture.load(client.app, seeded.site_id)
    headers = bearer(seeded.marketer_token)
    status, body = await import_spend_csv(client, seeded.marketer_token, fixture.SPEND_CSV)
    assert status == 200, body
    resp = await client.post(
        "/api/v1/conversions",
        json={"site": "shop", "conversions": fixture.deals(calls)},
        headers=headers,
    )
    assert resp.status == 201, await resp.text()
    return Loaded(seeded, calls, headers)
