"""AMI wire helpers: raw blocks and panoramisk messages to plain header dicts, and back."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeAlias

EOL = b"\r\n"
END = b"\r\n\r\n"

AmiEvent: TypeAlias = Mapping[str, str]  # one AMI event: header -> value


def parse_block(block: bytes | str) -> dict[str, str]:
    """One AMI block ("Key: Value" lines) as a dict; the first of repeated headers wins."""
    text = block.decode("utf-8", "replace") if isinstance(block, bytes) else block
    headers: dict[str, str] = {}
    for line in text.split("\r\n"):
        key, sep, value = line.partition(": ")
        if not sep:
            # Asterisk writes "Key: " for empty values, but a bare "Key:" is seen from
            # other AMI servers and proxies, so accept it rather than lose the header.
            if line.endswith(":") and " " not in line:
                headers.setdefault(line[:-1], "")
            continue
        headers.setdefault(key, value)
    return headers


def from_message(message: Mapping[str, object]) -> dict[str, str]:
    """A panoramisk Message (case-insensitive, values may be lists) as a plain dict.

    Header names keep the case Asterisk sent; for repeated headers (ChanVariable...)
    the first value wins, matching parse_block.
    """
    # panoramisk's CaseInsensitiveDict lower()s the key on every access through the
    # Mapping API; its backing dict of (key, value) pairs is 3x cheaper to walk, and this
    # runs for every event.
    store = getattr(message, "_store", None)
    pairs = store.values() if isinstance(store, dict) else message.items()
    event: dict[str, str] = {}
    for key, value in pairs:
        if key == "content":
            continue  # panoramisk's slot for a response body, not an AMI header
        if isinstance(value, str):
            event[key] = value
        elif isinstance(value, list) and value:
            event[key] = str(value[0])
        else:
            event[key] = "" if value is None else str(value)
    return event


def format_action(fields: Mapping[str, str] | Iterable[tuple[str, str]]) -> bytes:
    """An action (or any block) in wire format, ending with the blank line."""
    items = fields.items() if isinstance(fields, Mapping) else fields
    return b"".join(f"{key}: {value}".encode() + EOL for key, value in items) + EOL
