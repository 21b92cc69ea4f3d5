"""Last non-direct and first-touch attribution of a visitor's visits."""

from __future__ import annotations

from calltracker.tracking.classify import Source


def attribute(current: Source, last_non_direct: Source | None) -> Source:
    """The source a visit is credited to: its own, unless it is direct and an earlier one isn't."""
    # Typing the address or reopening a bookmark doesn't create demand; the ad or search that
    # first brought the visitor did, so a direct return keeps that credit.
    if current.is_direct and last_non_direct is not None:
        return last_non_direct
    return current


def next_last_non_direct(current: Source, last_non_direct: Source | None) -> Source | None:
    """What to store as the visitor's last non-direct source after this visit."""
    return last_non_direct if current.is_direct else current


def first_touch(current: Source, first: Source | None) -> Source:
    """The visitor's first-touch source: the first ever visit's, whatever came later."""
    return current if first is None else first
