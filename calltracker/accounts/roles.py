"""Who may do what: the three roles, and the principal a request acts as."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from calltracker.errors import Invalid


class Role(StrEnum):
    ADMIN = "admin"
    MARKETER = "marketer"
    OPERATOR = "operator"


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    token_id: int | None = None


def parse_role(raw: str) -> Role:
    try:
        return Role(raw.strip().lower())
    except ValueError:
        raise Invalid(f"unknown role {raw!r}; use admin, marketer or operator") from None
