"""Login sessions: a random id in an HttpOnly cookie, its SHA-256 in the user_session table."""

# Server-side rows, not a signed cookie, so that logout, a password change or disabling a
# user ends the session everywhere at once. Each session carries its own CSRF token.

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from calltracker.accounts.roles import Role
from calltracker.clock import utcnow
from calltracker.db.auth_models import User, UserSession

IDLE_TIMEOUT = timedelta(hours=12)
MAX_AGE = timedelta(days=7)
# last_seen_at is written at most this often, not on every request.
TOUCH_EVERY = timedelta(minutes=5)


@dataclass(frozen=True)
class SessionInfo:
    id_hash: str
    user_id: int
    username: str
    role: Role
    extension: str
    csrf_token: str


def hash_id(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


async def start_session(session: AsyncSession, user: User, now: datetime | None = None) -> str:
    """Create a session for the user; returns the raw id for the cookie (never stored)."""
    now = now or utcnow()
    # Logins are rare, so they also sweep expired rows: no background task needed.
    await session.execute(
        delete(UserSession).where(
            (UserSession.expires_at < now) | (UserSession.last_seen_at < now - IDLE_TIMEOUT)
        )
    )
    raw = secrets.token_urlsafe(32)
    session.add(
        UserSession(
            id_hash=hash_id(raw),
            user_id=user.id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen_at=now,
            expires_at=now + MAX_AGE,
        )
    )
    await session.flush()
    return raw


async def load_session(
    session: AsyncSession, raw: str, now: datetime | None = None
) -> SessionInfo | None:
    """The live session for a cookie value, or None if unknown, expired, idle or disabled."""
    now = now or utcnow()
    found = (
        await session.execute(
            select(UserSession, User)
            .join(User, User.id == UserSession.user_id)
            .where(UserSession.id_hash == hash_id(raw))
        )
    ).first()
    if found is None:
        return None
    row, user = found
    if user.disabled or row.expires_at <= now or row.last_seen_at + IDLE_TIMEOUT <= now:
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = now
    return SessionInfo(
        id_hash=row.id_hash,
        user_id=user.id,
        username=user.username,
        role=Role(user.role),
        extension=user.extension,
        csrf_token=row.csrf_token,
    )


async def end_session(session: AsyncSession, raw: str) -> None:
    await session.execute(delete(UserSession).where(UserSession.id_hash == hash_id(raw)))
