"""Yandex Metrica's offline call upload, per integrations.md section 4."""

from __future__ import annotations

import asyncio
import csv
import email.parser
import email.policy
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from .server import FakeServer

ID_COLUMNS = {"ClientId", "UserId", "Yclid"}
KNOWN_COLUMNS = ID_COLUMNS | {
    "DateTime", "StaticCall", "Price", "Currency", "PhoneNumber", "TalkDuration", "HoldDuration",
    "CallMissed", "Tag", "FirstTimeCaller", "URL", "CallTrackerURL",
}  # fmt: skip
FLAGS = {"StaticCall", "CallMissed", "FirstTimeCaller"}
INTEGERS = {"DateTime", "TalkDuration", "HoldDuration"}


@dataclass(frozen=True)
class Upload:
    id: int
    columns: list[str]
    rows: list[dict[str, str]]
    query: dict[str, str]


class InvalidRequest(Exception):
    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


class FakeMetrica(FakeServer):
    """State: ``uploads``; more than 3 uploads at once get a 429 (per-user parallel quota)."""

    def __init__(
        self,
        *,
        counter_id: int = 44147844,
        token: str = "y0-metrica-oauth-t0ken",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        processing_delay: float = 0.0,
    ) -> None:
        super().__init__()
        self.counter_id = counter_id
        self.token = token
        self.clock = clock
        self.processing_delay = processing_delay
        self.uploads: list[Upload] = []
        self.conversion_uploads: list[Upload] = []
        self._in_flight = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post(
            "/management/v1/counter/{counter}/offline_conversions/upload_calls", self._upload
        )
        app.router.add_post(
            "/management/v1/counter/{counter}/offline_conversions/upload", self._upload_conversions
        )

    async def _upload_conversions(self, request: web.Request) -> web.StreamResponse:
        """Offline conversions (management/offline-conv): one id column of ClientId, UserId,
        Yclid or PurchaseId; Target; DateTime in the past; Price with "."; Currency."""
        try:
            raw = await request.read()
            if request.headers.get("Authorization") != f"OAuth {self.token}":
                raise InvalidRequest(403, "invalid_token", "Invalid oauth_token")
            if request.match_info["counter"] != str(self.counter_id):
                raise InvalidRequest(404, "not_found", "Counter not found")
            text = _file_part(request.content_type, request.headers.get("Content-Type", ""), raw)
            columns, rows = _parse_conversions(text, self.clock())
        except InvalidRequest as err:
            return web.json_response(
                {"errors": [{"error_type": err.error_type, "message": err.message}],
                 "code": err.status, "message": err.message},
                status=err.status,
            )  # fmt: skip
        upload = Upload(len(self.uploads) + len(self.conversion_uploads) + 1, columns, rows,
                        dict(request.query))  # fmt: skip
        self.conversion_uploads.append(upload)
        return web.json_response(
            {"uploading": {"id": upload.id, "source_quantity": len(rows),
                           "line_quantity": len(rows), "type": "BASIC", "status": "UPLOADED",
                           "comment": request.query.get("comment", "")}}
        )  # fmt: skip

    @property
    def conversions(self) -> list[dict[str, str]]:
        return [row for upload in self.conversion_uploads for row in upload.rows]

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        self._in_flight += 1
        try:
            if self._in_flight > 3:
                raise InvalidRequest(429, "quota_requests_by_uid", "Too many parallel requests")
            if self.processing_delay:
                await asyncio.sleep(self.processing_delay)
            return self._accept(request, await request.read())
        except InvalidRequest as err:
            return web.json_response(
                {
                    "errors": [{"error_type": err.error_type, "message": err.message}],
                    "code": err.status,
                    "message": err.message,
                },
                status=err.status,
            )
        finally:
            self._in_flight -= 1

    def _accept(self, request: web.Request, raw: bytes) -> web.Response:
        if "oauth_token" in request.query:
            raise InvalidRequest(
                400, "invalid_parameter", "OAuth token in URL parameters is not accepted"
            )
        if request.headers.get("Authorization") != f"OAuth {self.token}":
            raise InvalidRequest(403, "invalid_token", "Invalid oauth_token")
        if request.match_info["counter"] != str(self.counter_id):
            raise InvalidRequest(404, "not_found", "Counter not found")
        text = _file_part(request.content_type, request.headers.get("Content-Type", ""), raw)
        columns, rows = _parse_csv(text)
        upload = Upload(len(self.uploads) + 1, columns, rows, dict(request.query))
        self.uploads.append(upload)
        return web.json_response(
            {
                "uploading": {
                    "id": upload.id,
                    "create_time": self.clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "source_quantity": len(rows),
                    "line_quantity": len(rows),
                    "comment": request.query.get("comment", ""),
                    "type": "BASIC",
                    "client_id_type": "CLIENT_ID",
                    "status": "UPLOADED",
                    "static_calls_quantity": sum(r.get("StaticCall") == "1" for r in rows),
                    "dynamic_calls_quantity": sum(r.get("StaticCall") != "1" for r in rows),
                }
            }
        )

    @property
    def rows(self) -> list[dict[str, str]]:
        return [row for upload in self.uploads for row in upload.rows]


