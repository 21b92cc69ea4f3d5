"""The report page: its table is the CSV export, its charts are SVG, its labels are escaped."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from calltracker.db.models import Call
from calltracker.keys import sessionmaker_key
from tests.reports.conftest import Client, Loaded
from tests.reports.fixture import msk
from tests.reports.tables import table_cells
from tests.reports.test_report_numbers import (
    BY_CAMPAIGN_IN_YANDEX,
    BY_SOURCE,
    RANGE,
    csv_table,
)


async def page(client: Client, loaded: Loaded, query: str) -> str:
    resp = await client.get(f"/reports?{query}", headers=loaded.headers)
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "text/html"
    return await resp.text()


async def test_the_page_table_is_the_hand_computed_table(client: Client, loaded: Loaded) -> None:
    assert table_cells(await page(client, loaded, RANGE)) == BY_SOURCE


async def test_the_csv_export_is_exactly_the_table_shown(client: Client, loaded: Loaded) -> None:
    query = f"{RANGE}&group=campaign&source=yandex"
    shown = table_cells(await page(client, loaded, query))
    assert shown == await csv_table(client, loaded, query) == BY_CAMPAIGN_IN_YANDEX


async def test_the_page_links_each_row_to_its_next_level(client: Client, loaded: Loaded) -> None:
    html = await page(client, loaded, RANGE)
    links = re.findall(r'<a href="([^"]+)" class="drill">([^<]+)</a>', html)
    assert [text for _, text in links] == ["yandex", "billboard", "google", "(not set)", "vk"]
    href = links[0][0].replace("&amp;", "&")
    query = parse_qs(urlsplit(href).query, keep_blank_values=True)
    assert query == {
        "site": ["shop"], "from": ["2026-03-01"], "to": ["2026-03-03"],
        "group": ["medium"], "source": ["yandex"],
    }  # fmt: skip
    not_set = parse_qs(urlsplit(links[3][0].replace("&amp;", "&")).query, keep_blank_values=True)
    assert not_set["source"] == [""]


async def test_the_page_draws_a_bar_per_channel_and_series_and_a_line_per_series(
    client: Client, loaded: Loaded
) -> None:
    html = await page(client, loaded, RANGE)
    bars = re.findall(
        r'<rect class="bar"[^>]*data-label="([^"]*)" data-series="([^"]*)" data-value="([^"]*)"',
        html,
    )
    assert ("yandex", "Calls", "3") in bars
    assert ("billboard", "Target calls", "1") in bars
    assert len(bars) == 5 * 2
    assert len(re.findall(r'<polyline class="line"', html)) == 2
    assert len(re.findall(r'<circle class="point"', html)) == 3 * 2  # three days, two series


async def test_visitor_sent_labels_are_escaped_in_the_table_and_the_charts(
    client: Client, loaded: Loaded
) -> None:
    evil = '<img src=x onerror="alert(1)">'
    async with client.app[sessionmaker_key].begin() as session:
        session.add(
            Call(linkedid="evil", site_id=loaded.seeded.site_id, tracking_number="+74951230001",
                 caller="+79160000099", started_at=msk("2026-03-02 10:00"), status="answered",
                 source=evil, medium="cpc")
        )  # fmt: skip
    html = await page(client, loaded, RANGE)
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=" in html
    assert [evil, "0", "1"] in [[row[0], *row[4:6]] for row in table_cells(html)]  # visits, calls
