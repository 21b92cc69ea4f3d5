"""Fixtures that start what is real: SQLite files, PostgreSQL databases, Redis, the app."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis
from sqlalchemy.engine import make_url

from calltracker.accounts import tokens
from calltracker.app import create_app
from calltracker.catalog import sites
from calltracker.db.migrate import upgrade
from calltracker.keys import catalog_key, sessionmaker_key
from calltracker.settings import Secret, Settings

PG_URL = os.environ.get(
    "CALLTRACKER_TEST_PG_URL", "postgresql://postgres:postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("CALLTRACKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/1")
HOW_TO_START = "run `make services` (or `bash scripts/ensure-test-services.sh`) to start it"


def run_blocking(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, even while a test loop is running."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _pg_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def _pg_admin(sql: str) -> None:
    try:
        conn = await asyncpg.connect(_pg_dsn(PG_URL), timeout=5)
    except (OSError, asyncpg.PostgresError) as err:
        pytest.fail(f"PostgreSQL at {PG_URL} is not reachable ({err}); {HOW_TO_START}")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A database migrated once per run; each test clones it (CREATE DATABASE ... TEMPLATE)."""
    name = f"ct_tpl_{os.getpid()}"
    run_blocking(_pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    run_blocking(_pg_admin(f"CREATE DATABASE {name}"))
    run_blocking(upgrade(_pg_dsn(PG_URL, name)))
    yield name
    run_blocking(_pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
async def pg_url(pg_template: str) -> AsyncIterator[str]:
    name = f"ct_{uuid.uuid4().hex[:12]}"
    await _pg_admin(f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    yield _pg_dsn(PG_URL, name)
    await _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    run_blocking(upgrade(f"sqlite:///{path}"))
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "calltracker.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own, so runs sharing one Redis never see each other's keys."""
    prefix = f"cttest:{uuid.uuid4().hex[:12]}:"
    client: Redis = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (OSError, ConnectionError) as err:
        await client.aclose()
        pytest.fail(f"Redis at {REDIS_URL} is not reachable ({err}); {HOW_TO_START}")
    yield prefix
    keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
def redis_url(redis_prefix: str) -> str:
    return REDIS_URL


@dataclass(frozen=True)
class Mode:
    name: str
    database_url: str
    redis_url: str
    redis_prefix: str = "ct:"


@pytest.fixture(params=["embedded", "scale"])
def mode(request: pytest.FixtureRequest) -> Mode:
    """Embedded: SQLite + in-process pool. Scale: PostgreSQL + Redis pool."""
    if request.param == "embedded":
        return Mode("embedded", request.getfixturevalue("sqlite_url"), "")
    return Mode(
        "scale",
        request.getfixturevalue("pg_url"),
        request.getfixturevalue("redis_url"),
        request.getfixturevalue("redis_prefix"),
    )


@pytest.fixture
def settings(mode: Mode, tmp_path: Path) -> Settings:
    return Settings(
        database_url=mode.database_url,
        redis_url=Secret(mode.redis_url),
        redis_prefix=mode.redis_prefix,
        recordings_dir=tmp_path / "recordings",
        visit_rate_per_minute=100_000,
        agi_port=0,  # a free port: parallel runs must not fight over FastAGI's 4573
    )


@dataclass(frozen=True)
class Seeded:
    site_key: str
    site_id: int
    pool_id: int
    default_number: str
    pool_numbers: tuple[str, ...]
    static_number: str
    admin_token: str
    marketer_token: str


SITE_DOMAINS = ["shop.example.ru", "127.0.0.1", "localhost"]
POOL_NUMBERS = tuple(f"+7495123{i:04d}" for i in range(1, 4))


async def seed(
    app: Any,
    *,
    hold_seconds: int = 900,
    policy: str = "default_number",
    numbers: tuple[str, ...] = POOL_NUMBERS,
    pooled_mediums: list[str] | None = None,
) -> Seeded:
    async with app[sessionmaker_key].begin() as session:
        site = await sites.create_site(
            session,
            key="shop",
            name="Shop",
            domains=SITE_DOMAINS,
            default_number="+74950000000",
            pooled_mediums=pooled_mediums or [],
        )
        pool = await sites.create_pool(
            session, site, name="main", hold_seconds=hold_seconds, policy=policy
        )
        await sites.add_pool_numbers(session, pool, list(numbers))
        static = await sites.add_static_number(
            session,
            site,
            "+74952000001",
            source="billboard",
            medium="outdoor",
            campaign="tverskaya-2026",
        )
        _, admin = await tokens.create_token(session, name="t-admin", role="admin")
        _, marketer = await tokens.create_token(session, name="t-marketer", role="marketer")
    await app[catalog_key].refresh()
    return Seeded(
        site_key="shop",
        site_id=site.id,
        pool_id=pool.id,
        default_number="+74950000000",
        pool_numbers=numbers,
        static_number=static.number,
        admin_token=admin,
        marketer_token=marketer,
    )


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings) -> TestClient[Any, Any]:
    return await aiohttp_client(create_app(settings))


@pytest.fixture
async def seeded(client: TestClient[Any, Any]) -> Seeded:
    return await seed(client.app)


def with_settings(settings: Settings, **changes: Any) -> Settings:
    return replace(settings, **changes)
