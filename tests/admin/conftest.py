"""Fixtures for the console: users of every role, logged-in sessions, form helpers."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from calltracker.accounts import users
from calltracker.db.auth_models import User
from calltracker.keys import sessionmaker_key
from tests.conftest import Seeded

Client = TestClient[Any, Any]
PASSWORD = "correct horse battery"
ROLES = ("admin", "marketer", "operator")
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)">')
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]*)"')
# For behaviour of the web layer alone, where the two backends run the same code: one mode
# keeps the suite fast. Anything that queries or stores runs in both.
embedded_only = pytest.mark.parametrize("mode", ["embedded"], indirect=True)


@dataclass(frozen=True)
class People:
    ids: dict[str, int]  # role -> user id; each user is named after its role
    tokens: dict[str, str]  # role -> a bearer token of that user


@functools.cache
def password_hash() -> str:
    return users.hash_password(PASSWORD)  # scrypt is slow on purpose: hash once per run


async def add_people(app: Any) -> People:
    ids: dict[str, int] = {}
    tokens: dict[str, str] = {}
    async with app[sessionmaker_key].begin() as session:
        for role in ROLES:
            user = User(username=role, role=role, password_hash=password_hash(), extension="101")
            session.add(user)
            await session.flush()
            ids[role] = user.id
            _, tokens[role] = await users.create_user_token(session, user.id, "tests")
    return People(ids, tokens)


@pytest.fixture
async def people(client: Client, seeded: Seeded) -> People:
    return await add_people(client.app)


async def login(client: Client, username: str, password: str = PASSWORD) -> str:
    """Log in through the form; returns the session's CSRF token."""
    client.session.cookie_jar.clear()
    page = await client.get("/login")
    token = CSRF_INPUT.search(await page.text())
    assert token is not None
    resp = await client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token.group(1)},
        allow_redirects=False,
    )
    assert resp.status == 303, await resp.text()
    return await csrf_of(client)


async def csrf_of(client: Client) -> str:
    resp = await client.get("/account")
    assert resp.status == 200
    found = CSRF_META.search(await resp.text())
    assert found is not None and found.group(1)
    return found.group(1)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
