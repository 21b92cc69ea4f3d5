"""Fixtures for the operator console and FastAGI: operators by extension, a DID held by a visit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from calltracker.db.auth_models import User
from calltracker.db.models import Visit
from calltracker.keys import recorder_key, sessionmaker_key
from calltracker.telephony.calls import (
    CallAnswered,
    CallEnded,
    CallStarted,
    CallStatus,
    OperatorRinging,
)
from tests.admin.conftest import password_hash
from tests.conftest import Seeded, seed

Client = TestClient[Any, Any]
DID = "+74951234567"  # the number the recorded `answered` trace dials
DIALLED = "74951234567"  # as Asterisk sends it
CALLER = "79161234567"
OTHER_NUMBERS = ("+74951234568", "+74951234570")
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"
SITE_ORIGIN = "https://shop.example.ru"
HOSTILE = "<img src=x onerror=alert(1)>"
LANDING = (
    "https://shop.example.ru/sofas?utm_source=yandex&utm_medium=cpc&utm_campaign=spring"
    "&utm_term=sofa"
)
REFERRER = "https://yandex.ru/search/?text=sofa"
# Username -> extension field, as an admin would type it.
OPERATORS = {"op101": "101", "op102": "102", "op-both": "101, 103", "op-none": ""}


async def seed_site(app: web.Application) -> Seeded:
    """The shop with the traces' DIDs in its pool."""
    return await seed(app, numbers=(DID, *OTHER_NUMBERS))


async def add_operators(app: web.Application) -> dict[str, int]:
    """The OPERATORS, and a marketer "mkt" without an extension."""
    ids: dict[str, int] = {}
    users = [(name, "operator", ext) for name, ext in OPERATORS.items()] + [("mkt", "marketer", "")]
    async with app[sessionmaker_key].begin() as session:
        for name, role, extension in users:
            user = User(
                username=name, role=role, password_hash=password_hash(), extension=extension
            )
            session.add(user)
            await session.flush()
            ids[name] = user.id
    return ids


async def wait_for_visit(app: web.Application, visit_id: str, timeout: float = 5.0) -> Visit:
    """The visit row: the visit writer stores it in batches, after the API answered."""
    deadline = time.monotonic() + timeout
    while True:
        async with app[sessionmaker_key]() as session:
            visit = await session.get(Visit, visit_id)
        if visit is not None:
            return visit
        if time.monotonic() > deadline:
            raise AssertionError(f"visit {visit_id} was never stored")
        await asyncio.sleep(0.02)


async def make_visit(
    client: Client, url: str = LANDING, referrer: str = REFERRER
) -> dict[str, Any]:
    """A visitor from a yandex/cpc ad who is shown (leases) a number of the pool."""
    resp = await client.post(
        "/api/v1/visits",
        json={"site_key": "shop", "url": url, "referrer": referrer},
        headers={"User-Agent": BROWSER_UA, "Origin": SITE_ORIGIN},
    )
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    await wait_for_visit(client.app, body["visit_id"])
    return body


@dataclass
class FakeCall:
    """Call facts as the AMI listener would hand them to the recorder."""

    app: web.Application
    linkedid: str = "1795342603.59"
    did: str = DIALLED
    caller: str = CALLER

    def __post_init__(self) -> None:
        self.started = datetime.now(UTC)

    async def start(self) -> None:
        await self.app[recorder_key].store(
            CallStarted(self.linkedid, self.did, self.caller, self.started, "PJSIP/trunk-1", "u1")
        )

    async def ring(self, extension: str) -> None:
        await self.app[recorder_key].store(
            OperatorRinging(self.linkedid, extension, datetime.now(UTC), self.did, self.caller)
        )

    async def answer(self, extension: str) -> None:
        await self.app[recorder_key].store(
            CallAnswered(self.linkedid, extension, datetime.now(UTC), self.did, self.caller)
        )

    async def end(self, operator: str, talk: float = 42.0, rung: tuple[str, ...] = ()) -> None:
        ended = datetime.now(UTC)
        answered = self.started if talk else None
        await self.app[recorder_key].store(
            CallEnded(
                linkedid=self.linkedid,
                did=self.did,
                caller=self.caller,
                started_at=self.started,
                answered_at=answered,
                ended_at=ended,
                wait_seconds=0.0 if talk else 8.0,
                talk_seconds=talk,
                status=CallStatus.ANSWERED if talk else CallStatus.MISSED,
                dial_status="ANSWER" if talk else "NOANSWER",
                operator=operator,
                recording="",
                uniqueid="u1",
                operators_rung=rung or (operator,),
            )
        )


async def eventually(
    predicate: Callable[[], bool], *, timeout: float = 5.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)
