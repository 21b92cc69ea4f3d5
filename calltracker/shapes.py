"""What every msgspec shape shares: Secret fields, their schema, errors that name the field."""

# Request bodies (web/bodies.py) and integration configs (integrations/base.py) are msgspec
# Structs; this module turns msgspec's ValidationError into a field path and a reason a
# person can act on, and teaches msgspec the one custom type the shapes use, Secret.

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from msgspec import inspect

from calltracker.settings import Secret

# msgspec appends where the error is: "Expected `str`, got `int` - at `$.app.client_id`".
_WHERE = re.compile(r"^(?P<reason>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]+)`$")
_ENUM = re.compile(r"^Invalid enum value (?P<value>.+)$")
# A shape's own check (__post_init__) names its field first: "webhook_url: must look like ...".
_OWN = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*): (?P<reason>.+)$", re.DOTALL)
# Meta(extra={"invalid": ...}) on a field: what to say instead of msgspec's "Expected ...".
INVALID = "invalid"
REQUIRED = "is required"


def dec_hook(kind: type, value: Any) -> Any:
    """Decode the custom types shapes use: a Secret from a string."""
    if kind is Secret:
        if isinstance(value, Secret):
            return value
        if isinstance(value, str):
            return Secret(value)
        raise TypeError("must be a string")  # never echo a secret's value
    raise NotImplementedError(f"no decoder for {kind!r}")


def schema_hook(kind: type) -> dict[str, Any]:
    """JSON Schema of the custom types: a Secret is a string the API never shows back."""
    if kind is Secret:
        return {"type": "string", "writeOnly": True}
    raise NotImplementedError(f"no JSON Schema for {kind!r}")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a document: where ("app.client_id", "numbers[1]", "") and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        if not self.path:
            return self.reason
        if self.reason == REQUIRED:
            return f"{self.path} {REQUIRED}"  # "site_key is required", as people write it
        return f"{self.path}: {self.reason}"


def explain(err: msgspec.ValidationError, shape: Any, data: Any = None) -> Problem:
    """What msgspec refused in ``data`` decoded as ``shape``, as a path and a reason."""
    found = _WHERE.match(str(err))
    reason, where = (found.group("reason"), found.group("path") or "") if found else (str(err), "")
    steps: list[str | int] = [
        name or int(index)
        for name, index in _STEP.findall(where)
        if index != "..."  # a mapping's value: msgspec does not say which key
    ]
    leaf = _type_at(inspect.type_info(shape), steps)
    if missing := _MISSING.match(reason):
        return Problem(_render([*steps, missing.group("name")]), REQUIRED)
    if unknown := _UNKNOWN.match(reason):
        names = _unknown_fields(leaf, _value_at(data, steps)) or [unknown.group("name")]
        return Problem(_render(steps), f"unknown field(s) {', '.join(names)}")
    if own := _OWN.match(reason):
        return Problem(_render([*steps, own.group("name")]), own.group("reason"))
    hint = _hint(leaf)
    if hint:
        return Problem(_render(steps), hint)
    if (enum := _ENUM.match(reason)) and (allowed := _choices(leaf)):
        return Problem(_render(steps), f"must be one of {allowed}, not {enum.group('value')}")
    return Problem(_render(steps), reason)


def _render(steps: list[str | int]) -> str:
    text = ""
    for step in steps:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text


def _unwrap(kind: inspect.Type | None) -> inspect.Type | None:
    while isinstance(kind, inspect.Metadata):
        kind = kind.type
    return kind


def _choices(kind: inspect.Type | None) -> str:
    """The values a Literal or an Enum (or an optional one) allows, as text."""
    kind = _unwrap(kind)
    members = kind.types if isinstance(kind, inspect.UnionType) else (kind,)
    for member in map(_unwrap, members):
        if isinstance(member, inspect.LiteralType):
            return ", ".join(str(v) for v in member.values)
        if isinstance(member, inspect.EnumType):
            return ", ".join(str(m.value) for m in member.cls)
    return ""


def _hint(kind: inspect.Type | None) -> str:
    while isinstance(kind, inspect.Metadata):
        if kind.extra and INVALID in kind.extra:
            return str(kind.extra[INVALID])
        kind = kind.type
    return ""


def _struct_in(kind: inspect.Type | None) -> inspect.StructType | None:
    kind = _unwrap(kind)
    if isinstance(kind, inspect.StructType):
        return kind
    if isinstance(kind, inspect.UnionType):
        for member in kind.types:
            if isinstance(found := _struct_in(member), inspect.StructType):
                return found
    return None


def _type_at(kind: inspect.Type | None, steps: list[str | int]) -> inspect.Type | None:
    """The declared type at a path: a struct's field, or a collection's item."""
    for step in steps:
        if isinstance(step, str):
            struct = _struct_in(kind)
            field = (
                next((f for f in struct.fields if f.encode_name == step), None) if struct else None
            )
            kind = field.type if field is not None else None
        else:
            inner = _unwrap(kind)
            if isinstance(inner, inspect.UnionType):
                inner = next(
                    (m for m in map(_unwrap, inner.types) if hasattr(m, "item_type")), None
                )
            kind = getattr(inner, "item_type", None)
    return kind


def _value_at(data: Any, steps: list[str | int]) -> Any:
    for step in steps:
        if isinstance(step, str):
            data = data.get(step) if isinstance(data, Mapping) else None
        else:
            data = data[step] if isinstance(data, list) and step < len(data) else None
    return data


def _unknown_fields(kind: inspect.Type | None, value: Any) -> list[str]:
    """Every key of ``value`` the struct does not declare (msgspec reports the first only)."""
    struct = _struct_in(kind)
    if struct is None or not isinstance(value, Mapping):
        return []
    known = {f.encode_name for f in struct.fields}
    return sorted(str(key) for key in value if key not in known)
