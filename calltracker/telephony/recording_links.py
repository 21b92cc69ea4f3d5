"""Signed, expiring links to call recordings for CRMs (served by web/recordings.py)."""

from __future__ import annotations

import hashlib
import hmac
import math
from datetime import datetime, timedelta

from calltracker.db.models import Call
from calltracker.errors import Forbidden
from calltracker.settings import Secret, Settings

# Links are checked at least this long after they are made, even for old calls.
MIN_VALIDITY = timedelta(days=1)
# The `expires` of a link that does not expire: CRM cards keep playing it for years.
NEVER = "never"


def _link_key(secret_key: Secret) -> bytes:
    # A key of its own, derived from the server's, so no other HMAC of ours can pass as a link.
    return hmac.new(
        secret_key.reveal().encode(), b"calltracker recording link v1", "sha256"
    ).digest()


def signature(secret_key: Secret, call_id: int, expires: int | str) -> str:
    message = f"{call_id}:{expires}".encode()
    return hmac.new(_link_key(secret_key), message, hashlib.sha256).hexdigest()


def link_expiry(anchor: datetime, now: datetime, ttl: timedelta) -> int:
    """Unix time the link expires: ``ttl`` after the call, later if that is too soon."""
    # Anchored on the call, so retries of one delivery send the same URL (a webhook body must
    # not change between retries); moved on by whole ttls so a late retry still works.
    expires = anchor + ttl
    short = (now + MIN_VALIDITY - expires).total_seconds()
    if short > 0:
        expires += ttl * math.ceil(short / ttl.total_seconds())
    return int(expires.timestamp())


def recording_url(settings: Settings, call_id: int, expires: int) -> str:
    """The absolute link a CRM can fetch without credentials until ``expires``."""
    sig = signature(settings.secret_key, call_id, expires)
    base = settings.public_url.rstrip("/")
    return f"{base}/recordings/{call_id}.mp3?expires={expires}&sig={sig}"


def permanent_url(settings: Settings, call_id: int) -> str:
    """A link that works until SECRET_KEY changes: what CRM players get (they keep links)."""
    sig = signature(settings.secret_key, call_id, NEVER)
    base = settings.public_url.rstrip("/")
    return f"{base}/recordings/{call_id}.mp3?expires={NEVER}&sig={sig}"


def call_recording_url(
    settings: Settings, call: Call, *, ttl: timedelta | None, now: datetime
) -> str:
    """The call's link (``ttl`` None: one that does not expire), or "" without a recording."""
    if not call.recording:
        return ""
    if ttl is None:
        return permanent_url(settings, call.id)
    anchor = call.ended_at or call.started_at
    return recording_url(settings, call.id, link_expiry(anchor, now, ttl))


def check(secret_key: Secret, call_id: int, expires: str, sig: str, now: float) -> None:
    """Raise Forbidden unless the link is ours and has not expired."""
    if not (expires.isdigit() or expires == NEVER) or not sig:
        raise Forbidden("invalid recording link", code="invalid_link")
    expected = signature(secret_key, call_id, expires if expires == NEVER else int(expires))
    if not hmac.compare_digest(expected, sig):
        raise Forbidden("invalid recording link", code="invalid_link")
    if expires != NEVER and int(expires) < now:
        raise Forbidden("this recording link has expired", code="link_expired")
