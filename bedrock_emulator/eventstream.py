"""The AWS event stream frame encoder (``application/vnd.amazon.eventstream``).

Frame layout, all integers big-endian::

    [total_len u32][headers_len u32][prelude_crc u32][headers][payload][message_crc u32]

``prelude_crc`` is the CRC32 of the first 8 bytes, ``message_crc`` the CRC32
of everything before it. Each header is ``[name_len u8][name][type u8][value]``;
Bedrock only sends string headers (type 7, ``[len u16][utf-8 bytes]``), so
that is the only type encoded here.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

_STRING = 7
_PRELUDE = struct.Struct(">II")
_CRC = struct.Struct(">I")
# Limits from the framing spec (botocore's decoder enforces the same).
MAX_HEADER_VALUE = 32767
MAX_PAYLOAD = 16 * 1024 * 1024

# Real Bedrock pads every event payload with a "p" field cut from this
# alphabet, so that frame sizes do not reveal token lengths.
_PADDING_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def encode_headers(headers: dict[str, str]) -> bytes:
    out = bytearray()
    for name, value in headers.items():
        raw_name = name.encode("utf-8")
        raw_value = value.encode("utf-8")
        if not 0 < len(raw_name) < 256:
            raise ValueError(f"header name length out of range: {name!r}")
        if len(raw_value) > MAX_HEADER_VALUE:
            raise ValueError(f"header value too long for {name!r}")
        out += struct.pack(">B", len(raw_name)) + raw_name
        out += struct.pack(">BH", _STRING, len(raw_value)) + raw_value
    return bytes(out)


def encode_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One complete frame with both checksums."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("event payload larger than 16 MiB")
    raw_headers = encode_headers(headers)
    total = _PRELUDE.size + _CRC.size + len(raw_headers) + len(payload) + _CRC.size
    prelude = _PRELUDE.pack(total, len(raw_headers))
    head = prelude + _CRC.pack(zlib.crc32(prelude))
    body = head + raw_headers + payload
    return body + _CRC.pack(zlib.crc32(body))


def padding(seed: str) -> str:
    """Deterministic padding: the same event always gets the same ``p``."""
    return _PADDING_ALPHABET[: 1 + zlib.crc32(seed.encode("utf-8")) % len(_PADDING_ALPHABET)]


def padded_json(member: dict[str, Any]) -> bytes:
    """An event payload as Bedrock writes it: compact, keys sorted, with ``p``."""
    seed = json.dumps(member, sort_keys=True, separators=(",", ":"))
    return json.dumps({**member, "p": padding(seed)}, sort_keys=True, separators=(",", ":")).encode("utf-8")


def event_frame(event_type: str, member: dict[str, Any]) -> bytes:
    return encode_frame(
        {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
        padded_json(member),
    )


def exception_frame(exception_type: str, message: str) -> bytes:
    """A modelled stream error; ``exception_type`` is the camelCase union member."""
    return encode_frame(
        {":exception-type": exception_type, ":content-type": "application/json", ":message-type": "exception"},
        json.dumps({"message": message}, separators=(",", ":")).encode("utf-8"),
    )
