"""The catalog's use cases: each applies the defaults, commits, and refreshes the live catalog.

Handlers and the CLI call these and nothing below them, so a default (a pool's name, its
hold time) is written once, and no caller can forget that the hot paths read a snapshot.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from calltracker.catalog import edits, numbers_csv, sites
from calltracker.db.engine import SessionMaker
from calltracker.db.models import Pool, Site, TrackingNumber

Refresh = Callable[[], Awaitable[object]]


class CatalogService:
    """Edits to sites, pools and numbers, each in its own transaction.

    ``refresh`` reloads the in-memory catalog (catalog/cache.py) after each change; the CLI
    has none, and a running server picks the change up within its refresh interval.
    """

    def __init__(self, sessionmaker: SessionMaker, refresh: Refresh | None = None) -> None:
        self._sessionmaker = sessionmaker
        self._refresh = refresh

    async def _changed(self) -> None:
        if self._refresh is not None:
            await self._refresh()

    async def create_site(
        self,
        *,
        key: str,
        default_number: str,
        name: str = "",
        domains: Sequence[str] = (),
        country: str | None = None,
        timezone: str | None = None,
        pooled_mediums: Sequence[str] = (),
    ) -> Site:
        async with self._sessionmaker.begin() as session:
            site = await sites.create_site(
                session,
                key=key,
                name=name,
                domains=domains,
                default_number=default_number,
                country=country or sites.DEFAULT_COUNTRY,
                timezone=timezone or sites.DEFAULT_TIMEZONE,
                pooled_mediums=pooled_mediums,
            )
        await self._changed()
        return site

    async def update_site(
        self,
        key_or_id: str | int,
        *,
        name: str | None = None,
        domains: Sequence[str] | None = None,
        default_number: str | None = None,
        country: str | None = None,
        timezone: str | None = None,
        pooled_mediums: Sequence[str] | None = None,
        target_min_talk_seconds: int | None = None,
        unique_window_days: int | None = None,
        fallback_number_id: int | None = None,
    ) -> Site:
        """Change the given settings (None: unchanged); fallback_number_id 0 means the default."""
        async with self._sessionmaker.begin() as session:
            site = await edits.update_site(
                session,
                key_or_id,
                name=name,
                domains=domains,
                default_number=default_number,
                country=country,
                timezone=timezone,
                pooled_mediums=pooled_mediums,
                target_min_talk_seconds=target_min_talk_seconds,
                unique_window_days=unique_window_days,
                fallback_number_id=fallback_number_id,
            )
        await self._changed()
        return site

    async def create_pool(
        self,
        site_ref: str | int,
        *,
        name: str | None = None,
        hold_seconds: int | None = None,
        policy: str | None = None,
        numbers: Sequence[str] = (),
    ) -> tuple[Pool, list[TrackingNumber]]:
        """A pool for the site, with its first numbers (all or none); blanks take the defaults."""
        async with self._sessionmaker.begin() as session:
            site = await sites.get_site(session, site_ref)
            pool = await sites.create_pool(
                session,
                site,
                name=(name or "").strip() or sites.DEFAULT_POOL_NAME,
                hold_seconds=sites.DEFAULT_HOLD_SECONDS if hold_seconds is None else hold_seconds,
                policy=policy or sites.DEFAULT_POLICY,
            )
            added = await sites.add_pool_numbers(session, pool, numbers) if numbers else []
        await self._changed()
        return pool, added

    async def update_pool(
        self,
        pool_id: int,
        *,
        name: str | None = None,
        hold_seconds: int | None = None,
        policy: str | None = None,
    ) -> Pool:
        async with self._sessionmaker.begin() as session:
            pool = await edits.update_pool(
                session, pool_id, name=name, hold_seconds=hold_seconds, policy=policy
            )
        await self._changed()
        return pool

    async def add_pool_numbers(self, pool_id: int, numbers: Sequence[str]) -> list[TrackingNumber]:
        async with self._sessionmaker.begin() as session:
            pool = await sites.get_pool(session, pool_id)
            added = await sites.add_pool_numbers(session, pool, numbers)
        await self._changed()
        return added

    async def add_static_number(
        self,
        site_ref: str | int,
        number: str,
        *,
        source: str,
        medium: str | None = None,
        campaign: str = "",
    ) -> TrackingNumber:
        async with self._sessionmaker.begin() as session:
            site = await sites.get_site(session, site_ref)
            row = await sites.add_static_number(
                session,
                site,
                number,
                source=source,
                medium=medium or sites.DEFAULT_STATIC_MEDIUM,
                campaign=campaign,
            )
        await self._changed()
        return row

    async def set_number_active(self, number_id: int, active: bool) -> TrackingNumber:
        async with self._sessionmaker.begin() as session:
            row = await edits.set_number_active(session, number_id, active)
        await self._changed()
        return row

    async def import_numbers_csv(self, text: str) -> list[TrackingNumber]:
        """All or nothing; CsvImportFailed lists every bad line."""
        async with self._sessionmaker.begin() as session:
            rows = await numbers_csv.import_numbers_csv(session, text)
        await self._changed()
        return rows
