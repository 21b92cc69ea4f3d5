"""The sales report against numbers worked out by hand: calls -> leads -> deals -> won, ROMI,
by source and by manager, how each deal was matched, and the funnel by stage."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete

from calltracker.accounts import tokens
from calltracker.db.deal_models import CrmLink, Deal
from calltracker.db.models import Call
from calltracker.deals import store
from calltracker.deals.snapshot import DealSnapshot, StageInfo
from calltracker.integrations import config as integration_config
from calltracker.keys import sessionmaker_key
from tests.reports import fixture
from tests.reports.conftest import Client, Loaded, bearer
from tests.reports.tables import table_cells

RANGE = "site=shop&from=2026-03-01&to=2026-03-03"
STAGES = [("NEW", "New", 10, "open"), ("EXECUTING", "In progress", 30, "open"),
          ("WON", "Deal won", 60, "won"), ("LOSE", "Deal lost", 70, "lost")]  # fmt: skip


def snap(remote_id: str, opened: str, *moves: tuple[str, str], **fields: Any) -> list[DealSnapshot]:
    """The reads of one deal as it moved: (stage, status) each a minute later."""
    at = fixture.msk(opened)
    return [
        DealSnapshot(remote_id=remote_id, opened_at=at, stage_id=stage, stage_name=stage,
                     status=status, updated_at=at + timedelta(minutes=n), currency="RUB",
                     pipeline_id="0", **fields)  # type: ignore[arg-type]
        for n, (stage, status) in enumerate(moves)
    ]  # fmt: skip


@pytest.fixture
async def sales(client: Client, loaded: Loaded) -> Loaded:
    """Four deals from a Bitrix24 portal on top of the report fixture's calls (no posts)."""
    app = client.app
    c = loaded.calls
    async with app[sessionmaker_key].begin() as session:
        crm = await integration_config.create_integration(
            session,
            site_id=loaded.seeded.site_id,
            kind="bitrix24",
            name="portal",
            config={"webhook_url": "https://portal.bitrix24.ru/rest/1/c0de/", "deals": {}},
        )
        # What our outbox made: a lead for c1, a contact for c3.
        session.add_all([
            CrmLink(integration_id=crm.id, entity="lead", remote_id="L1", call_id=c["c1"]),
            CrmLink(integration_id=crm.id, entity="lead", remote_id="L3", call_id=c["c3"]),
            CrmLink(integration_id=crm.id, entity="contact", remote_id="C3", call_id=c["c3"]),
        ])  # fmt: skip
        await session.flush()
        await store.save_stages(
            session,
            crm.id,
            [
                StageInfo("0", "Sales", sid, name, sort, status)
                for sid, name, sort, status in STAGES
            ],
            fixture.msk("2026-03-01 00:00"),
        )
        origin = store.Origin(loaded.seeded.site_id, "RU", "bitrix24", crm.id)
        reads = [
            *snap("D1", "2026-03-04 10:00", ("NEW", "open"), ("EXECUTING", "open"), ("WON", "won"),
                  lead_remote_id="L1", amount=500_000, manager_id="7", manager_name="Ivan Petrov"),
            *snap("D2", "2026-03-04 11:00", ("NEW", "open"), ("EXECUTING", "open"),
                  contact_remote_id="C3", amount=300_000, manager_id="8", manager_name="Olga"),
            *snap("D3", "2026-03-04 12:00", ("NEW", "open"), ("LOSE", "lost"),
                  phones=("+7 916 000-00-06",), manager_id="8", manager_name="Olga"),
            *snap("D4", "2026-03-02 09:00", ("WON", "won"), amount=10_000, manager_id="8",
                  manager_name="Olga"),
        ]  # fmt: skip
        for read in reads:
            await store.upsert(session, origin, read, seen_via="poll", now=read.updated_at)  # type: ignore[arg-type]
    # The posted deals of the fixture are not part of this report's story.
    async with app[sessionmaker_key].begin() as session:
        await session.execute(delete(Deal).where(Deal.origin == "api"))
    return loaded


async def report(client: Client, loaded: Loaded, query: str) -> Any:
    resp = await client.get(f"/api/v1/reports/deals?{RANGE}&{query}", headers=loaded.headers)
    body = await resp.json()
    assert resp.status == 200, body
    return body


