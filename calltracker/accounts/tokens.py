"""API tokens and roles: created once, shown once, stored as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from calltracker.accounts.roles import Principal, Role, parse_role
from calltracker.clock import utcnow
from calltracker.db.engine import SessionMaker
from calltracker.db.models import ApiToken
from calltracker.errors import Invalid

TOKEN_PREFIX = "ct_"


def hash_token(token: str) -> str:
    # Tokens are 32 random bytes, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(session: AsyncSession, *, name: str, role: str) -> tuple[ApiToken, str]:
    """A new token row and the plaintext, which is never stored."""
    if not name.strip():
        raise Invalid("a token needs a name")
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(name=name.strip(), role=parse_role(role).value, token_hash=hash_token(plaintext))
    session.add(row)
    await session.flush()
    return row, plaintext


async def find_token(session: AsyncSession, plaintext: str) -> Principal | None:
    row = await session.scalar(
        select(ApiToken).where(
            ApiToken.token_hash == hash_token(plaintext), ApiToken.revoked_at.is_(None)
        )
    )
    if row is None:
        return None
    return Principal(name=row.name, role=Role(row.role), token_id=row.id)


async def list_tokens(session: AsyncSession) -> Sequence[ApiToken]:
    return (await session.scalars(select(ApiToken).order_by(ApiToken.id))).all()


async def revoke_token(session: AsyncSession, token_id: int) -> bool:
    row = await session.get(ApiToken, token_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    return True


class TokenVerifier:
    """Checks bearer tokens, remembering answers briefly so requests skip the DB.

    A revoked token therefore keeps working for up to `cache_seconds` in each process.
    """

    def __init__(self, sessionmaker: SessionMaker, cache_seconds: float = 30.0) -> None:
        self._sessionmaker = sessionmaker
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def verify(self, plaintext: str) -> Principal | None:
        now = time.monotonic()
        cached = self._cache.get(plaintext)
        if cached is not None and now - cached[0] < self._cache_seconds:
            return cached[1]
        async with self._sessionmaker() as session:
            principal = await find_token(session, plaintext)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[plaintext] = (now, principal)
        return principal

    def forget(self) -> None:
        self._cache.clear()
