"""What every command shares: one transaction on a database whose schema is current."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from calltracker.catalog.service import CatalogService
from calltracker.db.engine import SessionMaker, create_engine, create_sessionmaker
from calltracker.db.migrate import require_current
from calltracker.settings import Settings

T = TypeVar("T")


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[SessionMaker]:
    """Sessions on the configured database; SchemaBehind unless it is migrated."""
    engine = create_engine(settings.database_url)
    try:
        await require_current(engine)
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


async def with_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction, committed when it returns."""
    async with database(settings) as sessionmaker, sessionmaker.begin() as session:
        return await work(session)


def run_in_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    return asyncio.run(with_session(settings, work))


def run_with_catalog(settings: Settings, work: Callable[[CatalogService], Awaitable[T]]) -> T:
    """Run ``work`` with the catalog's use cases (a running server sees the change shortly)."""

    async def go() -> T:
        async with database(settings) as sessionmaker:
            return await work(CatalogService(sessionmaker))

    return asyncio.run(go())


def print_table(header: str, lines: list[Any]) -> None:
    print(header)
    for line in lines:
        print(line)
