"""The dialect's INSERT, which (unlike the generic one) has ON CONFLICT for upserts."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def insert_for_dialect(dialect: str) -> Any:
    """postgresql.insert or sqlite.insert: both speak on_conflict_do_update/do_nothing."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def insert_for(session: AsyncSession) -> Any:
    return insert_for_dialect(session.get_bind().dialect.name)
