"""The visit service: classify a visit, pick the number it sees, lease it, record it."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

import msgspec
from msgspec.structs import force_setattr
from sqlalchemy import select

from calltracker.catalog.cache import CatalogCache, NumberInfo, SiteInfo
from calltracker.db.engine import SessionMaker
from calltracker.db.models import Visit, VisitEvent, Visitor
from calltracker.errors import Forbidden, Invalid, NotFound
from calltracker.tracking.attribution import attribute
from calltracker.tracking.bots import is_bot
from calltracker.tracking.classify import Source, classify
from calltracker.tracking.writer import VisitorTouch, VisitRow, VisitWriter
from number_pool import PoolBackend

VISITOR_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{8,64}$")
VISIT_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,32}$")
MAX_URL = 2048
MAX_LABEL = 256
MAX_CLIENT_ID = 100
MAX_GA_COOKIES = 600
# A _ga_<stream> cookie: GS1.1.<session id>.<n>... or GS2.1.s<session id>$o<n>...
GA_COOKIE_RE = re.compile(r"_ga_([A-Za-z0-9]{1,20})=GS\d\.\d+\.s?(\d{1,20})")
MAX_GA_STREAMS = 5
# How often a visit with a static or default number is asked to check in; nothing is held.
UNPOOLED_TTL = 1800
EVENT_TYPES = frozenset({"phone_click"})


class UnknownVisit(NotFound):
    code = "unknown_visit"


class UnknownSiteKey(NotFound):
    code = "unknown_site"


class OriginNotAllowed(Forbidden):
    code = "origin_not_allowed"


class VisitRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What the widget sends to start a visit: POST /api/v1/visits."""

    site_key: str
    url: str
    visitor_id: str | None = None  # the widget's first-party id; none yet: we make one
    referrer: str = ""
    ga_client_id: str = ""
    ym_client_id: str = ""
    ga_sessions: str = ""  # the page's _ga_<stream> cookies, space-separated, as they are

    def __post_init__(self) -> None:
        # Values pasted or copied by page scripts come with stray spaces now and then.
        for name in _TEXT_FIELDS:
            value = getattr(self, name)
            if value is not None and value != value.strip():
                force_setattr(self, name, value.strip())
        if self.visitor_id == "":
            force_setattr(self, "visitor_id", None)


_TEXT_FIELDS = (
    "site_key",
    "url",
    "visitor_id",
    "referrer",
    "ga_client_id",
    "ym_client_id",
    "ga_sessions",
)


class VisitResult(msgspec.Struct, frozen=True, kw_only=True):
    """The number a visit shows, and why: the answer to POST /api/v1/visits."""

    visit_id: str
    visitor_id: str
    number: str  # E.164
    display: str  # as the site's country writes it
    kind: Literal["pool", "static", "default"]
    ttl: int  # seconds until the widget pings to keep the number
    source: str
    medium: str
    campaign: str
    keyword: str
    default_number: str
    selectors: tuple[str, ...]  # CSS selectors of the page's phone numbers


class PingResult(msgspec.Struct, frozen=True):
    """The number a visit keeps, and for how long: the answer to a ping."""

    number: str
    ttl: int


@dataclass(frozen=True)
class NumberChoice:
    """The number a visit sees and what holds it there."""

    number: NumberInfo
    kind: Literal["pool", "static", "default"]
    ttl: int
    pool_id: int | None = None  # a pooled number's pool: the lease that holds it
    shared: bool = False  # the pool was exhausted and another visitor holds it too


def validate_visit(req: VisitRequest) -> None:
    """Edge checks the handler cannot express as types; each message names the field."""
    if not req.site_key:
        raise Invalid("site_key is required", code="invalid_field")
    if not req.url or not req.url.startswith(("http://", "https://")):
        raise Invalid("url must be an absolute http(s) URL", code="invalid_field")
    if len(req.url) > MAX_URL:
        raise Invalid(f"url is longer than {MAX_URL} bytes", code="invalid_field")
    if len(req.referrer) > MAX_URL:
        raise Invalid(f"referrer is longer than {MAX_URL} bytes", code="invalid_field")
    if req.visitor_id is not None and not VISITOR_ID_RE.match(req.visitor_id):
        raise Invalid(
            "visitor_id must be 8-64 letters, digits, '.', '_' or '-'", code="invalid_field"
        )
    validate_utm(req.url)
    for name in ("ga_client_id", "ym_client_id"):
        if len(getattr(req, name)) > MAX_CLIENT_ID:
            raise Invalid(f"{name} is longer than {MAX_CLIENT_ID} chars", code="invalid_field")
    if len(req.ga_sessions) > MAX_GA_COOKIES:
        raise Invalid(f"ga_sessions is longer than {MAX_GA_COOKIES} chars", code="invalid_field")


