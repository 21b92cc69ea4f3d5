"""The admin pool page shows the simulation's advice for the traffic the pool saw."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from aiohttp.test_utils import TestClient

from calltracker.catalog import advice as pool_advice
from calltracker.db.models import Pool
from calltracker.keys import sessionmaker_key
from tests.conftest import Seeded, seed

Client = TestClient[Any, Any]
UA = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0 Safari/537.36"}


async def page(client: Client, seeded: Seeded) -> str:
    resp = await client.get(
        f"/admin/pools/{seeded.pool_id}",
        headers={"Authorization": f"Bearer {seeded.admin_token}"},
    )
    assert resp.status == 200, await resp.text()
    return await resp.text()


async def test_pool_page_advises_sizes_from_the_visits_it_saw(client: Client) -> None:
    seeded = await seed(client.app)  # 3 numbers, hold 15 min
    assert 'id="pool-advice"' not in await page(client, seeded)  # no traffic: no advice
    for i in range(40):  # 3 get a number; 37 find the pool exhausted: demand all the same
        resp = await client.post(
            "/api/v1/visits",
            json={
                "site_key": "shop",
                "url": "https://shop.example.ru/?utm_medium=cpc",
                "visitor_id": f"visitor-{i:03d}",
            },
            headers=UA,
        )
        assert resp.status == 200
    html = await page(client, seeded)
    assert 'id="pool-advice"' in html
    async with client.app[sessionmaker_key]() as session:
        pool = await session.get(Pool, seeded.pool_id)
        assert pool is not None
        by_hour, days = await pool_advice.observed_visits(session, pool, True, datetime.now(UTC))
    assert sum(by_hour) == 40  # the exhausted visits count as demand
    expected = pool_advice.advise(by_hour, days, 3, pool.hold_seconds, 900)
    shown = re.findall(r'class="advised-size">([^<]+)<', html)
    assert shown == [str(expected.sizes[0.99]), str(expected.sizes[0.995])]
    assert expected.sizes[0.99] is not None and expected.sizes[0.99] > 3
    assert f"{expected.accuracy * 100:.1f}%" in html
