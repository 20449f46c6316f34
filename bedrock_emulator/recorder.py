"""What arrived on Bedrock's paths, for tests to inspect (``/_emulator/requests``).

A gateway test asks the emulator what the gateway really sent upstream:
which path and model ID, which headers (was a client's API key forwarded? was
the body signed?), whether the signature verified. Records are kept in memory,
the newest 1000. Credentials never enter a record: the signature and any
session token or API key are replaced by ``<redacted>``; only the access key
ID, which is an identifier, is kept.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

MAX_RECORDS = 1000
BODY_TEXT_LIMIT = 64 * 1024
REDACTED = "<redacted>"
_SECRET_HEADERS = frozenset({"x-amz-security-token", "x-api-key", "cookie", "proxy-authorization"})
_SIGNATURE = re.compile(r"(Signature=)[^,\s]*")


def redact_header(name: str, value: str) -> str:
    lower = name.lower()
    if lower in _SECRET_HEADERS:
        return REDACTED
    if lower == "authorization":
        # Keep an AWS Authorization's credential scope and signed header list, which tests check.
        return _SIGNATURE.sub(rf"\g<1>{REDACTED}", value) if value.startswith("AWS4-") else REDACTED
    return value


class Recorder:
    def __init__(self, limit: int = MAX_RECORDS):
        self._records: deque[dict[str, Any]] = deque(maxlen=limit)

    def start(self, request_id: str, method: str, raw_path: str, headers: Sequence[tuple[str, str]]) -> dict[str, Any]:
        """A new record, visible at once; the caller fills it in as the request goes on."""
        merged: dict[str, str] = {}
        for name, value in headers:
            lower = name.lower()
            safe = redact_header(lower, value)
            merged[lower] = f"{merged[lower]},{safe}" if lower in merged else safe
        record: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "request_id": request_id,
            "method": method,
            "path": raw_path,
            "headers": merged,
            "operation": None,
            "model_id": None,
            "body_size": None,
            "body_sha256": None,
            "body": None,
            "signature_valid": False,
            "access_key_id": None,
            "status": None,
            "error_type": None,
            "usage": None,
        }
        self._records.append(record)
        return record

    def note_body(self, record: dict[str, Any], body: bytes, sha256_hex: str) -> None:
        record["body_size"] = len(body)
        record["body_sha256"] = sha256_hex
        if len(body) <= BODY_TEXT_LIMIT:
            record["body"] = body.decode("utf-8", "replace")

    def snapshot(self) -> list[dict[str, Any]]:
        return [dict(record) for record in self._records]

    def clear(self) -> None:
        self._records.clear()
