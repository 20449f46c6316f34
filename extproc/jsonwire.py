"""JSON as it crosses the wire: parsed strictly, written compactly, never a 500.

Every translator reads client JSON and writes JSON for Bedrock or the client.
Doing it in one place keeps the edge cases identical everywhere: NaN and
Infinity are refused (not JSON; Bedrock chokes on them), absurd nesting is a
400 rather than a ``RecursionError``, and an unpaired surrogate (valid in JSON
text, not encodable as UTF-8) stays escaped instead of crashing the encoder.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import invalid


def _refuse(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")


_STRICT = json.JSONDecoder(parse_constant=_refuse)
"""Built once: ``json.loads`` with any option builds a new decoder on every call."""


def load(raw: bytes | str, what: str = "request body", param: str | None = None) -> Any:
    """Parse JSON or raise a 400 saying which document was not valid."""
    try:
        text = raw.decode(json.detect_encoding(raw), "surrogatepass") if isinstance(raw, (bytes, bytearray)) else raw
        return _STRICT.decode(text)
    except RecursionError:
        raise invalid(f"{what} is nested too deeply", param=param) from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise invalid(f"{what} is not valid JSON: {exc}", param=param) from None


def load_object(raw: bytes | str, what: str = "request body") -> dict[str, Any]:
    value = load(raw, what)
    if not isinstance(value, dict):
        raise invalid(f"{what} must be a JSON object")
    return value


def load_answer(raw: bytes) -> Any:
    """An upstream answer parsed leniently: None when it is not JSON (usage then comes from headers or is zero)."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_COMPACT_ASCII = json.JSONEncoder(separators=(",", ":"))


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON."""
    try:
        return _COMPACT.encode(value).encode()
    except UnicodeEncodeError:
        return _COMPACT_ASCII.encode(value).encode()
