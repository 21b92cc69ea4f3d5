"""Models for people: console users and their login sessions (API tokens live in models.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from calltracker.clock import utcnow
from calltracker.db.base import Base


class User(Base):
    # "user" is reserved in PostgreSQL; app_user needs no quoting anywhere.
    __tablename__ = "app_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)  # stored lower-case
    role: Mapped[str] = mapped_column(String(16))  # admin | marketer | operator
    password_hash: Mapped[str] = mapped_column(String(255))  # scrypt$n$r$p$salt$hash
    # The operator's phone extension, which the console uses to pick their calls.
    extension: Mapped[str] = mapped_column(String(32), default="")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)


class UserSession(Base):
    """A login: the cookie holds a random id; only its SHA-256 is stored, so a leaked table
    or backup cannot be replayed as cookies."""

    __tablename__ = "user_session"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


__all__ = ["User", "UserSession"]
