"""Batches read line by line from CSV or JSON, and the error that lists every bad line."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from calltracker.errors import Invalid

T = TypeVar("T")

# (line, record) for a readable line, or (line, reason) for a broken one.
Records = Iterator[tuple[int, Mapping[str, Any] | str]]


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str


class BadRows(Invalid):
    """Rows that cannot be used; nothing from their batch was stored."""

    code = "invalid_rows"

    def __init__(self, errors: Sequence[RowError]) -> None:
        shown = "; ".join(f"line {e.line}: {e.reason}" for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(
            f"{len(errors)} bad row(s), nothing was stored: {shown}{more}",
            details=[{"line": e.line, "reason": e.reason} for e in errors[:1000]],
        )
        self.errors = list(errors)


@dataclass
class Batch(Generic[T]):
    """What parsing read: good items, and the bad lines found so far."""

    items: list[T] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    def check(self, more: Sequence[RowError] = ()) -> None:
        """Raise BadRows naming every bad line, from parsing and later checks, in line order."""
        errors = sorted([*self.errors, *more], key=lambda e: e.line)
        if errors:
            raise BadRows(errors)
        if not self.items:
            raise BadRows([RowError(1, "nothing to import")])


def _delimiter(header_line: str) -> str:
    # Spreadsheets set to Russian (and other decimal-comma) locales save CSV with ';'.
    return max((",", ";", "\t"), key=header_line.count)


def csv_records(text: str, required: Sequence[str], known: Sequence[str]) -> Records:
    """Records keyed by lowercased header; line numbers count the header as line 1."""
    text = text.removeprefix("\ufeff")
    first_line = text.split("\n", 1)[0]
    reader = csv.reader(io.StringIO(text), delimiter=_delimiter(first_line), strict=True)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        yield 1, "the file is empty"
        return
    except csv.Error as err:
        yield 1, f"unreadable header: {err}"
        return
    missing = [name for name in required if name not in header]
    if missing:
        yield 1, f"missing column(s) {', '.join(missing)}; the columns are {', '.join(known)}"
        return
    last_line = reader.line_num
    while True:
        start = last_line + 1  # a quoted field may span lines: report where the record began
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            yield start, f"unreadable line: {err}"
            return
        last_line = reader.line_num
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            yield start, f"expected {len(header)} fields, got {len(values)}"
            continue
        yield start, dict(zip(header, values, strict=True))


def json_records(items: object, what: str) -> Records:
    """Records from a JSON list; a row's line is its 1-based position."""
    if not isinstance(items, list):
        yield 1, f"expected a list of {what} objects"
        return
    for n, item in enumerate(items, start=1):
        yield n, item if isinstance(item, dict) else f"a {what} must be an object"
