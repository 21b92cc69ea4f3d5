"""Login, logout, the session cookie and CSRF protection."""

from __future__ import annotations

import threading
from typing import Any

from aiohttp.test_utils import TestClient

from calltracker.accounts import users
from calltracker.app import create_app
from calltracker.settings import Settings
from tests.admin.conftest import (
    CSRF_INPUT,
    PASSWORD,
    Client,
    People,
    add_people,
    bearer,
    csrf_of,
    embedded_only,
    login,
)
from tests.conftest import Seeded, seed, with_settings


async def login_form_token(client: Client) -> str:
    found = CSRF_INPUT.search(await (await client.get("/login")).text())
    assert found is not None
    return found.group(1)


async def test_the_right_password_logs_in_with_a_safe_cookie(
    client: Client, seeded: Seeded, people: People
) -> None:
    token = await login_form_token(client)
    resp = await client.post(
        "/login",
        data={"username": "Marketer", "password": PASSWORD, "csrf_token": token},
        allow_redirects=False,
    )
    assert resp.status == 303
    cookie = resp.cookies["ct_session"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert not cookie["secure"]  # plain http in this test; see the TLS test below
    assert (await client.get("/calls")).status == 200


async def test_a_wrong_password_is_refused_without_a_session(
    client: Client, seeded: Seeded, people: People
) -> None:
    token = await login_form_token(client)
    resp = await client.post(
        "/login",
        data={"username": "admin", "password": PASSWORD + "x", "csrf_token": token},
        allow_redirects=False,
    )
    assert resp.status == 401
    assert "Wrong username or password" in await resp.text()
    assert "ct_session" not in resp.cookies
    assert (await client.get("/admin/sites", allow_redirects=False)).status == 303


@embedded_only
async def test_the_cookie_is_secure_when_served_over_tls(
    aiohttp_client: Any, settings: Settings
) -> None:
    client = await aiohttp_client(
        create_app(with_settings(settings, public_url="https://calls.example.ru"))
    )
    await seed(client.app)
    await add_people(client.app)
    form = await client.get("/login")
    login_cookie = form.cookies["ct_login_csrf"]
    assert login_cookie["secure"] is True
    # The client will not send a Secure cookie over plain http, so the test sends it.
    resp = await client.post(
        "/login",
        data={"username": "admin", "password": PASSWORD, "csrf_token": login_cookie.value},
        headers={"Cookie": f"ct_login_csrf={login_cookie.value}"},
        allow_redirects=False,
    )
    assert resp.cookies["ct_session"]["secure"] is True


async def test_logout_ends_the_session_on_the_server(
    client: Client, seeded: Seeded, people: People
) -> None:
    csrf = await login(client, "admin")
    old = client.session.cookie_jar.filter_cookies(client.make_url("/"))["ct_session"].value
    resp = await client.post("/logout", data={"csrf_token": csrf}, allow_redirects=False)
    assert resp.headers["Location"] == "/login"
    # Replaying the old cookie, as a thief who copied it would, no longer works.
    client.session.cookie_jar.clear()
    replay = await client.get(
        "/admin/sites", headers={"Cookie": f"ct_session={old}"}, allow_redirects=False
    )
    assert replay.status == 303 and replay.headers["Location"].startswith("/login")
    api = await client.get("/api/v1/me", headers={"Cookie": f"ct_session={old}"})
    assert api.status == 401


@embedded_only
async def test_login_never_redirects_off_site(
    client: Client, seeded: Seeded, people: People
) -> None:
    for evil in ("//evil.example.com/", "https://evil.example.com/", "/\\evil.example.com"):
        token = await login_form_token(client)
        resp = await client.post(
            "/login",
            data={"username": "admin", "password": PASSWORD, "csrf_token": token, "next": evil},
            allow_redirects=False,
        )
        assert resp.headers["Location"] == "/", evil


async def test_a_form_post_without_its_csrf_token_is_refused(
    client: Client, seeded: Seeded, people: People
) -> None:
    csrf = await login(client, "admin")
    form = {"key": "clinic", "default_number": "+78120000000"}
    refused = await client.post("/admin/sites", data=form, allow_redirects=False)
    assert refused.status == 403
    assert "CSRF" in await refused.text()
    wrong = await client.post(
        "/admin/sites", data={**form, "csrf_token": csrf[:-2] + "xx"}, allow_redirects=False
    )
    assert wrong.status == 403
    assert (await client.get("/api/v1/sites/clinic")).status == 404
    ok = await client.post("/admin/sites", data={**form, "csrf_token": csrf}, allow_redirects=False)
    assert (ok.status, ok.headers["Location"]) == (303, "/admin/sites/clinic")


@embedded_only
async def test_a_login_post_without_its_csrf_token_is_refused(
    client: Client, seeded: Seeded, people: People
) -> None:
    await client.get("/login")  # sets the login cookie, but the form field is missing
    resp = await client.post(
        "/login", data={"username": "admin", "password": PASSWORD}, allow_redirects=False
    )
    assert resp.status == 403
    assert "ct_session" not in resp.cookies


@embedded_only
async def test_json_with_a_session_cookie_needs_the_csrf_header(
    client: Client, seeded: Seeded, people: People
) -> None:
    csrf = await login(client, "admin")
    body = {"username": "newop", "role": "operator", "password": "long enough pw"}
    refused = await client.post("/api/v1/users", json=body)
    assert refused.status == 403
    assert (await refused.json())["error"] == "csrf_failed"
    ok = await client.post("/api/v1/users", json=body, headers={"X-CSRF-Token": csrf})
    assert ok.status == 201


@embedded_only
async def test_bearer_requests_need_no_csrf_token(
    client: Client, seeded: Seeded, people: People
) -> None:
    resp = await client.post(
        "/api/v1/users",
        json={"username": "newop", "role": "operator", "password": "long enough pw"},
        headers=bearer(people.tokens["admin"]),
    )
    assert resp.status == 201


@embedded_only
async def test_each_session_has_its_own_csrf_token(
    aiohttp_client: Any, client: Client, seeded: Seeded, people: People
) -> None:
    first = await login(client, "admin")
    other: TestClient[Any, Any] = await aiohttp_client(client.server)
    second = await login(other, "admin")
    assert first != second
    # A token from one session does not unlock another.
    resp = await other.post("/admin/sites", data={"csrf_token": first, "key": "x"})
    assert resp.status == 403
    assert await csrf_of(client) == first


async def try_login(client: Client, username: str, password: str) -> Any:
    token = await login_form_token(client)
    return await client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token},
        allow_redirects=False,
    )


