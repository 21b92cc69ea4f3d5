"""The calls list: filters, escaping of visitor data, recordings, the JSON API."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp_jinja2

from calltracker.app import create_app
from calltracker.catalog import edits
from calltracker.db.models import Call, Visit
from calltracker.keys import sessionmaker_key, settings_key
from calltracker.settings import Settings
from calltracker.web import pages
from tests.admin.conftest import Client, People, bearer, embedded_only, login
from tests.conftest import Seeded

XSS = "<img src=x onerror=alert(1)>"
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


async def add_visit(app: Any, visit_id: str, source: str, **extra: Any) -> None:
    async with app[sessionmaker_key].begin() as session:
        session.add(
            Visit(
                id=visit_id,
                site_id=1,
                visitor_key="v-" + visit_id,
                started_at=T0 - timedelta(minutes=5),
                url=extra.get("url", f"https://shop.example.ru/?utm_source={source}"),
                referrer=extra.get("referrer", ""),
                source=source,
                medium="cpc",
                touch_source=source,
                touch_medium="cpc",
                number="+74951230001",
                number_kind="pool",
            )
        )


async def add_call(app: Any, **fields: Any) -> int:
    values: dict[str, Any] = {
        "linkedid": f"l-{fields.get('caller', '')}-{fields.get('started_at', T0).timestamp()}",
        "site_id": 1,
        "tracking_number": "+74951230001",
        "caller": "+79161234567",
        "started_at": T0,
        "status": "answered",
        "talk_seconds": 65,
    } | fields
    async with app[sessionmaker_key].begin() as session:
        call = Call(**values)
        session.add(call)
        await session.flush()
        return call.id


async def test_visitor_sent_values_are_escaped_in_the_calls_list(
    client: Client, seeded: Seeded, people: People
) -> None:
    await add_visit(
        client.app, "XSSVISIT", XSS, referrer='https://evil.example/"><script>alert(2)</script>'
    )
    await add_call(client.app, visit_id="XSSVISIT", source=XSS, medium="cpc")
    await login(client, "marketer")
    html = await (await client.get("/calls")).text()
    assert "<img src=x" not in html and "<script>alert" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html


async def test_calls_are_filtered_by_status_and_label(
    client: Client, seeded: Seeded, people: People
) -> None:
    await add_call(client.app, caller="+79160000001", source="yandex", medium="cpc")
    await add_call(client.app, caller="+79160000002", source="google", medium="cpc")
    await add_call(client.app, caller="+79160000003", source="yandex", status="missed")
    await login(client, "operator")
    html = await (await client.get("/calls?source=yandex&status=answered")).text()
    assert "+79160000001" in html
    assert "+79160000002" not in html and "+79160000003" not in html
    assert "1 call(s)" in html


async def test_date_filters_use_the_sites_time_zone(
    client: Client, seeded: Seeded, people: People
) -> None:
    # 22:30 UTC on the 20th is already the 21st in Moscow (UTC+3).
    await add_call(client.app, caller="+79160000009", started_at=T0.replace(hour=22, minute=30))
    h = bearer(people.tokens["operator"])
    on_21 = await client.get("/api/v1/calls?site_id=1&date_from=2026-11-21", headers=h)
    assert (await on_21.json())["total"] == 0  # the seeded site keeps UTC
    async with client.app[sessionmaker_key].begin() as session:
        await edits.update_site(session, "shop", timezone="Europe/Moscow")
    on_21 = await client.get("/api/v1/calls?site_id=1&date_from=2026-11-21", headers=h)
    assert (await on_21.json())["total"] == 1


async def test_the_calls_api_pages_newest_first(
    client: Client, seeded: Seeded, people: People
) -> None:
    for i in range(5):
        await add_call(client.app, caller=f"+7916000010{i}", started_at=T0 + timedelta(minutes=i))
    h = bearer(people.tokens["marketer"])
    first = await (await client.get("/api/v1/calls?limit=2", headers=h)).json()
    assert [c["caller"] for c in first["calls"]] == ["+79160000104", "+79160000103"]
    assert (first["total"], first["next_offset"]) == (5, 2)
    last = await (await client.get("/api/v1/calls?limit=2&offset=4", headers=h)).json()
    assert [c["caller"] for c in last["calls"]] == ["+79160000100"]
    assert last["next_offset"] is None
    bad = await client.get("/api/v1/calls?status=exploded", headers=h)
    assert bad.status == 400


@embedded_only
async def test_a_recording_plays_from_the_calls_list(
    client: Client, seeded: Seeded, people: People
) -> None:
    root = client.app[settings_key].recordings_dir
    (root / "2026").mkdir(parents=True)
    (root / "2026" / "a.mp3").write_bytes(b"ID3" + b"\0" * 2000)
    call_id = await add_call(client.app, recording="2026/a.mp3")
    await login(client, "operator")
    html = await (await client.get("/calls")).text()
    assert f'<audio controls preload="none" src="/api/v1/calls/{call_id}/recording">' in html
    audio = await client.get(f"/api/v1/calls/{call_id}/recording", headers={"Range": "bytes=0-9"})
    assert (audio.status, audio.headers["Content-Type"]) == (206, "audio/mpeg")
    assert await audio.read() == b"ID3" + b"\0" * 7


@embedded_only
async def test_a_recording_path_cannot_leave_the_recordings_folder(
    client: Client, seeded: Seeded, people: People
) -> None:
    root = client.app[settings_key].recordings_dir
    root.mkdir(parents=True)
    (root.parent / "secret.mp3").write_bytes(b"secret")
    call_id = await add_call(client.app, recording="../secret.mp3")
    resp = await client.get(
        f"/api/v1/calls/{call_id}/recording", headers=bearer(people.tokens["admin"])
    )
    assert resp.status == 404


def test_templates_escape_everything_and_never_mark_values_safe() -> None:
    app = create_app(Settings(database_url="sqlite:///:memory:"))
    env = app[aiohttp_jinja2.APP_KEY]
    assert env.autoescape is True
    folder = Path(pages.__file__).parent / "templates"
    for template in folder.rglob("*.html"):
        assert not re.search(r"\|\s*safe\b", template.read_text()), template.name