async def test_each_channel_shows_its_calls_leads_deals_wins_and_romi(
    client: Client, sales: Loaded
) -> None:
    body = await report(client, sales, "group=source")
    rows = {r["source"]: r for r in body["rows"]}
    yandex = rows["yandex"]
    # c1, c2, c3 called; c1 and c3 became leads; D1 (own lead) and D2 (our contact) are theirs.
    assert (yandex["calls"], yandex["leads"], yandex["deals"], yandex["won"]) == (3, 2, 2, 1)
    assert (yandex["lead_rate"], yandex["deal_rate"], yandex["win_rate"]) == (0.6667, 1.0, 0.5)
    assert (yandex["revenue"], yandex["average_deal"], yandex["spend"]) == (5000.0, 5000.0, 1800.5)
    assert yandex["romi"] == 1.777  # (5000 - 1800.50) / 1800.50
    assert (yandex["exact"], yandex["probable"]) == (2, 0)
    google = rows["google"]  # D3: the c6 caller's phone, never sent to the CRM: probable
    assert (google["calls"], google["deals"], google["lost"], google["probable"]) == (1, 1, 1, 1)
    assert google["romi"] == -1.0
    assert rows["vk"]["calls"] == 0 and rows["vk"]["spend"] == 200.0
    assert body["totals"]["deals"] == 3 and body["totals"]["revenue"] == 5000.0
    assert {m["basis"]: m["deals"] for m in body["matches"]} == {
        "call": 0, "own": 1, "phone": 1, "tracking": 0, "window": 1, "utm": 0, "none": 1,
    }  # fmt: skip
    assert body["unmatched_revenue"] == 100.0  # D4: won, but nothing says where it came from


async def test_roi_needs_the_margin_and_says_so_without_it(client: Client, sales: Loaded) -> None:
    plain = await report(client, sales, "group=source")
    with_margin = await report(client, sales, "group=source&margin=40%")
    assert next(r for r in plain["rows"] if r["source"] == "yandex")["roi"] is None
    yandex = next(r for r in with_margin["rows"] if r["source"] == "yandex")
    assert yandex["roi"] == 0.1108  # (5000 x 0.4 - 1800.50) / 1800.50
    assert with_margin["margin"] == 0.4


async def test_by_manager_the_deals_are_the_managers_and_calls_are_not_guessed(
    client: Client, sales: Loaded
) -> None:
    body = await report(client, sales, "group=manager")
    rows = {r["manager"]: r for r in body["rows"]}
    assert (rows["Ivan Petrov"]["deals"], rows["Ivan Petrov"]["won"]) == (1, 1)
    assert (rows["Olga"]["deals"], rows["Olga"]["lost"]) == (2, 1)
    assert rows["Olga"]["calls"] is None and rows["Olga"]["romi"] is None


async def test_the_funnel_counts_how_far_the_periods_deals_got(
    client: Client, sales: Loaded
) -> None:
    body = await report(client, sales, "group=source")
    assert [(s["stage"], s["reached"], s["now"]) for s in body["funnel"]] == [
        ("New", 3, 0),
        ("In progress", 2, 1),
        ("Deal won", 1, 1),
        ("Deal lost", 1, 1),
    ]


async def test_the_page_and_the_csv_show_the_same_cells(client: Client, sales: Loaded) -> None:
    page = await client.get(f"/reports/deals?{RANGE}", headers=sales.headers)
    assert page.status == 200
    html = await page.text()
    cells = table_cells(html, "deals-table")
    resp = await client.get(f"/reports/deals.csv?{RANGE}", headers=sales.headers)
    lines = list(csv.reader(io.StringIO((await resp.read()).decode("utf-8-sig"))))
    assert cells == lines
    assert lines[0][:6] == ["Source", "Calls", "Leads", "Call→lead", "Deals", "Lead→deal"]
    yandex = next(line for line in lines if line[0] == "yandex")
    assert yandex[lines[0].index("ROMI")] == "177.70%"
    assert "our own lead or deal id" in html and "unmatched" in html


async def test_a_label_a_spreadsheet_would_run_is_written_as_text(
    client: Client, sales: Loaded
) -> None:
    async with client.app[sessionmaker_key].begin() as session:
        call = await session.get(Call, sales.calls["c7"])
        assert call is not None
        call.source = '=HYPERLINK("http://evil")'
    resp = await client.get(f"/reports/deals.csv?{RANGE}", headers=sales.headers)
    text = (await resp.read()).decode("utf-8-sig")
    assert "'=HYPERLINK" in text


async def test_an_operator_may_not_read_the_sales_report(client: Client, sales: Loaded) -> None:
    async with client.app[sessionmaker_key].begin() as session:
        _, token = await tokens.create_token(session, name="op", role="operator")
    for path in ("/api/v1/reports/deals?site=shop", "/reports/deals.csv?site=shop",
                 "/api/v1/deals"):  # fmt: skip
        assert (await client.get(path, headers=bearer(token))).status == 403
