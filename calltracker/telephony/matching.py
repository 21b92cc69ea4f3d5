"""Who made the phone ring: a call to number N at time T turned into an attribution.

The decision (`decide`) is pure; `Matcher` gathers its inputs (lease history, phone clicks,
the visit's labels) from the pool backend and the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, select

from calltracker.catalog.cache import Catalog, NumberInfo
from calltracker.db.engine import SessionMaker
from calltracker.db.models import Call, Visit, VisitEvent
from number_pool import LeaseRecord

# A tel: click this long before the call still confirms that visit.
CLICK_WINDOW_SECONDS = 10 * 60

EXACT = "exact"
PROBABLE = "probable"
AMBIGUOUS = "ambiguous"
STATIC = "static"
DEFAULT = "default"
NONE = "none"


class CatalogSource(Protocol):
    """What matching reads of the catalog: CatalogCache in the server, a loaded snapshot in
    the CLI."""

    @property
    def current(self) -> Catalog: ...


class LeaseHistory(Protocol):
    """Who held a number when: a pool backend, or the lease table read by itself (CLI)."""

    async def history(self, number: str, since: float, until: float) -> Sequence[LeaseRecord]: ...


@dataclass(frozen=True)
class PhoneClick:
    visit_id: str
    at: float


@dataclass(frozen=True)
class Candidate:
    visit_id: str
    visitor_id: str
    started_at: float
    ended_at: float
    shared: bool
    why: str  # "held at call start", "lease ended 42 s before", "clicked tel: 30 s before"


@dataclass(frozen=True)
class Decision:
    attribution: str  # exact | probable | ambiguous | static | default | none
    rule: str  # the row of the table that decided
    visit_id: str | None = None
    source: str = ""
    medium: str = ""
    campaign: str = ""
    candidates: tuple[Candidate, ...] = field(default_factory=tuple)

    def explanation(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "attribution": self.attribution,
            "visit_id": self.visit_id,
            "candidates": [asdict(c) for c in self.candidates],
        }


def decide(
    number: NumberInfo | None,
    at: float,
    history: Sequence[LeaseRecord],
    clicks: Sequence[PhoneClick],
    grace_seconds: float,
) -> Decision:
    """Apply design section 5's table to one call."""
    if number is None:
        return Decision(NONE, "the dialled number is not tracked")
    if number.kind == "static":
        return Decision(
            STATIC,
            "static number: its label",
            source=number.source,
            medium=number.medium,
            campaign=number.campaign,
        )
    if number.kind == "default":
        return Decision(DEFAULT, "the site's default number: unattributed")

    holding = [r for r in history if r.started_at <= at < r.ended_at]
    recent = [r for r in history if at - grace_seconds <= r.ended_at <= at and r not in holding]
    candidates = [_candidate(r, "held the number at call start") for r in holding] + [
        _candidate(r, f"lease ended {at - r.ended_at:.0f} s before the call") for r in recent
    ]
    clicked = {c.visit_id: c for c in clicks if at - CLICK_WINDOW_SECONDS <= c.at <= at}
    confirmed = [r for r in holding + recent if r.visit_id in clicked]
    if confirmed:
        best = max(confirmed, key=lambda r: clicked[r.visit_id].at)
        seconds = at - clicked[best.visit_id].at
        why = f"clicked the tel: link {seconds:.0f} s before the call"
        return Decision(
            EXACT,
            "a phone click from a visit showing the number confirms it",
            visit_id=best.visit_id,
            candidates=(*candidates, _candidate(best, why)),
        )
    if len(holding) == 1 and not holding[0].shared:
        return Decision(
            EXACT,
            "pooled number leased at call start",
            holding[0].visit_id,
            candidates=tuple(candidates),
        )
    if holding:
        # Shared under exhaustion: the newest holder is likeliest, the older one was idle longest.
        newest = max(holding, key=lambda r: r.started_at)
        return Decision(
            AMBIGUOUS,
            "pooled number shared by several visitors at call start",
            newest.visit_id,
            candidates=tuple(candidates),
        )
    if recent:
        last = max(recent, key=lambda r: r.ended_at)
        return Decision(
            PROBABLE,
            f"lease ended within the {grace_seconds:.0f} s grace window",
            last.visit_id,
            candidates=tuple(candidates),
        )
    return Decision(NONE, "pooled number held by nobody at call start or in the grace window")


