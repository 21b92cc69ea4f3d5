"""What the outbox tests share: a migrated database with a site, calls written the way the
recorder writes them, worker factories with tiny timings, and a polling wait."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
from sqlalchemy import select

from calltracker.catalog import sites
from calltracker.db.base import Base
from calltracker.db.engine import SessionMaker, create_engine, create_sessionmaker
from calltracker.db.integration_models import OutboxRow
from calltracker.db.models import Call, Visit
from calltracker.integrations import config as integration_config
from calltracker.integrations.outbox.enqueue import enqueue_for_call
from calltracker.integrations.outbox.policy import RetryPolicy
from calltracker.integrations.outbox.settings import OutboxSettings
from calltracker.integrations.outbox.worker import OutboxWorkers
from calltracker.settings import Settings
from calltracker.telephony import recording_links
from calltracker.telephony.calls import CallEnded, CallStarted, CallStatus
from calltracker.telephony.recorder import CallChange
from tests.conftest import PG_URL, _pg_admin, _pg_dsn, run_blocking

PUBLIC_URL = "https://ct.example"
LINK_SETTINGS = Settings(public_url=PUBLIC_URL)
_linkedids = itertools.count(1)
_callers = itertools.count(1)


def tiny_settings(**changes: Any) -> OutboxSettings:
    """Production logic on test time: milliseconds of backoff, a short lease."""
    retry = changes.pop(
        "retry", RetryPolicy(max_attempts=1000, base=0.01, cap=0.05, auth_delay=60.0)
    )
    values: dict[str, Any] = {
        "workers": 1,
        "poll_interval": 0.02,
        "lease_seconds": 30.0,
        "shutdown_grace": 1.0,
        "batch_interval": 60.0,
        "retry": retry,
    }
    values.update(changes)
    return OutboxSettings(**values)


def link_for(call: Call) -> str:
    return recording_links.call_recording_url(
        LINK_SETTINGS, call, ttl=timedelta(days=90), now=datetime.now(UTC)
    )


@dataclass
class World:
    """One database with one site; calls go in through the recorder's observer."""

    sessionmaker: SessionMaker
    site_id: int
    url: str

    def workers(
        self, http: aiohttp.ClientSession, sessionmaker: SessionMaker | None = None, **changes: Any
    ) -> OutboxWorkers:
        return OutboxWorkers(
            sessionmaker or self.sessionmaker,
            http,
            tiny_settings(**changes),
            recording_link=link_for,
        )

    async def integration(
        self,
        kind: str,
        config: dict[str, Any],
        *,
        trigger: str = "every",
        stage: str = "hangup",
        name: str | None = None,
    ) -> int:
        async with self.sessionmaker.begin() as session:
            row = await integration_config.create_integration(
                session,
                site_id=self.site_id,
                kind=kind,
                name=name or f"{kind}-{next(_linkedids)}",
                config=config,
                trigger=trigger,
                stage=stage,
            )
            return row.id

    async def call(
        self,
        *,
        caller: str | None = None,
        talk: int = 125,
        status: str = "answered",
        unique: bool = True,
        target: bool = True,
        ym_client_id: str = "1730000000123456789",
        recording: str = "",
        linkedid: str | None = None,
        ring_only: bool = False,
        started: datetime | None = None,
        **visit: Any,
    ) -> int:
        """Write a call as the recorder does: CallStarted, then CallEnded, each in its own
        transaction with the observer inside it. Returns the call id."""
        linkedid = linkedid or f"1772879100.{next(_linkedids)}"
        caller = caller or f"+7999{next(_callers):07d}"
        started = started or datetime.now(UTC) - timedelta(minutes=3)
        async with self.sessionmaker.begin() as session:
            row = Visit(
                id=f"v{linkedid.replace('.', '')}",
                site_id=self.site_id,
                visitor_key="visitor-1",
                started_at=started - timedelta(minutes=10),
                url="https://shop.example.ru/sofas?utm_source=yandex",
                referrer="https://yandex.ru/search/?text=divan",
                ga_client_id="123456.7654321",
                ym_client_id=ym_client_id,
                source="yandex",
                medium="cpc",
                campaign="brand_msk",
                keyword="купить диван",
                content="ad_42",
                touch_source="yandex",
                touch_medium="cpc",
                number="+74951230001",
                number_kind="pool",
            )
            for name, value in visit.items():  # click_id, ga_sessions, ...
                setattr(row, name, value)
            session.add(row)
            call = Call(
                linkedid=linkedid,
                site_id=self.site_id,
                tracking_number="+74951230001",
                caller=caller,
                started_at=started,
                status="ringing",
                visit_id=row.id,
                source="yandex",
                medium="cpc",
                campaign="brand_msk",
                keyword="купить диван",
                attribution="exact",
                unique=unique,
                target=False,
            )
            session.add(call)
            await session.flush()
            fact = CallStarted(linkedid, "74951230001", caller, started, "SIP/t-1", "1.1")
            await enqueue_for_call(CallChange(call, fact, session))
            call_id = call.id
        if not ring_only:
            await self.end_call(
                call_id, talk=talk, status=status, target=target, recording=recording
            )
        return call_id

    async def end_call(
        self, call_id: int, *, talk: int, status: str, target: bool, recording: str = ""
    ) -> None:
        async with self.sessionmaker.begin() as session:
            call = await session.get(Call, call_id)
            assert call is not None
            ended = call.started_at + timedelta(seconds=talk + 12)
            call.answered_at = call.started_at + timedelta(seconds=12) if talk else None
            call.ended_at = ended
            call.wait_seconds = 12
            call.talk_seconds = talk
            call.status = status
            call.operator = "101"
            call.target = target
            call.recording = recording
            fact = CallEnded(
                linkedid=call.linkedid,
                did="74951230001",
                caller=call.caller,
                started_at=call.started_at,
                answered_at=call.answered_at,
                ended_at=ended,
                wait_seconds=12.0,
                talk_seconds=float(talk),
                status=CallStatus(status),
                dial_status="ANSWER",
                operator="101",
                recording=recording,
                uniqueid="1.1",
            )
            await enqueue_for_call(CallChange(call, fact, session))

    async def rows(self) -> list[OutboxRow]:
        async with self.sessionmaker() as session:
            return list(await session.scalars(select(OutboxRow).order_by(OutboxRow.id)))

    async def states(self) -> list[str]:
        return [row.state for row in await self.rows()]


