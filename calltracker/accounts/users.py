"""Console users: scrypt password hashes, roles, per-user API tokens, over one session."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from calltracker.accounts import tokens
from calltracker.accounts.roles import parse_role
from calltracker.clock import utcnow
from calltracker.db.auth_models import User, UserSession
from calltracker.db.models import ApiToken
from calltracker.errors import Conflict, Invalid, NotFound

# scrypt cost: 16 MiB and ~50 ms per hash; the parameters are stored in each hash, so they
# can be raised later without invalidating old passwords.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES, KEY_BYTES = 16, 32
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # scrypt hashes any length; the cap only bounds the work per request
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._@-]{1,63}$")


class UnknownUser(NotFound):
    code = "unknown_user"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, dklen=KEY_BYTES, maxmem=64 * 1024 * 1024
    )


async def hash_password_off_loop(password: str) -> str:
    """hash_password in a worker thread: ~50 ms of scrypt on the event loop would stall
    every visit the server is answering meanwhile (hashlib releases the GIL for it)."""
    return await asyncio.to_thread(hash_password, password)


async def verify_password_off_loop(password: str, stored: str) -> bool:
    return await asyncio.to_thread(verify_password, password, stored)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    key = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(key)
        actual = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


# Checked against when the username is unknown, so a login takes as long either way and
# timing does not reveal which usernames exist.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def generate_password() -> str:
    return secrets.token_urlsafe(15)  # 20 characters, 120 bits


def clean_username(raw: str) -> str:
    username = raw.strip().lower()
    if not USERNAME_RE.match(username):
        raise Invalid(
            f"invalid username {raw!r}: 2-64 letters, digits, '.', '_', '@' or '-'",
            code="invalid_username",
        )
    return username


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise Invalid(
            f"the password is too short: at least {MIN_PASSWORD} characters",
            code="weak_password",
        )
    if len(password) > MAX_PASSWORD:
        raise Invalid(f"the password is too long: at most {MAX_PASSWORD} characters")


async def create_user(
    session: AsyncSession, *, username: str, role: str, password: str, extension: str = ""
) -> User:
    name = clean_username(username)
    check_password_rules(password)
    if await session.scalar(select(User.id).where(User.username == name)) is not None:
        raise Conflict(f"username {name!r} is taken", code="username_taken")
    user = User(
        username=name,
        role=parse_role(role).value,
        password_hash=await hash_password_off_loop(password),
        extension=extension.strip()[:32],
    )
    session.add(user)
    await session.flush()
    return user


async def get_user(session: AsyncSession, key: int | str) -> User:
    if isinstance(key, int):
        user = await session.get(User, key)
    else:
        user = await session.scalar(select(User).where(User.username == key.strip().lower()))
    if user is None:
        raise UnknownUser(f"unknown user {key!r}")
    return user


async def list_users(session: AsyncSession) -> Sequence[User]:
    return (await session.scalars(select(User).order_by(User.username))).all()


async def authenticate(session: AsyncSession, username: str, password: str) -> User | None:
    """The active user with these credentials, or None; as slow for unknown names."""
    user = await session.scalar(select(User).where(User.username == username.strip().lower()))
    if user is None or len(password) > MAX_PASSWORD:
        await verify_password_off_loop(password[:MAX_PASSWORD], _DUMMY_HASH)
        return None
    if not await verify_password_off_loop(password, user.password_hash) or user.disabled:
        return None
    user.last_login_at = utcnow()
    return user


async def set_password(
    session: AsyncSession, user: User, password: str, *, keep_session: str | None = None
) -> None:
    """Set a new password and end the user's other logins (all, unless one is kept)."""
    check_password_rules(password)
    user.password_hash = await hash_password_off_loop(password)
    query = delete(UserSession).where(UserSession.user_id == user.id)
    if keep_session is not None:
        query = query.where(UserSession.id_hash != keep_session)
    await session.execute(query)


async def change_own_password(
    session: AsyncSession, user_id: int, current: str, new: str, *, keep_session: str
) -> None:
    user = await get_user(session, user_id)
    if not await verify_password_off_loop(current[:MAX_PASSWORD], user.password_hash):
        raise Invalid("the current password is wrong", code="wrong_password")
    await set_password(session, user, new, keep_session=keep_session)


async def update_user(
    session: AsyncSession,
    user_id: int,
    *,
    role: str | None = None,
    disabled: bool | None = None,
    extension: str | None = None,
    acting_user_id: int | None = None,
) -> User:
    """Change a user's role, state or extension; their tokens follow the role.

    Disabling ends the user's sessions and revokes their tokens, so access stops at once
    (tokens: within the verifier's cache time).
    """
    user = await get_user(session, user_id)
    if acting_user_id == user.id and (disabled or (role and role != user.role)):
        raise Invalid("you cannot disable yourself or change your own role", code="self_change")
    if role is not None:
        user.role = parse_role(role).value
        await session.execute(
            update(ApiToken).where(ApiToken.user_id == user.id).values(role=user.role)
        )
    if extension is not None:
        user.extension = extension.strip()[:32]
    if disabled is not None and disabled != user.disabled:
        user.disabled = disabled
        if disabled:
            await session.execute(delete(UserSession).where(UserSession.user_id == user.id))
            await session.execute(
                update(ApiToken)
                .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
    await session.flush()
    return user


async def create_user_token(session: AsyncSession, user_id: int, name: str) -> tuple[ApiToken, str]:
    """A bearer token that acts as the user, with the user's role; the plaintext is shown once."""
    user = await get_user(session, user_id)
    if user.disabled:
        raise Invalid(f"user {user.username!r} is disabled", code="user_disabled")
    row, plaintext = await tokens.create_token(
        session, name=f"{user.username}:{name.strip()}" if name.strip() else "", role=user.role
    )
    row.user_id = user.id
    await session.flush()
    return row, plaintext


async def list_user_tokens(session: AsyncSession, user_id: int | None = None) -> Sequence[ApiToken]:
    """Tokens of one user, or every token (service tokens too) when user_id is None."""
    query = select(ApiToken).order_by(ApiToken.id)
    if user_id is not None:
        query = query.where(ApiToken.user_id == user_id)
    return (await session.scalars(query)).all()


async def revoke_user_token(session: AsyncSession, token_id: int, owner_id: int | None) -> None:
    """Revoke a token; with owner_id, only if it belongs to that user."""
    row = await session.get(ApiToken, token_id)
    if row is None or (owner_id is not None and row.user_id != owner_id):
        raise NotFound(f"unknown token {token_id}", code="unknown_token")
    if row.revoked_at is None:
        row.revoked_at = utcnow()


async def user_id_for_token(session: AsyncSession, token_id: int) -> int | None:
    return await session.scalar(select(ApiToken.user_id).where(ApiToken.id == token_id))
