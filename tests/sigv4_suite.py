"""The AWS SigV4 test suite in ../shared/testdata, read in place (never copied).

Both our signer (tests/unit) and the emulator's verifier (tests/emulator) are
checked against it, so the reading lives here once. Missing data is a
failure, not a skip: CI lays shared/ beside the checkout.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from tests.paths import SIGV4_SUITE


def normalizing_cases(exclude: frozenset[str] = frozenset()) -> list[Path]:
    """The cases for a normalizing (non-S3) signer, which Bedrock's is."""
    if not SIGV4_SUITE.is_dir():
        pytest.fail(f"SigV4 test suite not found at {SIGV4_SUITE} (shared/ must sit beside the checkout)")
    return sorted(
        case
        for case in SIGV4_SUITE.iterdir()
        if (case / "context.json").exists()
        and json.loads((case / "context.json").read_text()).get("normalize", True)
        and case.name not in exclude
    )


def parse_request(text: str) -> tuple[str, str, list[tuple[str, str]], bytes]:
    """Method, raw target, header pairs (folded lines joined) and body of a request.txt."""
    head, _, body = text.partition("\n\n")
    request_line, *header_lines = head.split("\n")
    method, rest = request_line.split(" ", 1)
    target = rest.rsplit(" ", 1)[0]
    headers: list[tuple[str, str]] = []
    for line in filter(None, header_lines):
        if line[:1] in (" ", "\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
        else:
            name, _, value = line.partition(":")
            headers.append((name, value))
    return method, target, headers, body.encode()


class Expected(NamedTuple):
    """What a case says a signer must produce for its request (header-signing variant)."""

    canonical_request: str
    string_to_sign: str
    signature: str
    authorization: str


def context(case: Path) -> dict[str, Any]:
    """The case's context.json: credentials, region, service, timestamp and signing options."""
    loaded: dict[str, Any] = json.loads((case / "context.json").read_text())
    return loaded


def signing_time(case: Path) -> datetime:
    """The case's timestamp, in UTC."""
    return datetime.strptime(context(case)["timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def expected(case: Path) -> Expected:
    """The canonical request, string to sign, signature and Authorization header the case expects."""
    _, _, signed_headers, _ = parse_request((case / "header-signed-request.txt").read_text())
    return Expected(
        canonical_request=(case / "header-canonical-request.txt").read_text(),
        string_to_sign=(case / "header-string-to-sign.txt").read_text(),
        signature=(case / "header-signature.txt").read_text().strip(),
        authorization=next(value for name, value in signed_headers if name.lower() == "authorization"),
    )
