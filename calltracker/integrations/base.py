"""The one interface every CRM, analytics and webhook adapter implements, and what they share."""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Literal, Protocol, TypeVar, get_args, runtime_checkable

import aiohttp
from multidict import CIMultiDictProxy

from calltracker.clock import utcnow
from calltracker.integrations.errors import (
    AuthError,
    ConfigError,
    IntegrationError,
    PermanentError,
    TemporaryError,
)
from calltracker.settings import Secret

Stage = Literal["ring", "hangup"]
CallStatus = Literal["answered", "missed", "busy", "failed"]
Attribution = Literal["exact", "probable", "ambiguous", "static", "default", "none"]

STAGES: tuple[str, ...] = get_args(Stage)  # in the order a call goes through them
CALL_STATUSES: frozenset[str] = frozenset(get_args(CallStatus))
ATTRIBUTIONS: frozenset[str] = frozenset(get_args(Attribution))

E164 = re.compile(r"^\+[1-9]\d{6,14}$")

# Fixed so that a call with no stored UUID still maps to the same external id on every retry.
_CALL_NAMESPACE = uuid.UUID("6f1d7c0e-9a53-4c47-9d0e-2b8f0c1a7e55")


def _require_aware(name: str, value: datetime | None) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(f"{name} must be timezone-aware (UTC)")


@dataclass(frozen=True)
class Visit:
    """The website visit a call was attributed to."""

    visit_id: str
    landing_url: str = ""
    referrer: str = ""
    ga_client_id: str = ""
    ym_client_id: str = ""
    visited_at: datetime | None = None

    def __post_init__(self) -> None:
        _require_aware("visited_at", self.visited_at)


@dataclass(frozen=True)
class LeadCall:
    """Everything an adapter may send about one call, in our internal formats (E.164, UTC)."""

    call_id: int
    linkedid: str
    site_id: int
    site_name: str
    tracking_number: str
    caller: str  # "" when the caller id was withheld
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None  # None at the "ring" stage
    wait_seconds: int
    talk_seconds: int
    status: CallStatus
    operator: str  # extension, or ""
    recording_url: str  # signed, expiring; "" when there is none (yet)
    visit: Visit | None
    source: str
    medium: str
    campaign: str
    keyword: str
    content: str
    attribution: Attribution
    unique: bool
    target: bool
    stage: Stage
    call_uuid: str = ""  # our global call id; derived from linkedid and call_id when empty

    def __post_init__(self) -> None:
        for name in ("started_at", "answered_at", "ended_at"):
            _require_aware(name, getattr(self, name))
        if not E164.match(self.tracking_number):
            raise ValueError(f"tracking_number {self.tracking_number!r} is not E.164")
        if self.caller and not E164.match(self.caller):
            raise ValueError(f"caller {self.caller!r} is not E.164")
        if self.status not in CALL_STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {sorted(CALL_STATUSES)}")
        if self.stage not in STAGES:
            raise ValueError(f"stage {self.stage!r} is not one of {sorted(STAGES)}")
        if self.attribution not in ATTRIBUTIONS:
            raise ValueError(
                f"attribution {self.attribution!r} is not one of {sorted(ATTRIBUTIONS)}"
            )

    @property
    def external_id(self) -> str:
        """The id remotes store as their external/unique id for this call, stable across stages."""
        if self.call_uuid:
            return self.call_uuid
        return str(uuid.uuid5(_CALL_NAMESPACE, f"{self.linkedid}:{self.call_id}"))


@dataclass(frozen=True)
class DeliveryResult:
    """What the remote now holds for a call: ids to store, or why nothing was sent."""

    remote_ids: dict[str, str] = field(default_factory=dict)
    skipped: str = ""  # non-empty: nothing was sent, on purpose (e.g. "no GA client id")


@dataclass(frozen=True)
class BatchResult:
    """One batched upload: which calls went into it and which were left out, and why."""

    upload_id: str  # "" when nothing was uploaded
    status: str
    sent: tuple[int, ...]
    skipped: dict[int, str] = field(default_factory=dict)


@runtime_checkable
class Adapter(Protocol):
    """Sends one call to one remote system; built from stored config by ``registry.build_adapter``."""

    @property
    def kind(self) -> str: ...

    @property
    def rate_limit(self) -> float:
        """Requests per second this adapter's remote tolerates; the adapter already keeps to it."""
        ...

    @property
    def stages(self) -> frozenset[str]:
        """The call stages this adapter wants; the outbox enqueues only these."""
        ...

    async def deliver(self, call: LeadCall, idempotency_key: str) -> DeliveryResult:
        """Deliver once or raise from ``errors``; delivering the same call again is harmless."""
        ...