def ga_sessions(cookies: str) -> str:
    """GA4's session ids from _ga_<stream> cookies, as "STREAM.SESSION ..." (what the visit
    keeps); a cookie in a format GA4 may use one day is left out, not refused."""
    found = dict(GA_COOKIE_RE.findall(cookies))
    return " ".join(
        f"{stream}.{session}" for stream, session in list(found.items())[:MAX_GA_STREAMS]
    )


def validate_utm(url: str) -> None:
    """Reject, rather than silently cut, utm values longer than a label may be."""
    for key, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if key.lower().startswith("utm_") and len(value) > MAX_LABEL:
            raise Invalid(f"{key} is longer than {MAX_LABEL} chars", code="invalid_field")


def new_id() -> str:
    return secrets.token_urlsafe(16)  # 22 chars, unguessable: the visit id is a capability


class VisitService:
    def __init__(
        self,
        catalog: CatalogCache,
        pools: PoolBackend,
        writer: VisitWriter,
        sessionmaker: SessionMaker,
        clock: Callable[[], float] = time.time,
        on_visit: Callable[[str, int | None], None] | None = None,
    ) -> None:
        self._catalog = catalog
        self._pools = pools
        self._writer = writer
        self._sessionmaker = sessionmaker
        self._clock = clock
        self._on_visit = on_visit  # (number kind, pool id): the metrics' visit and lease counts

    def site(self, site_key: str, origin_host: str | None) -> SiteInfo:
        site = self._catalog.current.sites_by_key.get(site_key)
        if site is None:
            raise UnknownSiteKey(f"unknown site_key {site_key!r}")
        if origin_host is not None and not site.allows_origin(origin_host):
            raise OriginNotAllowed(f"origin {origin_host!r} is not a domain of this site")
        return site

    async def start_visit(
        self, req: VisitRequest, *, user_agent: str = "", origin_host: str | None = None
    ) -> VisitResult:
        """``origin_host``: the host of the Origin header, when the browser sent one."""
        validate_visit(req)
        site = self.site(req.site_key, origin_host)
        now = self._clock()
        touch = classify(req.url, req.referrer or None, own_hosts=site.domains)
        visitor_key = req.visitor_id or new_id()
        last_non_direct = None
        if touch.is_direct and req.visitor_id:
            last_non_direct = await self._last_non_direct(site.id, visitor_key)
        attributed = attribute(touch, last_non_direct)
        visit_id = new_id()
        bot = is_bot(user_agent)
        choice = await self._choose_number(site, attributed, visitor_key, visit_id, now, bot)
        if self._on_visit is not None:
            self._on_visit(choice.kind, choice.pool_id)
        seen_at = datetime.fromtimestamp(now, UTC)
        row = VisitRow(
            id=visit_id,
            site_id=site.id,
            visitor_key=visitor_key,
            started_at=seen_at,
            url=req.url,
            referrer=req.referrer,
            ga_client_id=req.ga_client_id,
            ym_client_id=req.ym_client_id,
            ga_sessions=ga_sessions(req.ga_sessions),
            source=attributed.source,
            medium=attributed.medium,
            campaign=attributed.campaign,
            keyword=attributed.keyword,
            content=attributed.content,
            touch_source=touch.source,
            touch_medium=touch.medium,
            click_id=touch.click_id,
            click_id_type=touch.click_id_type,
            number=choice.number.number,
            number_kind=choice.kind,
            pool_id=choice.pool_id,
            shared=choice.shared,
            is_bot=bot,
        )
        await self._writer.write(
            row,
            VisitorTouch(
                site_id=site.id,
                visitor_key=visitor_key,
                seen_at=seen_at,
                source=touch.source,
                medium=touch.medium,
                campaign=touch.campaign,
                keyword=touch.keyword,
                content=touch.content,
                direct=touch.is_direct,
            ),
        )
        return VisitResult(
            visit_id=visit_id,
            visitor_id=visitor_key,
            number=choice.number.number,
            display=site.display(choice.number.number),
            kind=choice.kind,
            ttl=choice.ttl,
            source=attributed.source,
            medium=attributed.medium,
            campaign=attributed.campaign,
            keyword=attributed.keyword,
            default_number=site.default_number,
            selectors=site.selectors,
        )

    async def _choose_number(
        self,
        site: SiteInfo,
        source: Source,
        visitor_key: str,
        visit_id: str,
        now: float,
        bot: bool,
    ) -> NumberChoice:
        default = NumberChoice(
            NumberInfo(number=site.default_number, site_id=site.id, kind="default"),
            "default",
            UNPOOLED_TTL,
        )
        if bot:
            return default
        if site.pool is None or not site.pools_traffic(source.medium):
            fallback = site.fallback
            kind: Literal["static", "default"] = (
                "static" if fallback.kind == "static" else "default"
            )
            return NumberChoice(fallback, kind, UNPOOLED_TTL)
        outcome = await self._pools.lease(site.pool.pool_id, visitor_key, visit_id, now)
        if outcome.lease is None:
            return default
        lease = outcome.lease
        info = self._catalog.current.numbers.get(lease.number) or NumberInfo(
            number=lease.number, site_id=site.id, kind="pool"
        )
        return NumberChoice(
            info, "pool", site.pool.hold_seconds, int(site.pool.pool_id), lease.shared
        )

    async def _last_non_direct(self, site_id: int, visitor_key: str) -> Source | None:
        async with self._sessionmaker() as session:
            row = (
                await session.execute(
                    select(
                        Visitor.last_source,
                        Visitor.last_medium,
                        Visitor.last_campaign,
                        Visitor.last_keyword,
                        Visitor.last_content,
                    ).where(Visitor.site_id == site_id, Visitor.visitor_key == visitor_key)
                )
            ).first()
        if row is None or row.last_source is None:
            return None
        return Source(
            source=row.last_source,
            medium=row.last_medium or "",
            campaign=row.last_campaign or "",
            keyword=row.last_keyword or "",
            content=row.last_content or "",
        )

    async def ping(self, visit_id: str, site_key: str, origin_host: str | None) -> PingResult:
        site = self.site(site_key, origin_host)
        if not VISIT_ID_RE.match(visit_id):
            raise UnknownVisit("unknown visit")
        if site.pool is not None:
            lease = await self._pools.renew(site.pool.pool_id, visit_id, self._clock())
            if lease is not None:
                return PingResult(number=lease.number, ttl=site.pool.hold_seconds)
        visit = await self._visit(visit_id, site.id)
        if visit.number_kind == "pool":
            raise UnknownVisit("the visit's number has expired; start a new visit")
        return PingResult(number=visit.number, ttl=UNPOOLED_TTL)

    async def record_event(
        self, visit_id: str, site_key: str, event_type: str, origin_host: str | None
    ) -> None:
        site = self.site(site_key, origin_host)
        if event_type not in EVENT_TYPES:
            raise Invalid(f"unknown event type {event_type!r}", code="invalid_field")
        if not VISIT_ID_RE.match(visit_id):
            raise UnknownVisit("unknown visit")
        async with self._sessionmaker.begin() as session:
            visit = await session.get(Visit, visit_id)
            if visit is None or visit.site_id != site.id:
                raise UnknownVisit("unknown visit")
            session.add(
                VisitEvent(
                    visit_id=visit_id,
                    type=event_type,
                    number=visit.number,
                    at=datetime.fromtimestamp(self._clock(), UTC),
                )
            )

    async def _visit(self, visit_id: str, site_id: int) -> Visit:
        async with self._sessionmaker() as session:
            visit = await session.get(Visit, visit_id)
        if visit is None or visit.site_id != site_id:
            raise UnknownVisit("unknown visit")
        return visit
