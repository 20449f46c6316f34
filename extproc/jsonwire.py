"""JSON as it crosses the wire: parsed strictly, written compactly, never a 500.

Every translator reads client JSON and writes JSON for Bedrock or the client.
Doing it in one place keeps the edge cases identical everywhere: NaN and
Infinity are refused (not JSON; Bedrock chokes on them), absurd nesting is a
400 rather than a ``RecursionError``, and an unpaired surrogate (valid in JSON
text, not encodable as UTF-8) stays escaped instead of crashing the encoder.

Every request body is parsed and every translated body written here, so speed
matters: orjson parses a 1 KiB body in about 2.5 µs and writes it in under 1 µs,
where the standard library takes about 11 and 15. orjson is stricter than the
rules above in a few corners, and there the standard library decides, so the
result is the same either way: a document orjson refuses (an unpaired
surrogate, nesting deeper than 1024, a number out of float range) is parsed
again by :mod:`json`, for its value or its error message (a number out of
float range is an error either way); a body with a run of
19 or more digits is parsed by :mod:`json` only (orjson would turn an integer
beyond 64 bits into a float, silently); a value orjson will not write (an
unpaired surrogate, an integer beyond 64 bits) is written by :mod:`json`.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

from .errors import invalid


def _refuse(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")


def _finite(number: str) -> float:
    value = float(number)
    if math.isinf(value):  # "1e400": valid JSON text, but no double holds it (and Bedrock would choke)
        raise ValueError(f"the number {number[:40]} is out of range")
    return value


_STRICT = json.JSONDecoder(parse_constant=_refuse, parse_float=_finite)
"""Built once: ``json.loads`` with any option builds a new decoder on every call."""


_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x2E for b in range(256))
"""Every ASCII digit made ``0`` and every other byte ``.``: a run of digits is then a plain substring."""
_LONG_RUN = b"0" * 19
"""orjson holds integers from -2**63 to 2**64 - 1 exactly; -9223372036854775809 already has 19 digits."""


def _may_hold_long_number(data: bytes) -> bool:
    """Whether ``data`` has a run of 19 digits: maybe an integer beyond 64 bits, which only :mod:`json`
    keeps exact. One ``translate`` and one substring search, both in C (~1 µs/KB; a regular expression
    took ~30 ns a byte, and most answers hold such runs of digits somewhere)."""
    return _LONG_RUN in data.translate(_DIGITS_AS_ZEROS)


_UNDECIDED = object()


def _by_orjson(data: bytes) -> Any:
    """orjson's value for ``data``, or ``_UNDECIDED`` where the standard library decides (module docstring)."""
    if _may_hold_long_number(data):
        return _UNDECIDED
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return _UNDECIDED


def load(raw: bytes | str, what: str = "request body", param: str | None = None) -> Any:
    """Parse JSON or raise a 400 saying which document was not valid."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if (value := _by_orjson(data)) is not _UNDECIDED:
        return value
    try:  # the standard library decides: its value, or its error message
        text = data.decode(json.detect_encoding(data), "surrogatepass")
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
    """An upstream answer parsed leniently (``NaN`` and ``1e400`` included, as the standard library reads
    them, so answer guardrails and usage never skip an answer that is JSON): None when it is not JSON
    (usage then comes from headers or is zero)."""
    if (value := _by_orjson(raw)) is not _UNDECIDED:
        return value
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_COMPACT_ASCII = json.JSONEncoder(separators=(",", ":"))


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: a value only the standard library writes (module docstring)
        pass
    try:
        return _COMPACT.encode(value).encode()
    except UnicodeEncodeError:
        return _COMPACT_ASCII.encode(value).encode()
