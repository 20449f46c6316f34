"""Incremental decoder for ``application/vnd.amazon.eventstream`` (wire-formats §3).

Frame layout, all integers big-endian::

    [total_len u32][headers_len u32][prelude_crc u32][headers][payload][message_crc u32]

``prelude_crc`` is the CRC32 of the first 8 bytes, ``message_crc`` the CRC32 of
every byte before it. A header is ``[name_len u8][name][type u8][value]`` with
ten value types (0 true, 1 false, 2-5 int8/16/32/64, 6 bytes, 7 string,
8 timestamp in ms, 9 uuid).

Envoy hands the ext_proc service the response body in chunks cut at arbitrary
byte boundaries, so :class:`Decoder` is fed chunk by chunk and returns the
frames each chunk completes. It sits on the hot path, so it never loops over
payload bytes in Python and never re-copies what it has buffered: a chunk
that arrives with nothing pending is parsed in place and only its unfinished
tail is kept; otherwise the chunk is appended to a ``bytearray`` and the
consumed prefix dropped (CPython drops a bytearray's prefix without moving the
rest).

Buffering is bounded: a frame's prelude is checked (CRC, lengths, size limit)
as soon as its 12 bytes are there, so a corrupt or oversized frame is rejected
before anything of its body is buffered.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import json
import struct
import uuid
import zlib
from dataclasses import dataclass

__all__ = [
    "Decoder",
    "EventStreamError",
    "Frame",
    "HeaderValue",
    "chunk_event",
    "exception_message",
]

HeaderValue = str | int | bool | bytes | _dt.datetime | uuid.UUID

PRELUDE_BYTES = 12
MIN_FRAME_BYTES = 16  # prelude + message CRC, no headers, no payload
MAX_HEADERS_BYTES = 128 * 1024  # the framing spec's limit (botocore enforces it too)
DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024

_PRELUDE = struct.Struct(">III")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_FIXED_INTS = {
    2: struct.Struct(">b"),
    3: struct.Struct(">h"),
    4: struct.Struct(">i"),
    5: struct.Struct(">q"),
}
_I64 = struct.Struct(">q")
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_ONE_MS = _dt.timedelta(milliseconds=1)

_TRUE, _FALSE, _BYTES, _STRING, _TIMESTAMP, _UUID = 0, 1, 6, 7, 8, 9

# How much of a non-JSON exception payload exception_message() returns.
MESSAGE_TEXT_LIMIT = 500


class EventStreamError(Exception):
    """The stream is corrupt (or ended inside a frame); the decoder that raised it is finished.

    ``frames`` holds the frames the failing :meth:`Decoder.feed` call had already
    decoded from the same chunk before it met the corruption, so a caller can
    still deliver them.
    """

    def __init__(self, message: str, frames: list[Frame] | None = None) -> None:
        super().__init__(message)
        self.frames: list[Frame] = frames if frames is not None else []


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded event stream message."""

    headers: dict[str, HeaderValue]
    payload: bytes

    def _text_header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return value if isinstance(value, str) else None

    @property
    def message_type(self) -> str:
        """``:message-type``: ``event``, ``exception`` or ``error`` ("" when absent)."""
        return self._text_header(":message-type") or ""

    @property
    def event_type(self) -> str | None:
        return self._text_header(":event-type")

    @property
    def exception_type(self) -> str | None:
        return self._text_header(":exception-type")

    @property
    def content_type(self) -> str | None:
        return self._text_header(":content-type")


