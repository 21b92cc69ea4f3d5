"""JSON in and out of the API: each handler declares its body, query and response types once.

@api reads them from the handler's signature, and web/openapi.py documents the route from it:

    @api(status=201)
    async def create_site(request: web.Request, body: SiteInput) -> SiteView: ...

``body`` is decoded from the request body, ``query`` from the query string, and what the
handler returns is encoded as the response: a msgspec Struct (or list, dict of them), None for
204 No Content, or a Reply when the handler picks the status. Bad input is a 400
{"error": "invalid_field" | "malformed_json", "message": "site_key: Expected `str`, got `int`"}.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import NoneType, UnionType
from typing import Any, Generic, TypeVar, Union, get_args, get_origin, get_type_hints

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

from calltracker.errors import Invalid
from calltracker.keys import settings_key
from calltracker.shapes import dec_hook, explain
from calltracker.web.errors import TooLarge

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"  # what the CRMs' outgoing webhooks post
MARK = "calltracker_api"
T = TypeVar("T")

_encoder = msgspec.json.Encoder()


@dataclass(frozen=True)
class Reply(Generic[T]):
    """A response whose status (one its route declares) or headers the handler picks."""

    body: T
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)


class Refusal(Exception):
    """An error answered with a body of a shape of its own, declared in @api(errors=...)."""

    def __init__(self, status: int, body: object, headers: Mapping[str, str] | None = None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class Route:
    """What a JSON route takes and answers, as its handler declares it."""

    body: Any  # the JSON body's type; None: the route reads no JSON body
    query: Any  # a Struct of the query parameters; None: none
    response: Any  # the success body's type; None: 204 No Content
    statuses: tuple[int, ...]  # success statuses, the default first
    errors: Mapping[int, Any]  # error statuses whose body is not the usual ErrorBody
    accepts: tuple[str, ...]  # media types of the body other than JSON, read by the handler
    media: tuple[str, ...] = (JSON,)  # the success body's media types


def api(
    *,
    status: int = 200,
    also: tuple[int, ...] = (),
    errors: Mapping[int, Any] | None = None,
    accepts: tuple[str, ...] = (),
    small: bool = False,
) -> Callable[[Callable[..., Awaitable[Any]]], Handler]:
    """Make a JSON route of ``handler(request, [body], [query]) -> response``.

    ``also``: further statuses a Reply may pick; ``accepts``: media types besides JSON that the
    handler reads itself (``body`` is then None unless the request is JSON); ``small``: the
    body is capped at settings.max_body_bytes (the public visit API), not the app's limit.
    """

    def wrap(handler: Callable[..., Awaitable[Any]]) -> Handler:
        hints = get_type_hints(handler)
        params = inspect.signature(handler).parameters
        body = _declared(hints, params, "body", accepts)
        query = _declared(hints, params, "query", ())
        response, statuses = _response(hints.get("return"), status, also)
        route = Route(body, query, response, statuses, dict(errors or {}), accepts)

        @functools.wraps(handler)
        async def run(request: web.Request) -> web.StreamResponse:
            args: dict[str, Any] = {}
            if body is not None:
                reads = not accepts or request.content_type == JSON
                args["body"] = await read_body(request, body, small=small) if reads else None
            if query is not None:
                args["query"] = read_query(request, query)
            try:
                result = await handler(request, **args)
            except Refusal as refusal:
                return encode(refusal.body, refusal.status, refusal.headers)
            if isinstance(result, Reply):
                return encode(result.body, result.status, result.headers)
            if response is None:
                return web.Response(status=204)
            return encode(result, statuses[0])

        run.__dict__[MARK] = route
        return run

    return wrap


F = TypeVar("F", bound=Callable[..., Any])


def described(*statuses: int, media: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Document a handler that writes its own response: audio, a CORS preflight (no body)."""

    def mark(handler: F) -> F:
        response = bytes if media else None
        handler.__dict__[MARK] = Route(None, None, response, statuses, {}, (), media)
        return handler

    return mark


def route_of(handler: Any) -> Route | None:
    """The route declaration of a handler, None for one that is not a JSON route."""
    target = getattr(handler, "__func__", handler)
    route = getattr(target, "__dict__", {}).get(MARK)
    return route if isinstance(route, Route) else None


def _declared(
    hints: Mapping[str, Any], params: Mapping[str, Any], name: str, accepts: tuple[str, ...]
) -> Any:
    if name not in params:
        return None
    kind = hints[name]
    if accepts:  # `body: X | None`: None when the request is CSV or a form
        members = [m for m in get_args(kind) if m is not NoneType]
        if get_origin(kind) in (Union, UnionType) and len(members) == 1:
            return members[0]
    return kind


def _response(returned: Any, status: int, also: tuple[int, ...]) -> tuple[Any, tuple[int, ...]]:
    if returned is None or returned is NoneType:
        return None, (204,)
    if get_origin(returned) is Reply:
        return get_args(returned)[0], (status, *also)
    return returned, (status, *also)


def encode(
    body: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=_encoder.encode(body),
        status=status,
        headers=headers,
        content_type=JSON,
        charset="utf-8",
    )


async def read_body(request: web.Request, shape: type[T], *, small: bool = False) -> T:
    """The request body as ``shape``, whatever its Content-Type (the widget sends text/plain)."""
    if small:
        limit = request.app[settings_key].max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise TooLarge("request body is too large")
        raw = b""
        while len(raw) <= limit:
            chunk = await request.content.read(limit + 1 - len(raw))
            if not chunk:
                break
            raw += chunk
        if len(raw) > limit:
            raise TooLarge("request body is too large")
    else:
        raw = await request.read()  # over the app's client_max_size: 413 too_large
    return decode(raw, shape)


def decode(raw: bytes | str, shape: type[T]) -> T:
    """JSON text as ``shape``; an empty body is an empty object, so defaults apply."""
    try:
        return _decoder(shape).decode(raw if raw.strip() else b"{}")
    except msgspec.ValidationError as err:
        problem = explain(err, shape)
        if not problem.path:
            raise Invalid(f"the body: {problem.reason}", code="malformed_json") from None
        raise Invalid(str(problem), code="invalid_field") from None
    except msgspec.DecodeError as err:
        reason = str(err).removeprefix("JSON is malformed: ")
        raise Invalid(f"malformed JSON: {reason}", code="malformed_json") from None


def read_query(request: web.Request, shape: type[T]) -> T:
    """The query string as ``shape``: text converted to the field types, blank means absent."""
    given: dict[str, str] = {}
    for name, value in request.query.items():
        if value.strip():
            given.setdefault(name, value.strip())
    return convert_query(given, shape)


def convert_query(given: Mapping[str, str], shape: type[T]) -> T:
    try:
        return msgspec.convert(given, shape, strict=False, dec_hook=dec_hook)
    except msgspec.ValidationError as err:
        raise Invalid(str(explain(err, shape)), code="invalid_field") from None


_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def _decoder(shape: type[T]) -> msgspec.json.Decoder[T]:
    decoder = _decoders.get(shape)
    if decoder is None:  # built once per shape: a Decoder is faster than msgspec.json.decode
        decoder = _decoders[shape] = msgspec.json.Decoder(shape, dec_hook=dec_hook)
    return decoder