async def make_world(url: str) -> AsyncIterator[World]:
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker.begin() as session:
        site = await sites.create_site(
            session,
            key="shop",
            name="Divan MSK",
            domains=["shop.example.ru"],
            default_number="+74950000000",
        )
    yield World(sessionmaker, site.id, url)
    await engine.dispose()


@pytest.fixture(scope="session")
def outbox_pg_database(pg_template: str) -> Iterator[str]:
    """One PostgreSQL database for the outbox tests, emptied before each: creating and
    dropping one per test costs more than the tests themselves."""
    name = f"ct_outbox_{os.getpid()}"
    run_blocking(_pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    run_blocking(_pg_admin(f"CREATE DATABASE {name} TEMPLATE {pg_template}"))
    yield _pg_dsn(PG_URL, name)
    run_blocking(_pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


async def empty_pg(url: str) -> str:
    # DELETE beats TRUNCATE on a handful of rows; children first, for the foreign keys.
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(";".join(f'DELETE FROM "{name}"' for name in tables))
    finally:
        await conn.close()
    return url


@pytest.fixture(name="pg_db_url")
def pg_db_url_fixture(outbox_pg_database: str) -> str:
    return str(run_blocking(empty_pg(outbox_pg_database)))


@pytest.fixture(name="db_url", params=["embedded", "scale"])
def db_url_fixture(request: pytest.FixtureRequest) -> str:
    """SQLite and PostgreSQL, like every test that stores something."""
    name = "sqlite_url" if request.param == "embedded" else "pg_db_url"
    return str(request.getfixturevalue(name))


# Named fixtures: test modules import the functions, and their parameters keep the short names.
@pytest.fixture(name="world")
async def world_fixture(db_url: str) -> AsyncIterator[World]:
    async for w in make_world(db_url):
        yield w


@pytest.fixture(name="http")
async def http_fixture() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture(name="running")
async def running_fixture() -> AsyncIterator[Callable[[OutboxWorkers], OutboxWorkers]]:
    """Start workers for the test and always stop them, even when it fails."""
    started: list[OutboxWorkers] = []

    def start(workers: OutboxWorkers) -> OutboxWorkers:
        workers.start()
        started.append(workers)
        return workers

    yield start
    for workers in started:
        await workers.stop()


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``check`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def bitrix_config(bitrix: Any, **extra: Any) -> dict[str, Any]:
    return {
        "webhook_url": bitrix.webhook_url,
        "rate_limit": 50,
        "call_logging": "activity",
        **extra,
    }


def amo_config(amo: Any, **extra: Any) -> dict[str, Any]:
    return {"base_url": amo.url, "access_token": amo.token, **extra}