class Decoder:
    """Feed it body chunks; it returns whole frames and keeps the partial rest.

    Not thread-safe; one decoder per response stream. After it has raised
    :class:`EventStreamError` every further call raises again.
    """

    __slots__ = ("_buf", "_max_frame", "_total", "_headers_len", "_error", "_closed")

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        if max_frame_bytes < MIN_FRAME_BYTES:
            raise ValueError(f"max_frame_bytes must be at least {MIN_FRAME_BYTES}")
        self._buf = bytearray()
        self._max_frame = max_frame_bytes
        # Prelude of the frame at the start of _buf, once validated (0: not yet).
        self._total = 0
        self._headers_len = 0
        self._error: EventStreamError | None = None
        self._closed = False

    @property
    def buffered(self) -> int:
        """Bytes held for a frame that is not complete yet."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Decode ``data``; return every frame it completes (maybe none)."""
        self._check_usable()
        frames: list[Frame] = []
        if not data:
            return frames
        if isinstance(data, memoryview) and data.format != "B":
            data = data.cast("B")  # index bytes as unsigned ints
        buf = self._buf
        if buf:
            buf += data
            source: bytes | bytearray | memoryview = buf
        else:
            source = data  # nothing pending: parse the caller's chunk in place
        try:
            consumed = self._decode(source, frames)
        except EventStreamError as exc:
            exc.frames = frames
            self._fail(exc)
            raise
        if source is buf:
            if consumed:
                del buf[:consumed]
        elif consumed < len(source):
            with memoryview(source) as view:
                buf += view[consumed:]  # a copy: the caller may reuse its buffer
        return frames

    def close(self) -> None:
        """End of stream: raise :class:`EventStreamError` if a frame was left unfinished.

        Closing a cleanly closed decoder again does nothing.
        """
        if self._error is not None:
            self._check_usable()
        self._closed = True
        if self._buf:
            expected = f"a {self._total}-byte frame" if self._total else "a frame prelude"
            self._fail(EventStreamError(f"stream ended after {len(self._buf)} bytes of {expected}"))
            raise self._error  # type: ignore[misc]

    def _check_usable(self) -> None:
        if self._error is not None:
            raise EventStreamError(f"event stream decoder already failed: {self._error}")
        if self._closed:
            raise EventStreamError("event stream decoder already closed")

    def _fail(self, exc: EventStreamError) -> None:
        self._error = exc
        self._buf = bytearray()  # a failed decoder holds no memory

    def _decode(self, source: bytes | bytearray | memoryview, frames: list[Frame]) -> int:
        """Append the whole frames at the start of ``source`` to ``frames``; return bytes consumed."""
        pos = 0
        with memoryview(source) as view:
            size = len(view)
            while True:
                total = self._total
                if not total:
                    if size - pos < PRELUDE_BYTES:
                        break
                    total, headers_len = self._check_prelude(view, pos)
                    self._total, self._headers_len = total, headers_len
                else:
                    headers_len = self._headers_len
                if size - pos < total:
                    break
                crc_at = pos + total - 4
                (message_crc,) = _U32.unpack_from(view, crc_at)
                if zlib.crc32(view[pos:crc_at]) != message_crc:
                    raise EventStreamError("event stream message CRC mismatch")
                headers_end = pos + PRELUDE_BYTES + headers_len
                headers = _parse_headers(view, pos + PRELUDE_BYTES, headers_end)
                frames.append(Frame(headers, view[headers_end:crc_at].tobytes()))
                pos += total
                self._total = 0
        return pos

    def _check_prelude(self, view: memoryview, pos: int) -> tuple[int, int]:
        total, headers_len, prelude_crc = _PRELUDE.unpack_from(view, pos)
        if zlib.crc32(view[pos : pos + 8]) != prelude_crc:
            raise EventStreamError("event stream prelude CRC mismatch")
        if total < MIN_FRAME_BYTES:
            raise EventStreamError(f"event stream frame length {total} is below the minimum {MIN_FRAME_BYTES}")
        if headers_len > total - MIN_FRAME_BYTES:
            raise EventStreamError(f"event stream headers length {headers_len} does not fit a {total}-byte frame")
        if total > self._max_frame:
            raise EventStreamError(f"event stream frame of {total} bytes exceeds the limit of {self._max_frame}")
        if headers_len > MAX_HEADERS_BYTES:
            raise EventStreamError(f"event stream headers length {headers_len} exceeds {MAX_HEADERS_BYTES}")
        return total, headers_len


def _parse_headers(view: memoryview, pos: int, end: int) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    while pos < end:
        name_end = pos + 1 + view[pos]
        if name_end >= end:  # the type byte must follow the name
            raise EventStreamError("event stream header truncated")
        name = _utf8(view, pos + 1, name_end)
        kind = view[name_end]
        pos = name_end + 1
        value: HeaderValue
        if kind == _STRING or kind == _BYTES:
            if pos + 2 > end:
                raise EventStreamError("event stream header truncated")
            (length,) = _U16.unpack_from(view, pos)
            pos += 2
            if pos + length > end:
                raise EventStreamError("event stream header truncated")
            value = _utf8(view, pos, pos + length) if kind == _STRING else view[pos : pos + length].tobytes()
            pos += length
        elif kind == _TRUE:
            value = True
        elif kind == _FALSE:
            value = False
        elif kind in _FIXED_INTS:
            unpacker = _FIXED_INTS[kind]
            if pos + unpacker.size > end:
                raise EventStreamError("event stream header truncated")
            (value,) = unpacker.unpack_from(view, pos)
            pos += unpacker.size
        elif kind == _TIMESTAMP:
            if pos + 8 > end:
                raise EventStreamError("event stream header truncated")
            (millis,) = _I64.unpack_from(view, pos)
            pos += 8
            try:
                value = _EPOCH + millis * _ONE_MS
            except OverflowError:
                raise EventStreamError(f"event stream timestamp header {name!r} out of range: {millis}") from None
        elif kind == _UUID:
            if pos + 16 > end:
                raise EventStreamError("event stream header truncated")
            value = uuid.UUID(bytes=view[pos : pos + 16].tobytes())
            pos += 16
        else:
            raise EventStreamError(f"event stream header {name!r} has unknown type {kind}")
        if name in headers:
            raise EventStreamError(f"event stream header {name!r} repeated")
        headers[name] = value
    return headers


