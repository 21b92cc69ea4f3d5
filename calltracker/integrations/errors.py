"""What a delivery to a CRM, analytics or webhook endpoint can fail with.

The tree, and what the outbox worker does with each branch::

    IntegrationError          base; never raised directly
    ├── TemporaryError        retry later with backoff (network, timeouts, 5xx, 429, Bitrix
    │                         503 QUERY_LIMIT_EXCEEDED, Metrica 420); ``retry_after`` is the
    │                         remote's hint in seconds, or None
    ├── AuthError             stop and alert an admin: the credentials or their scope are wrong
    │                         (401, 403, Bitrix NO_AUTH_FOUND / insufficient_scope)
    └── PermanentError        record and stop: the remote rejected the data (4xx validation);
        │                     the message is the remote's own
        └── EndpointGone      the receiver answered 410 Gone: disable the integration

``ConfigError`` is separate: a stored integration config is malformed, raised while building
an adapter, before anything is sent. Its message names the field and never shows a secret.

No message in this tree may contain a URL, token or secret: the worker logs them as they are.
"""

from __future__ import annotations


class IntegrationError(Exception):
    """A delivery failed; ``status`` and ``code`` are the remote's, when it answered."""

    def __init__(self, message: str, *, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status}, code={self.code!r})"


class TemporaryError(IntegrationError):
    """Try again later; ``retry_after`` is how long the remote asked us to wait, if it said."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code)
        self.retry_after = retry_after


class AuthError(IntegrationError):
    """The remote refused our credentials or their scope; an admin has to fix the config."""


class PermanentError(IntegrationError):
    """The remote rejected this delivery for good; sending it again would fail the same way."""


class EndpointGone(PermanentError):
    """The webhook receiver asked us to stop sending (410 Gone)."""


class ConfigError(ValueError):
    """A stored integration config is invalid; the message names the field."""