def _candidate(r: LeaseRecord, why: str) -> Candidate:
    return Candidate(r.visit_id, r.visitor_id, r.started_at, r.ended_at, r.shared, why)


def is_target(status: str, talk_seconds: int, min_talk_seconds: int) -> bool:
    """The site's target-call rule: answered and talked at least N seconds."""
    return status == "answered" and talk_seconds >= min_talk_seconds


@dataclass(frozen=True)
class Attribution:
    decision: Decision
    site_id: int | None
    source: str
    medium: str
    campaign: str
    keyword: str


class Matcher:
    """Gathers lease history, clicks and visit labels, then applies `decide`."""

    def __init__(
        self,
        catalog: CatalogSource,
        pools: LeaseHistory,
        sessionmaker: SessionMaker,
        grace_seconds: float,
    ) -> None:
        self._catalog = catalog
        self._pools = pools
        self._sessionmaker = sessionmaker
        self._grace = grace_seconds

    def lookup(self, dialled: str) -> NumberInfo | None:
        return self._catalog.current.lookup_number(dialled)

    def is_tracked(self, dialled: str) -> bool:
        return self.lookup(dialled) is not None

    async def attribute(self, dialled: str, at: float) -> Attribution:
        number = self.lookup(dialled)
        history: Sequence[LeaseRecord] = ()
        clicks: list[PhoneClick] = []
        if number is not None and number.kind == "pool":
            history = await self._pools.history(number.number, at - self._grace, at)
            clicks = await self._clicks(number.number, at)
        decision = decide(number, at, history, clicks, self._grace)
        site_id = number.site_id if number is not None else None
        if decision.visit_id is None:
            return Attribution(
                decision, site_id, decision.source, decision.medium, decision.campaign, ""
            )
        async with self._sessionmaker() as session:
            visit = await session.get(Visit, decision.visit_id)
        if visit is None:  # history outlived the visit row (deleted); keep the decision
            return Attribution(decision, site_id, "", "", "", "")
        return Attribution(
            decision, site_id, visit.source, visit.medium, visit.campaign, visit.keyword
        )

    async def _clicks(self, number: str, at: float) -> list[PhoneClick]:
        since = datetime.fromtimestamp(at - CLICK_WINDOW_SECONDS, UTC)
        until = datetime.fromtimestamp(at, UTC)
        async with self._sessionmaker() as session:
            rows = (
                await session.execute(
                    select(VisitEvent.visit_id, VisitEvent.at).where(
                        VisitEvent.number == number,
                        VisitEvent.type == "phone_click",
                        VisitEvent.at >= since,
                        VisitEvent.at <= until,
                    )
                )
            ).all()
        return [PhoneClick(r.visit_id, r.at.timestamp()) for r in rows]


async def is_unique_caller(
    sessionmaker: SessionMaker,
    *,
    site_id: int | None,
    caller: str,
    started_at: datetime,
    window_days: int,
    exclude_linkedid: str,
) -> bool:
    """A first call from this number within the site's window is unique; later ones repeat."""
    if not caller:
        return True
    async with sessionmaker() as session:
        earlier = await session.scalar(
            select(func.count())
            .select_from(Call)
            .where(
                Call.caller == caller,
                Call.site_id == site_id,
                Call.started_at < started_at,
                Call.started_at >= started_at - timedelta(days=window_days),
                Call.linkedid != exclude_linkedid,
            )
        )
    return not earlier