def _utf8(view: memoryview, start: int, end: int) -> str:
    try:
        return str(view[start:end], "utf-8")
    except UnicodeDecodeError:
        raise EventStreamError("event stream header is not valid UTF-8") from None


def _json_object(frame: Frame) -> dict | None:
    try:
        document = json.loads(frame.payload)
    except (ValueError, RecursionError):  # JSONDecodeError and bad UTF-8 are ValueErrors
        return None
    return document if isinstance(document, dict) else None


def chunk_event(frame: Frame) -> bytes:
    """The inner bytes of an InvokeModelWithResponseStream ``chunk`` event.

    The payload is ``{"bytes": "<base64>", "p": "<padding>"}``; the base64
    decodes to one Anthropic stream event (JSON, returned undecoded).
    """
    if frame.message_type != "event" or frame.event_type != "chunk":
        raise EventStreamError(
            f"not a chunk event: message type {frame.message_type!r}, event type {frame.event_type!r}"
        )
    document = _json_object(frame)
    if document is None:
        raise EventStreamError("chunk event payload is not a JSON object")
    encoded = document.get("bytes")
    if not isinstance(encoded, str):
        raise EventStreamError("chunk event payload has no \"bytes\" string")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise EventStreamError("chunk event \"bytes\" is not valid base64") from None


def exception_message(frame: Frame) -> str:
    """The human-readable message of an ``exception`` (or ``error``) frame.

    ``{"message": "..."}`` in the payload (AWS also spells it ``Message``); for
    ``error`` frames the ``:error-message`` header; otherwise the payload as
    text, truncated to :data:`MESSAGE_TEXT_LIMIT` characters; for an empty
    payload, the exception type or error code.
    """
    document = _json_object(frame)
    if document is not None:
        for key in ("message", "Message"):
            message = document.get(key)
            if isinstance(message, str):
                return message
    header_message = frame.headers.get(":error-message")
    if isinstance(header_message, str) and header_message:
        return header_message
    text = frame.payload.decode("utf-8", errors="replace").strip()
    if len(text) > MESSAGE_TEXT_LIMIT:
        return text[:MESSAGE_TEXT_LIMIT] + "…"
    if text:
        return text
    for name in (":exception-type", ":error-code"):
        value = frame.headers.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


def encode_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """A frame with string headers (all Bedrock sends) and both CRCs.

    The gateway writes frames only on Bedrock-native streams whose text a
    guardrail changes; re-encoding an unchanged frame gives back its bytes.
    """
    encoded = b"".join(
        bytes([len(name_bytes)]) + name_bytes + bytes([_STRING]) + _U16.pack(len(value_bytes)) + value_bytes
        for name_bytes, value_bytes in ((n.encode(), v.encode()) for n, v in headers.items())
    )
    total = 12 + len(encoded) + len(payload) + 4
    prelude = _PRELUDE.pack(total, len(encoded), 0)[:8]
    prelude += _U32.pack(zlib.crc32(prelude))
    message = prelude + encoded + payload
    return message + _U32.pack(zlib.crc32(message))


def encode_event(event_type: str, payload: bytes) -> bytes:
    """An ``event`` frame with a JSON payload."""
    return encode_frame({":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
                        payload)


def encode_chunk(event: bytes) -> bytes:
    """An InvokeModelWithResponseStream ``chunk`` frame carrying one model event."""
    return encode_event("chunk", json.dumps({"bytes": base64.b64encode(event).decode("ascii")},
                                             separators=(",", ":")).encode())
