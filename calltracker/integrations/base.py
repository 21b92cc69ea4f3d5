"""The one interface every CRM, analytics and webhook adapter implements, and what they share."""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, Protocol, TypeVar, get_args, runtime_checkable

import aiohttp
import msgspec
from multidict import CIMultiDictProxy

from calltracker.clock import utcnow
from calltracker.integrations.errors import (
    AuthError,
    ConfigError,
    IntegrationError,
    PermanentError,
    TemporaryError,
)
from calltracker.shapes import INVALID, dec_hook, explain

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
    # GA4 session ids by stream (the measurement id without "G-"), from _ga_<stream> cookies.
    ga_sessions: Mapping[str, str] = field(default_factory=dict)
    click_id: str = ""  # the ad click's id as the landing URL carried it
    click_id_type: str = ""  # its parameter: gclid, gbraid, wbraid, yclid, ...

    def __post_init__(self) -> None:
        _require_aware("visited_at", self.visited_at)

    def ga_session(self, measurement_id: str) -> str:
        """The visit's GA4 session id on that stream, or "" when the widget saw none."""
        return self.ga_sessions.get(measurement_id.removeprefix("G-"), "")


@dataclass(frozen=True)
class DealFacts:
    """A won deal, as the ad platforms get it back: its amount, when it was won, its ids."""

    deal_id: int  # ours
    crm: str
    remote_id: str
    amount: int  # minor units
    currency: str
    won_at: datetime
    title: str = ""

    def __post_init__(self) -> None:
        _require_aware("won_at", self.won_at)

    @property
    def order_id(self) -> str:
        """One id per deal, stable across resends: the platforms' dedupe key (order_id...)."""
        return f"{self.crm}-{self.remote_id}"

    @property
    def value(self) -> float:
        """The amount in major units, as the platforms take it."""
        return self.amount / 100


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
class RevenueAdapter(Adapter, Protocol):
    """An ad platform or analytics adapter that takes won deals back (outbox stage "won")."""

    def sends_revenue(self) -> bool:
        """Whether this config wants won deals at all."""
        ...

    async def deliver_revenue(
        self, call: LeadCall, deal: DealFacts, idempotency_key: str
    ) -> DeliveryResult:
        """Report one won deal, brought by ``call``, once; raise from ``errors``."""
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


class TokenStore(Protocol):
    """Where an adapter keeps the OAuth tokens it refreshed: the integration's stored config."""

    async def save(self, patch: Mapping[str, Any]) -> None:
        """Merge ``patch`` into the stored config in one transaction (``merge_config`` rules)."""
        ...

    async def load(self) -> Mapping[str, Any]:
        """The config as stored now: another process may have refreshed the tokens."""
        ...


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
        tokens: TokenStore | None = None,
    ) -> None:
        self.config = config
        self._session = session
        # One limiter per integration: a remote counts all our requests in one bucket.
        self._limiter = limiter or RateLimiter(config.rate_limit)
        self._clock = clock
        # Adapters whose remote hands out new OAuth tokens keep them through this.
        self._tokens = tokens
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


class ConfigShape(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An integration's stored config: typed, checked, unknown fields refused, secrets as Secret."""


T = TypeVar("T")

# Checked strings every config uses; "invalid" is what an error says instead of msgspec's text.
Text = Annotated[str, msgspec.Meta(max_length=1000)]
Url = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^https?://[^/\s]+",
        max_length=1000,
        description="an http:// or https:// URL",
        extra={INVALID: "must be an http:// or https:// URL"},
    ),
]
Currency = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Z]{3}$",
        description="ISO 4217 code",
        extra={INVALID: "must be an ISO 4217 code such as RUB"},
    ),
]
Stages = Annotated[
    frozenset[Stage],
    msgspec.Meta(
        min_length=1,
        description="the call stages sent",
        extra={INVALID: f"must be a non-empty list of {', '.join(sorted(STAGES))}"},
    ),
]
HANGUP: frozenset[Stage] = frozenset({"hangup"})


def decode_config(kind: str, shape: type[T], raw: object) -> T:
    """The stored config ``raw`` as ``shape``; ConfigError names ``kind.field`` and why."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{kind}: config must be a mapping")
    given = _given(raw)
    try:
        # strict=False: numbers typed into a form or a CLI flag arrive as text ("42").
        return msgspec.convert(given, shape, strict=False, dec_hook=dec_hook)
    except msgspec.ValidationError as err:
        problem = explain(err, shape, given)
        where = f"{kind}.{problem.path}" if problem.path else kind
        raise ConfigError(f"{where}: {problem.reason}") from None


def _given(value: Any) -> Any:
    """Stripped text; null and blank fields left out, so they take their defaults."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, Mapping):
        return {
            key: _given(item)
            for key, item in value.items()
            if item is not None and not (isinstance(item, str) and not item.strip())
        }
    if isinstance(value, list | tuple):
        return [_given(item) for item in value]
    return value
