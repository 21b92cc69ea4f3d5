"""One middleware that turns domain errors and bad requests into JSON {error, message}."""

from __future__ import annotations

import logging

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

from calltracker import errors

log = logging.getLogger(__name__)

STATUS = {
    errors.Invalid: 400,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
}


class TooManyRequests(errors.CalltrackerError):
    code = "rate_limited"


class Unauthorized(errors.CalltrackerError):
    code = "unauthorized"


class TooLarge(errors.CalltrackerError):
    code = "too_large"


STATUS[TooManyRequests] = 429
STATUS[Unauthorized] = 401
STATUS[TooLarge] = 413


class ErrorBody(msgspec.Struct, frozen=True):
    """Every error the API answers: a stable code for programs, a message for people."""

    error: str
    message: str


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(ErrorBody(code, message)),
        status=status,
        content_type="application/json",
        charset="utf-8",
    )


def status_for(err: errors.CalltrackerError) -> int:
    for kind in type(err).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return 500


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except errors.CalltrackerError as err:
        response = error_response(status_for(err), err.code, err.message)
        if isinstance(err, Unauthorized):
            response.headers["WWW-Authenticate"] = 'Bearer realm="calltracker"'
        return response
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, "too_large", "request body is too large")
    except web.HTTPException as exc:
        if exc.status >= 400 and request.path.startswith("/api/"):
            return error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
        raise
    except Exception:
        log.exception("event=unhandled_error path=%s", request.path)
        return error_response(500, "internal", "internal error; see the server log")
