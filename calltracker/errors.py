"""Domain error kinds; web/errors.py maps each kind to one HTTP status.

CalltrackerError
  NotFound        -> 404  (unknown site key, visit, call ...)
  Invalid         -> 400  (a field or value that cannot be used; message names it)
  Conflict        -> 409  (a number already tracked elsewhere ...)
  Forbidden       -> 403  (origin or role not allowed)
"""

from __future__ import annotations

from typing import Any


class CalltrackerError(Exception):
    code = "error"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class NotFound(CalltrackerError):
    code = "not_found"


class Invalid(CalltrackerError):
    code = "invalid"


class Conflict(CalltrackerError):
    code = "conflict"


class Forbidden(CalltrackerError):
    code = "forbidden"