@runtime_checkable
class BatchAdapter(Adapter, Protocol):
    """An adapter whose remote takes calls in scheduled batches (Yandex Metrica)."""

    async def deliver_batch(self, calls: Sequence[LeadCall]) -> BatchResult: ...


class RateLimiter:
    """Spaces requests evenly so that a remote never sees more than ``rate`` in any second."""

    # Requests reach the remote with jitter; 10% spare keeps its own 1-second window under rate.
    _SAFETY = 1.10

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not rate > 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self._interval = self._SAFETY / rate
        self._clock = clock
        self._next = -math.inf
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        # The lock is held while sleeping, so waiters go out one at a time in arrival order.
        async with self._lock:
            now = self._clock()
            if self._next > now:
                await asyncio.sleep(self._next - now)
                # The clock again, not the planned slot: a late wake-up must not shorten the gap.
                now = self._clock()
            self._next = now + self._interval

    def pause(self, seconds: float) -> None:
        """Hold every request back for ``seconds``, after the remote said it is overloaded."""
        self._next = max(self._next, self._clock() + seconds)


TokenSaver = Callable[[Secret, Secret], Awaitable[None]]


class AdapterConfig(Protocol):
    """What every adapter's config declares."""

    @property
    def rate_limit(self) -> float: ...

    @property
    def stages(self) -> frozenset[str]: ...


ConfigT = TypeVar("ConfigT", bound=AdapterConfig)


class ConfiguredAdapter(Generic[ConfigT]):
    """What every adapter shares: its config, the shared HTTP session and its own limiter."""

    def __init__(
        self,
        config: ConfigT,
        session: aiohttp.ClientSession,
        *,
        limiter: RateLimiter | None = None,
        clock: Callable[[], datetime] = utcnow,
        on_tokens_refreshed: TokenSaver | None = None,
    ) -> None:
        self.config = config
        self._session = session
        # One limiter per integration: a remote counts all our requests in one bucket.
        self._limiter = limiter or RateLimiter(config.rate_limit)
        self._clock = clock
        # Adapters whose remote hands out new OAuth tokens keep them through this.
        self._on_tokens_refreshed = on_tokens_refreshed
        self._prepare()

    def _prepare(self) -> None:
        """Set up what an adapter derives from its config; called once by __init__."""

    @property
    def rate_limit(self) -> float:
        return self.config.rate_limit

    @property
    def stages(self) -> frozenset[str]:
        return self.config.stages


@dataclass(frozen=True)
class HttpReply:
    """A fully read HTTP response."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON; None when it is empty; ValueError when it is not JSON."""
        if not self.body.strip():
            return None
        return json.loads(self.body)


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    service: str,
    limiter: RateLimiter,
    timeout: float,
    **kwargs: Any,
) -> HttpReply:
    """One HTTP request, rate limited; network failures become TemporaryError without the URL."""
    # URLs stay out of messages and exception chains (from None): Bitrix webhook URLs and GA4
    # query strings carry secrets, and the worker logs errors as they are.
    await limiter.acquire()
    try:
        async with session.request(
            method,
            url,
            timeout=aiohttp.ClientTimeout(total=timeout),
            raise_for_status=False,
            allow_redirects=False,
            **kwargs,
        ) as resp:
            body = await resp.read()
            return HttpReply(resp.status, resp.headers, body)
    except TimeoutError:
        raise TemporaryError(f"{service}: no answer within {timeout:g} s") from None
    except aiohttp.ClientError as err:
        raise TemporaryError(f"{service}: network error ({type(err).__name__})") from None


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or utcnow())).total_seconds())


def http_error(
    service: str, reply: HttpReply, detail: str, code: str = "", *, retry_after: float | None = None
) -> IntegrationError:
    """The usual mapping of a non-2xx status to the error tree; adapters special-case around it."""
    status = reply.status
    message = f"{service}: HTTP {status}" + (f": {detail}" if detail else "")
    if status in (401, 403):
        return AuthError(message, status=status, code=code)
    if status in (408, 420, 425, 429) or status >= 500:
        hint = parse_retry_after(reply.headers.get("Retry-After"))
        return TemporaryError(
            message, status=status, code=code, retry_after=hint if hint is not None else retry_after
        )
    if 300 <= status < 400:
        return PermanentError(
            f"{service}: HTTP {status} redirect not followed; check the URL", status=status
        )
    return PermanentError(message, status=status, code=code)