def _file_part(content_type: str, header: str, raw: bytes) -> str:
    if content_type != "multipart/form-data":
        raise InvalidRequest(400, "invalid_parameter", "multipart/form-data expected")
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(
        b"Content-Type: " + header.encode() + b"\r\n\r\n" + raw
    )
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode()
    raise InvalidRequest(400, "missing_parameter", "file")


def _parse_csv(text: str) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.reader(io.StringIO(text))
    try:
        columns = next(reader)
    except StopIteration:
        raise InvalidRequest(400, "invalid_parameter", "empty file") from None
    unknown = set(columns) - KNOWN_COLUMNS
    if unknown:
        raise InvalidRequest(400, "invalid_parameter", f"unknown columns {sorted(unknown)}")
    if len(ID_COLUMNS & set(columns)) != 1 or len(set(columns)) != len(columns):
        raise InvalidRequest(
            400, "invalid_parameter", "exactly one of ClientId, UserId, Yclid is required"
        )
    if "DateTime" not in columns:
        raise InvalidRequest(400, "missing_parameter", "DateTime")
    rows: list[dict[str, Any]] = []
    for line, values in enumerate(reader, start=2):
        if len(values) != len(columns):
            raise InvalidRequest(
                400,
                "invalid_parameter",
                f"line {line}: {len(values)} values for {len(columns)} columns",
            )
        row = dict(zip(columns, values, strict=True))
        for name, value in row.items():
            bad = (
                (name in INTEGERS and not value.isdigit())
                or (name in FLAGS and value not in ("0", "1"))
                or (name == "PhoneNumber" and not re.fullmatch(r"\+\d{7,15}", value))
                or (name == "Price" and not re.fullmatch(r"\d+(\.\d+)?", value))
                or (name in ID_COLUMNS and not value)
            )
            if bad:
                raise InvalidRequest(400, "invalid_parameter", f"line {line}: bad {name} {value!r}")
        rows.append(row)
    return columns, rows


CONVERSION_IDS = {"ClientId", "UserId", "Yclid", "PurchaseId"}
CONVERSION_COLUMNS = CONVERSION_IDS | {"Target", "DateTime", "Price", "Currency"}


def _parse_conversions(text: str, now: datetime) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.reader(io.StringIO(text))
    columns = next(reader, [])
    unknown = set(columns) - CONVERSION_COLUMNS
    if unknown:
        raise InvalidRequest(400, "invalid_parameter", f"unknown columns {sorted(unknown)}")
    if len(CONVERSION_IDS & set(columns)) != 1:
        raise InvalidRequest(400, "invalid_parameter", "exactly one identifier column is required")
    for required in ("Target", "DateTime"):
        if required not in columns:
            raise InvalidRequest(400, "missing_parameter", required)
    rows = []
    for line, values in enumerate(reader, start=2):
        row = dict(zip(columns, values, strict=True))
        if not row["DateTime"].isdigit():
            raise InvalidRequest(400, "invalid_parameter", f"line {line}: DateTime")
        if int(row["DateTime"]) > now.timestamp():
            # "The DateTime can only be in the past."
            raise InvalidRequest(400, "invalid_parameter", f"line {line}: DateTime in the future")
        if not row["Target"]:
            raise InvalidRequest(400, "invalid_parameter", f"line {line}: Target")
        if "Price" in row and not re.fullmatch(r"\d+(\.\d+)?", row["Price"]):
            raise InvalidRequest(400, "invalid_parameter", f"line {line}: Price")
        if "Currency" in row and not re.fullmatch(r"[A-Z]{3}", row["Currency"]):
            raise InvalidRequest(400, "invalid_parameter", f"line {line}: Currency")
        rows.append(row)
    return columns, rows
