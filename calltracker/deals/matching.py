"""Which call (or visit) brought a deal, and how sure that is: a pure decision over candidates.

The order is the order of certainty:

- ``call``: the deal was posted naming its call.
- ``own``: the deal, or the lead it was converted from, is one calltracker created for a call
  (the outbox's remote ids). The earliest such call brought it.
- ``phone``: the deal's contact is one we sent for a call, or its phone is a caller we sent
  to this CRM: that caller's latest call at or before the deal opened.
- ``tracking``: a click id or client id on the deal is a visit's: that visit's latest call
  before the deal, or the visit itself.
- ``window``: the contact's phone called the site within the window before the deal opened,
  although we never sent that call to this CRM (the CRM made the deal on its own).
- ``utm``: only the deal's own UTM tags: labels, no call.
- ``none``: nothing to go by; the deal is kept but counts under no label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, get_args

Basis = Literal["call", "own", "phone", "tracking", "window", "utm", "none"]
BASES: tuple[str, ...] = get_args(Basis)  # strongest first
Confidence = Literal["exact", "probable", "none"]
CONFIDENCE: dict[str, Confidence] = {
    "call": "exact",
    "own": "exact",
    "phone": "exact",
    "tracking": "exact",
    "window": "probable",
    "utm": "probable",
    "none": "none",
}
BASIS_TITLES = {
    "call": "named its call",
    "own": "our own lead or deal id",
    "phone": "a caller we sent to the CRM",
    "tracking": "click or client id on the deal",
    "window": "caller's phone within the window",
    "utm": "the deal's UTM tags only",
    "none": "unmatched",
}

Labels = tuple[str, str, str, str]  # source, medium, campaign, keyword
NO_LABELS: Labels = ("", "", "", "")


@dataclass(frozen=True)
class CallRef:
    """A call that may have brought the deal."""

    call_id: int
    started_at: datetime
    labels: Labels
    visit_id: str | None = None


@dataclass(frozen=True)
class VisitRef:
    """A visit named by a click or client id on the deal, with its calls."""

    visit_id: str
    started_at: datetime
    labels: Labels
    calls: Sequence[CallRef] = ()


@dataclass(frozen=True)
class Candidates:
    """What the database holds that could tie the deal to a call."""

    named: CallRef | None = None  # the call a posted deal names
    own: Sequence[CallRef] = ()  # calls whose CRM lead/deal is this deal or its lead
    pushed: Sequence[CallRef] = ()  # calls of the deal's contact, or its phone, sent to the CRM
    visits: Sequence[VisitRef] = ()  # visits named by the deal's click or client ids
    by_phone: Sequence[CallRef] = ()  # the site's calls from the contact's phone
    utm: Labels = NO_LABELS  # the deal's own tags (utm_source .. utm_term)


@dataclass(frozen=True)
class Match:
    basis: Basis
    call_id: int | None = None
    visit_id: str | None = None
    attributed_at: datetime | None = None  # revenue counts on this moment's local day
    labels: Labels = NO_LABELS

    @property
    def confidence(self) -> Confidence:
        return CONFIDENCE[self.basis]

    @property
    def counts(self) -> bool:
        """Does it put the deal under a label of the report?"""
        return self.basis != "none"


UNMATCHED = Match("none")


def _latest_before(calls: Sequence[CallRef], moment: datetime) -> CallRef | None:
    before = [c for c in calls if c.started_at <= moment]
    return max(before, key=lambda c: (c.started_at, c.call_id), default=None)


def _of_call(basis: Basis, call: CallRef) -> Match:
    return Match(basis, call.call_id, call.visit_id, call.started_at, call.labels)


def decide(opened_at: datetime, found: Candidates, window: timedelta | None) -> Match:
    """The strongest match the candidates allow; ``window`` bounds the ``window`` basis."""
    if found.named is not None:
        return _of_call("call", found.named)
    if found.own:
        return _of_call("own", min(found.own, key=lambda c: (c.started_at, c.call_id)))
    pushed = _latest_before(found.pushed, opened_at)
    if pushed is not None:
        return _of_call("phone", pushed)
    visits = [v for v in found.visits if v.started_at <= opened_at]
    if visits:
        visit = max(visits, key=lambda v: (v.started_at, v.visit_id))
        call = _latest_before(visit.calls, opened_at)
        if call is not None:
            return _of_call("tracking", call)
        return Match("tracking", None, visit.visit_id, visit.started_at, visit.labels)
    earliest = None if window is None else opened_at - window
    in_window = [c for c in found.by_phone if earliest is None or c.started_at >= earliest]
    call = _latest_before(in_window, opened_at)
    if call is not None:
        return _of_call("window", call)
    if any(found.utm):
        return Match("utm", None, None, opened_at, found.utm)
    return UNMATCHED


def prefer(old: Match | None, new: Match) -> Match:
    """Keep an earlier, stronger match: a contact edited later must not move the revenue."""
    if old is None or old.basis == "none":
        return new
    if BASES.index(old.basis) < BASES.index(new.basis):
        return old
    return new
