"""What becomes of an outbox row after a delivery attempt: pure decisions, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from calltracker.integrations.base import DeliveryResult
from calltracker.integrations.errors import (
    AuthError,
    EndpointGone,
    IntegrationError,
    PermanentError,
    TemporaryError,
)

PENDING = "pending"
SENDING = "sending"
DONE = "done"
FAILED = "failed"
DEAD = "dead"
STATES = (PENDING, SENDING, DONE, FAILED, DEAD)
# A worker may claim these once next_attempt_at has passed; for `sending` that means the
# lease of a worker that died mid-send has run out.
CLAIMABLE = (PENDING, FAILED, SENDING)

# error_kind values, so admins can count what needs them (auth) apart from what heals itself.
TEMPORARY = "temporary"
AUTH = "auth"
PERMANENT = "permanent"
GONE = "gone"
INVALID = "invalid"
INTERNAL = "internal"
SKIPPED = "skipped"

AUTH_MESSAGE = "authentication failed: check the credentials"


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff with full jitter: attempt n waits uniform(0, min(cap, base * 2**(n-1))) seconds."""

    max_attempts: int = 10
    base: float = 10.0
    cap: float = 3600.0
    auth_delay: float = 3600.0  # an admin has to act; no point asking the remote more often
    max_retry_after: float = 6 * 3600.0  # a remote's Retry-After beyond this is not believed


@dataclass(frozen=True)
class Outcome:
    """The row's next state; ``delay`` is seconds until it is due again (failed rows)."""

    state: str
    error_kind: str = ""
    last_error: str = ""
    delay: float = 0.0
    remote_ids: dict[str, Any] = field(default_factory=dict)
    counts_attempt: bool = True  # False: the attempt is given back (auth failures)


def backoff(attempt: int, policy: RetryPolicy, rand: float) -> float:
    """Full jitter: ``rand`` in [0, 1) times the capped exponential step."""
    step = policy.base * float(2 ** min(max(attempt - 1, 0), 60))
    return rand * min(policy.cap, step)


def delivered(result: DeliveryResult) -> Outcome:
    if result.skipped:
        return Outcome(DONE, SKIPPED, f"skipped: {result.skipped}")
    return Outcome(DONE, remote_ids=dict(result.remote_ids))


def invalid(err: ValueError) -> Outcome:
    """LeadCall refused our own data (a caller id that is not E.164...): resending won't help."""
    return Outcome(DEAD, INVALID, f"invalid call data: {err}")


def failed(err: BaseException, attempt: int, policy: RetryPolicy, rand: float) -> Outcome:
    """The outcome of attempt number ``attempt`` (1-based) that raised ``err``."""
    if isinstance(err, AuthError):
        return Outcome(
            FAILED,
            AUTH,
            f"{AUTH_MESSAGE} ({err.message})",
            delay=policy.auth_delay,
            counts_attempt=False,
        )
    if isinstance(err, EndpointGone):
        return Outcome(DEAD, GONE, f"{err.message}; the integration was disabled")
    if isinstance(err, PermanentError):
        return Outcome(DEAD, PERMANENT, err.message)
    if isinstance(err, IntegrationError):
        kind, message = TEMPORARY, err.message
    else:
        # Unknown failures retry like temporary ones; the message may hold anything, so only
        # the type goes into the row and the traceback into the log.
        kind, message = INTERNAL, f"unexpected {type(err).__name__}; see the server log"
    if attempt >= policy.max_attempts:
        return Outcome(DEAD, kind, f"gave up after {attempt} attempts: {message}")
    delay = backoff(attempt, policy, rand)
    hint = err.retry_after if isinstance(err, TemporaryError) else None
    if hint is not None:
        delay = max(delay, min(hint, policy.max_retry_after))
    return Outcome(FAILED, kind, message, delay=delay)
