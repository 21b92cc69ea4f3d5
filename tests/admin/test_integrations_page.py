"""The admin integrations page: list with outbox counts, add form, retry; secrets never shown."""

from __future__ import annotations

from typing import Any

import aiohttp
from sqlalchemy import select

from calltracker.clock import utcnow
from calltracker.db.integration_models import Integration, OutboxRow
from calltracker.db.models import Call
from calltracker.integrations import config as integration_config
from calltracker.integrations.outbox import store
from calltracker.keys import sessionmaker_key
from tests.admin.conftest import Client, People, embedded_only, login
from tests.conftest import Seeded

WEBHOOK_CODE = "s3cr3tc0dexyz"
WEBHOOK_URL = f"https://portal.bitrix24.ru/rest/1/{WEBHOOK_CODE}/"


async def post_form(client: Client, path: str, csrf: str, **fields: Any) -> aiohttp.ClientResponse:
    return await client.post(path, data={"csrf_token": csrf, **fields}, allow_redirects=False)


async def add_integration_with_rows(client: Client, seeded: Seeded, states: list[str]) -> int:
    """A Bitrix24 integration on the seeded site with one outbox row per state.

    Disabled, so the app's outbox worker leaves its rows where the test put them.
    """
    now = utcnow()
    async with client.app[sessionmaker_key].begin() as session:
        integration = await integration_config.create_integration(
            session,
            site_id=seeded.site_id,
            kind="bitrix24",
            name="CRM",
            config={"webhook_url": WEBHOOK_URL, "rate_limit": 50},
            enabled=False,
        )
        rows = []
        for n, state in enumerate(states):
            call = Call(
                linkedid=f"page-{n}",
                site_id=seeded.site_id,
                tracking_number="+74951230001",
                caller="+79990000000",
                started_at=now,
                status="answered",
            )
            session.add(call)
            await session.flush()
            row = store.new_row(integration.id, call.id, "hangup", now)
            if state != "pending":
                row.update(state=state, attempts=3, last_error=f"HTTP 500 from portal ({state})")
            rows.append(row)
        await store.insert_rows(session, rows)
        return integration.id


async def states_of(client: Client, integration_id: int) -> list[str]:
    async with client.app[sessionmaker_key]() as session:
        query = select(OutboxRow.state).where(OutboxRow.integration_id == integration_id)
        return sorted((await session.scalars(query)).all())


async def test_the_page_lists_integrations_with_counts_and_no_secret_values(
    client: Client, seeded: Seeded, people: People
) -> None:
    integration_id = await add_integration_with_rows(
        client, seeded, ["pending", "pending", "failed", "dead"]
    )
    await login(client, "admin")
    resp = await client.get("/admin/integrations")
    assert resp.status == 200
    html = await resp.text()
    assert f'id="integration-{integration_id}"' in html
    assert "<td>bitrix24</td>" in html and "<td>CRM</td>" in html and "<td>no</td>" in html
    assert '<td class="pending">2</td>' in html
    assert '<td class="failed">1' in html
    assert '<td class="dead">1</td>' in html
    assert "<code>webhook_url</code>" in html  # which secret is set...
    assert WEBHOOK_CODE not in html  # ...never its value
    assert "HTTP 500 from portal (failed)" in html
    assert f'action="/admin/integrations/{integration_id}/retry"' in html


async def test_an_admin_adds_an_integration_from_the_form(
    client: Client, seeded: Seeded, people: People
) -> None:
    csrf = await login(client, "admin")
    resp = await post_form(
        client,
        "/admin/integrations",
        csrf,
        site="shop",
        kind="bitrix24",
        name="Portal",
        config=f'{{"webhook_url": "{WEBHOOK_URL}"}}',
        trigger="unique",
        stage="hangup",
    )
    assert resp.status == 303, await resp.text()
    async with client.app[sessionmaker_key]() as session:
        [row] = (await session.scalars(select(Integration))).all()
    assert (row.site_id, row.kind, row.name, row.trigger) == (
        seeded.site_id,
        "bitrix24",
        "Portal",
        "unique",
    )
    page = await (await client.get(resp.headers["Location"])).text()
    assert "Integration added." in page and "Portal" in page and WEBHOOK_CODE not in page


@embedded_only
async def test_a_bad_config_is_shown_naming_the_field(
    client: Client, seeded: Seeded, people: People
) -> None:
    csrf = await login(client, "admin")
    resp = await post_form(
        client,
        "/admin/integrations",
        csrf,
        site="shop",
        kind="bitrix24",
        name="Portal",
        config='{"webhook_url": "nope"}',
        trigger="every",
        stage="hangup",
    )
    assert resp.status == 400
    html = await resp.text()
    assert "bitrix24.webhook_url: must look like" in html
    resp = await post_form(
        client, "/admin/integrations", csrf, site="shop", kind="bitrix24", name="x", config="{"
    )
    assert resp.status == 400
    assert "config is not valid JSON" in await resp.text()
    async with client.app[sessionmaker_key]() as session:
        assert (await session.scalars(select(Integration))).all() == []


@embedded_only
async def test_a_marketer_may_not_see_or_change_integrations(
    client: Client, seeded: Seeded, people: People
) -> None:
    integration_id = await add_integration_with_rows(client, seeded, ["failed"])
    csrf = await login(client, "marketer")
    assert (await client.get("/admin/integrations")).status == 403
    resp = await post_form(client, f"/admin/integrations/{integration_id}/retry", csrf)
    assert resp.status == 403
    resp = await post_form(
        client, "/admin/integrations", csrf, site="shop", kind="webhook", name="x", config="{}"
    )
    assert resp.status == 403
    assert await states_of(client, integration_id) == ["failed"]


async def test_retry_moves_failed_rows_back_to_pending_and_dead_only_when_asked(
    client: Client, seeded: Seeded, people: People
) -> None:
    integration_id = await add_integration_with_rows(client, seeded, ["failed", "dead"])
    csrf = await login(client, "admin")
    resp = await post_form(client, f"/admin/integrations/{integration_id}/retry", csrf)
    assert resp.status == 303, await resp.text()
    assert await states_of(client, integration_id) == ["dead", "pending"]
    page = await (await client.get(resp.headers["Location"])).text()
    assert "1 row(s) queued again." in page
    resp = await post_form(client, f"/admin/integrations/{integration_id}/retry", csrf, dead="1")
    assert resp.status == 303
    assert await states_of(client, integration_id) == ["pending", "pending"]
