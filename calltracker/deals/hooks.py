"""What the CRMs' outgoing webhooks say, read from their form fields: pure functions.

Both CRMs post PHP-style bracketed form fields (Bitrix24 ``data[FIELDS][ID]=759``, amoCRM
``leads[status][0][id]=25399013``); a JSON body is flattened to the same keys first.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from calltracker.errors import Forbidden, Invalid

MAX_RECORDS = 500  # one post; amoCRM batches a few dozen at most
# Bitrix24 events, and what each names: deals, or a lead (that may have become deals).
BITRIX_EVENTS = {
    "ONCRMDEALADD": "deal",
    "ONCRMDEALUPDATE": "deal",
    "ONCRMDEALDELETE": "deal",
    "ONCRMLEADUPDATE": "lead",
}
AMO_ACTIONS = ("add", "update", "status", "delete", "restore", "responsible")
_AMO_KEY = re.compile(r"^leads\[(?P<action>[a-z_]+)\]\[(?P<n>\d+)\]\[id\]$")


class BadToken(Forbidden):
    code = "bad_token"


@dataclass(frozen=True)
class Named:
    """What one webhook post names: (entity, remote id) pairs, and its event for the log."""

    records: tuple[tuple[str, str], ...]
    event: str


def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """A JSON body as the bracketed keys a form post of it would have."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from flatten(item, f"{prefix}[{key}]" if prefix else str(key))
    elif isinstance(value, list):
        for n, item in enumerate(value):
            yield from flatten(item, f"{prefix}[{n}]")
    elif value is not None:
        yield prefix, str(value)


def _same(given: str, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def _remote_id(raw: str, where: str) -> str:
    value = raw.strip()
    if not value.isdigit() or len(value) > 20:
        raise Invalid(f"{where}: a record id is a number, got {raw[:40]!r}", code="invalid_field")
    return value


def bitrix24(fields: Mapping[str, str], application_token: str) -> Named:
    """An event of the portal's outgoing webhook, checked by its application_token."""
    if not _same(fields.get("auth[application_token]", ""), application_token):
        raise BadToken("auth[application_token] does not match this integration's")
    event = fields.get("event", "").strip().upper()
    if event not in BITRIX_EVENTS:
        # Other events of the same webhook are not ours to read: accepted, nothing named.
        return Named((), event or "(none)")
    raw = fields.get("data[FIELDS][ID]")
    if raw is None:
        raise Invalid("data[FIELDS][ID] is required", code="invalid_field")
    return Named(((BITRIX_EVENTS[event], _remote_id(raw, "data[FIELDS][ID]")),), event)


def amocrm(fields: Mapping[str, str], secret: str, expected: str) -> Named:
    """A webhook post of the account: leads[add|update|status|delete][n][id]=..., checked by
    the secret in its URL."""
    if not _same(secret, expected):
        raise BadToken("the webhook URL's secret does not match this integration's")
    records: list[tuple[str, str]] = []
    actions: set[str] = set()
    for key, value in fields.items():
        found = _AMO_KEY.match(key)
        if found is None or found["action"] not in AMO_ACTIONS:
            continue
        actions.add(found["action"])
        records.append(("deal", _remote_id(value, key)))
        if len(records) > MAX_RECORDS:
            raise Invalid(f"at most {MAX_RECORDS} leads in one post", code="invalid_field")
    return Named(tuple(dict.fromkeys(records)), ",".join(sorted(actions)) or "(none)")