def last_digits(phone: str, n: int = 10) -> str:
    """The last ``n`` digits, which is how CRMs match numbers stored as +7…, 8… or 7…."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    return digits[-n:]


def iso_utc(value: datetime) -> str:
    """ISO-8601 with an explicit +00:00 offset, seconds precision."""
    return value.astimezone(UTC).replace(microsecond=0).isoformat()


T = TypeVar("T")
_MISSING: Any = object()


class ConfigReader:
    """Reads one integration's stored config dict; every error names ``kind.field``."""

    def __init__(self, kind: str, raw: Mapping[str, Any]) -> None:
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{kind}: config must be a mapping")
        self.kind = kind
        self._raw = raw
        self._seen: set[str] = set()

    def fail(self, name: str, why: str) -> ConfigError:
        return ConfigError(f"{self.kind}.{name}: {why}")

    def _get(self, name: str, default: Any) -> Any:
        self._seen.add(name)
        value = self._raw.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if default is _MISSING:
                raise self.fail(name, "is required")
            return default
        return value

    def text(self, name: str, default: str = _MISSING, *, max_len: int = 1000) -> str:
        value = self._get(name, default)
        if not isinstance(value, str):
            raise self.fail(name, "must be a string")
        if len(value) > max_len:
            raise self.fail(name, f"must be at most {max_len} characters")
        return value.strip()

    def secret(self, name: str, *, required: bool = True) -> Secret:
        value = self._get(name, _MISSING if required else "")
        if isinstance(value, Secret):
            return value
        if not isinstance(value, str):
            raise self.fail(name, "must be a string")  # never echo a secret's value
        return Secret(value.strip())

    def url(self, name: str, default: str = _MISSING) -> str:
        value = self.text(name, default)
        if not re.match(r"^https?://[^/\s]+", value):
            raise self.fail(name, "must be an http:// or https:// URL")
        return value

    def integer(
        self, name: str, default: int = _MISSING, *, lo: int | None = None, hi: int | None = None
    ) -> int:
        value = self._get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise self.fail(name, "must be a whole number")
        try:
            number = int(value)
        except ValueError:
            raise self.fail(name, "must be a whole number") from None
        if lo is not None and number < lo:
            raise self.fail(name, f"must be at least {lo}")
        if hi is not None and number > hi:
            raise self.fail(name, f"must be at most {hi}")
        return number

    def optional_integer(self, name: str, *, lo: int | None = None) -> int | None:
        if self._raw.get(name) is None:
            self._seen.add(name)
            return None
        return self.integer(name, lo=lo)

    def number(
        self, name: str, default: float = _MISSING, *, lo: float = 0.0, hi: float = math.inf
    ) -> float:
        value = self._get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise self.fail(name, "must be a number")
        try:
            number = float(value)
        except ValueError:
            raise self.fail(name, "must be a number") from None
        if not (lo < number <= hi) or math.isnan(number):
            raise self.fail(name, f"must be more than {lo:g} and at most {hi:g}")
        return number

    def optional_number(self, name: str) -> float | None:
        if self._raw.get(name) is None:
            self._seen.add(name)
            return None
        return self.number(name, lo=-math.inf)

    def flag(self, name: str, default: bool = _MISSING) -> bool:
        value = self._get(name, default)
        if not isinstance(value, bool):
            raise self.fail(name, "must be true or false")
        return value

    def choice(self, name: str, choices: Sequence[T], default: T = _MISSING) -> T:
        value = self._get(name, default)
        if value not in choices:
            raise self.fail(name, f"must be one of {', '.join(map(str, choices))}")
        return value  # type: ignore[no-any-return]

    def texts(self, name: str, default: Sequence[str] = _MISSING) -> tuple[str, ...]:
        value = self._get(name, default)
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise self.fail(name, "must be a list of strings")
        if not all(isinstance(item, str) and item.strip() for item in value):
            raise self.fail(name, "must be a list of non-empty strings")
        return tuple(item.strip() for item in value)

    def stages(self, default: Sequence[str]) -> frozenset[str]:
        values = self.texts("stages", default)
        bad = [v for v in values if v not in STAGES]
        if bad or not values:
            raise self.fail("stages", f"must be a non-empty list of {', '.join(sorted(STAGES))}")
        return frozenset(values)

    def int_map(self, name: str) -> dict[str, int]:
        value = self._get(name, {})
        if not isinstance(value, Mapping):
            raise self.fail(name, "must be a mapping")
        result: dict[str, int] = {}
        for key, item in value.items():
            if not isinstance(key, str) or isinstance(item, bool) or not isinstance(item, int):
                raise self.fail(name, "must map strings to whole numbers")
            result[key] = item
        return result

    def section(self, name: str) -> ConfigReader | None:
        value = self._get(name, None)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise self.fail(name, "must be a mapping")
        return ConfigReader(f"{self.kind}.{name}", value)

    def done(self) -> None:
        """Reject keys nobody read, so a typo in a stored config fails loudly."""
        unknown = sorted(set(self._raw) - self._seen)
        if unknown:
            raise ConfigError(f"{self.kind}: unknown field(s) {', '.join(map(str, unknown))}")
