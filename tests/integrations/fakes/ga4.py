"""GA4 Measurement Protocol: /mp/collect and /debug/mp/collect, per integrations.md section 3."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from .server import FakeServer

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
RESERVED_PREFIXES = ("_", "firebase_", "ga_", "google_", "gtag.")
RESERVED_EVENTS = {
    "ad_activeview", "ad_click", "ad_exposure", "ad_query", "ad_reward", "adunit_exposure",
    "app_background", "app_clear_data", "app_exception", "app_remove", "app_store_refund",
    "app_store_subscription_cancel", "app_store_subscription_convert", "app_store_subscription_renew",
    "app_update", "app_upgrade", "dynamic_link_app_open", "dynamic_link_app_update",
    "dynamic_link_first_open", "error", "first_open", "first_visit", "in_app_purchase",
    "notification_dismiss", "notification_foreground", "notification_open", "notification_receive",
    "os_update", "session_start", "session_start_with_rollout", "user_engagement",
}  # fmt: skip


class FakeGa4(FakeServer):
    """``events`` holds what GA4 would record: valid hits with the right secret; ``dropped`` the rest."""

    def __init__(
        self,
        *,
        measurement_id: str = "G-TEST123",
        api_secret: str = "ga4-api-s3cret",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__()
        self.measurement_id = measurement_id
        self.api_secret = api_secret
        self.clock = clock
        self.hits: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.dropped: list[tuple[dict[str, Any] | None, list[dict[str, str]]]] = []
        self.debug_hits: list[dict[str, Any]] = []

    def sessions(self) -> list[tuple[str, str]]:
        """(client id, session id) of every recorded event; "(not set)" where none was sent:
        what GA4's session reports would show for it."""
        return [
            (e["client_id"], str(e.get("params", {}).get("session_id", "(not set)")))
            for e in self.events
        ]

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/mp/collect", self._collect)
        app.router.add_route("*", "/debug/mp/collect", self._debug)

    async def _collect(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return web.Response(status=405)
        body, problems = await self._parse(request)
        if body is not None:
            self.hits.append(body)
        if (
            request.query.get("measurement_id") != self.measurement_id
            or request.query.get("api_secret") != self.api_secret
        ):
            problems.append(
                {
                    "fieldPath": "api_secret",
                    "description": "wrong stream or secret",
                    "validationCode": "VALUE_INVALID",
                }
            )
        if problems or body is None:
            self.dropped.append((body, problems))
        else:
            self.events.extend({"client_id": body["client_id"], **e} for e in body["events"])
        # /mp/collect never reports errors, whatever it received.
        return web.Response(status=204)

    async def _debug(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return web.Response(status=405)
        body, problems = await self._parse(request)
        if body is not None:
            self.debug_hits.append(body)
        return web.json_response({"validationMessages": problems})

    async def _parse(
        self, request: web.Request
    ) -> tuple[dict[str, Any] | None, list[dict[str, str]]]:
        raw = await request.read()
        if len(raw) >= 130_000:
            return None, [_msg("", "body too large", "VALUE_OUT_OF_BOUNDS")]
        try:
            body = json.loads(raw)
        except ValueError:
            return None, [_msg("", "invalid JSON", "VALUE_INVALID")]
        if not isinstance(body, dict):
            return None, [_msg("", "object expected", "VALUE_INVALID")]
        return body, self._validate(body)

    def _validate(self, body: dict[str, Any]) -> list[dict[str, str]]:
        problems = []
        for key in ("api_secret", "measurement_id"):
            if key in body:
                problems.append(_msg(key, f"{key} belongs in the query string", "VALUE_INVALID"))
        if not isinstance(body.get("client_id"), str) or not body.get("client_id"):
            problems.append(_msg("client_id", "client_id is required", "VALUE_REQUIRED"))
        if "timestamp_micros" in body:
            micros = body["timestamp_micros"]
            if not isinstance(micros, int) or isinstance(micros, bool):
                problems.append(
                    _msg("timestamp_micros", "integer microseconds expected", "VALUE_INVALID")
                )
            else:
                when = datetime.fromtimestamp(micros / 1_000_000, UTC)
                now = self.clock()
                if when < now - timedelta(hours=72) or when > now + timedelta(minutes=15):
                    problems.append(
                        _msg(
                            "timestamp_micros",
                            "more than 72 hours old or in the future",
                            "VALUE_OUT_OF_BOUNDS",
                        )
                    )
        events = body.get("events")
        if not isinstance(events, list) or not events:
            problems.append(_msg("events", "events are required", "VALUE_REQUIRED"))
            return problems
        if len(events) > 25:
            problems.append(_msg("events", "at most 25 events", "EXCEEDED_MAX_ENTITIES"))
        for i, event in enumerate(events):
            name = event.get("name") if isinstance(event, dict) else None
            if not isinstance(name, str) or len(name) > 40 or not NAME.match(name):
                problems.append(_msg(f"events[{i}].name", f"invalid name [{name}]", "NAME_INVALID"))
            elif name in RESERVED_EVENTS or name.startswith(RESERVED_PREFIXES):
                problems.append(
                    _msg(f"events[{i}].name", f"reserved name [{name}]", "NAME_RESERVED")
                )
            params = event.get("params", {}) if isinstance(event, dict) else {}
            if name == "purchase":
                # The recommended purchase event: value needs its currency, and GA4 dedupes
                # purchases by transaction_id.
                if (
                    not isinstance(params.get("transaction_id"), str)
                    or not params["transaction_id"]
                ):
                    problems.append(_msg(f"events[{i}].params.transaction_id",
                                         "purchase needs transaction_id", "VALUE_REQUIRED"))  # fmt: skip
                if not isinstance(params.get("value"), int | float) or isinstance(
                    params.get("value"), bool
                ):
                    problems.append(_msg(f"events[{i}].params.value", "purchase needs a numeric value",
                                         "VALUE_REQUIRED"))  # fmt: skip
                if not re.fullmatch(r"[A-Z]{3}", str(params.get("currency", ""))):
                    problems.append(_msg(f"events[{i}].params.currency",
                                         "value needs an ISO 4217 currency", "VALUE_REQUIRED"))  # fmt: skip
            if "session_id" in params and not str(params["session_id"]).isdigit():
                problems.append(_msg(f"events[{i}].params.session_id",
                                     "session_id is the _ga_<stream> cookie's number", "VALUE_INVALID"))  # fmt: skip
            if len(params) > 25:
                problems.append(
                    _msg(f"events[{i}].params", "at most 25 params", "EXCEEDED_MAX_ENTITIES")
                )
            for key, value in params.items():
                if len(key) > 40 or not NAME.match(key) or key.startswith(RESERVED_PREFIXES):
                    problems.append(
                        _msg(f"events[{i}].params.{key}", "invalid param name", "NAME_INVALID")
                    )
                if isinstance(value, str) and len(value) > 100:
                    problems.append(
                        _msg(
                            f"events[{i}].params.{key}",
                            "value over 100 characters",
                            "VALUE_OUT_OF_BOUNDS",
                        )
                    )
                if not isinstance(value, str | int | float) or isinstance(value, bool):
                    problems.append(
                        _msg(f"events[{i}].params.{key}", "scalar expected", "VALUE_INVALID")
                    )
        return problems


def _msg(path: str, description: str, code: str) -> dict[str, str]:
    return {"fieldPath": path, "description": description, "validationCode": code}