@embedded_only
async def test_repeated_wrong_passwords_lock_the_account_but_not_the_others(
    client: Client, seeded: Seeded, people: People
) -> None:
    for _ in range(5):
        assert (await try_login(client, "admin", "guess-" + PASSWORD)).status == 401

    # Even the right password is refused now, unchecked: guessing on gains nothing.
    locked = await try_login(client, "ADMIN", PASSWORD)
    assert locked.status == 429
    assert "Too many failed sign-ins" in await locked.text()
    assert 0 < int(locked.headers["Retry-After"]) <= 15 * 60
    assert "ct_session" not in locked.cookies
    # Someone else signing in from the same office is not locked out with them.
    assert (await try_login(client, "marketer", PASSWORD)).status == 303


@embedded_only
async def test_password_hashing_runs_off_the_event_loop(
    client: Client, seeded: Seeded, people: People, monkeypatch: Any
) -> None:
    # ~50 ms of scrypt on the loop would stall every visit being answered meanwhile.
    threads: list[threading.Thread] = []
    real = users._scrypt

    def spy(*args: Any) -> bytes:
        threads.append(threading.current_thread())
        return real(*args)

    monkeypatch.setattr(users, "_scrypt", spy)
    assert (await try_login(client, "admin", PASSWORD)).status == 303
    assert (await try_login(client, "nobody-here", PASSWORD)).status == 401
    assert len(threads) == 2
    assert threading.current_thread() not in threads
