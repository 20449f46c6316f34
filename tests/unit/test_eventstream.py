"""The gateway's event stream decoder, judged by botocore's parser and a real Bedrock capture.

Frames with every header type are built by a small encoder in this file (the
emulator's encoder only writes string headers, which is all Bedrock sends); the
emulator's encoder is used for the Bedrock-shaped frames.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import struct
import uuid
import zlib

import pytest
from botocore.eventstream import EventStreamBuffer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bedrock_emulator.eventstream import encode_frame, event_frame, exception_frame, padded_json
from extproc.bedrock.eventstream import (
    MESSAGE_TEXT_LIMIT,
    Decoder,
    EventStreamError,
    Frame,
    chunk_event,
    exception_message,
)
from tests.paths import BEDROCK_CAPTURES

CAPTURE = BEDROCK_CAPTURES / "converse-stream-tool-use.bin"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)

# -- a tiny encoder for all ten header types (wire-formats §3) -----------------------------------

TRUE, FALSE, INT8, INT16, INT32, INT64, BYTES, STRING, TIMESTAMP, UUID = range(10)
_INT_FORMATS = {INT8: ">b", INT16: ">h", INT32: ">i", INT64: ">q", TIMESTAMP: ">q"}


def encode_header(name: str, kind: int, value: object) -> bytes:
    raw_name = name.encode("utf-8")
    out = struct.pack(">B", len(raw_name)) + raw_name + struct.pack(">B", kind)
    if kind in (TRUE, FALSE):
        return out
    if kind in _INT_FORMATS:
        return out + struct.pack(_INT_FORMATS[kind], value)
    if kind in (BYTES, STRING):
        raw = value.encode("utf-8") if kind == STRING else value  # type: ignore[union-attr]
        return out + struct.pack(">H", len(raw)) + raw  # type: ignore[arg-type]
    assert kind == UUID
    return out + value  # type: ignore[operator]


def build_frame(raw_headers: bytes, payload: bytes) -> bytes:
    prelude = struct.pack(">II", 16 + len(raw_headers) + len(payload), len(raw_headers))
    body = prelude + struct.pack(">I", zlib.crc32(prelude)) + raw_headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


def with_lengths(total: int, headers_len: int, rest: bytes = b"") -> bytes:
    """A prelude with a valid CRC claiming any lengths, then ``rest``."""
    prelude = struct.pack(">II", total, headers_len)
    return prelude + struct.pack(">I", zlib.crc32(prelude)) + rest


# -- decoding helpers ----------------------------------------------------------------------------


def decode(data: bytes, cuts: list[int] | None = None, decoder: Decoder | None = None) -> list[Frame]:
    decoder = decoder or Decoder()
    bounds = [0, *sorted(set(cuts or [])), len(data)]
    frames: list[Frame] = []
    for start, end in zip(bounds, bounds[1:]):
        frames += decoder.feed(data[start:end])
    decoder.close()
    return frames


def decode_bytewise(data: bytes) -> list[Frame]:
    decoder = Decoder()
    frames: list[Frame] = []
    for i in range(len(data)):
        frames += decoder.feed(data[i : i + 1])
    decoder.close()
    return frames


def botocore_parse(data: bytes) -> list[tuple[list, bytes]]:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return [(typed(message.headers.items()), message.payload) for message in buffer]


def as_botocore(value: object) -> object:
    """Our richer header values in botocore's representation (ms ints, raw uuid bytes)."""
    if isinstance(value, dt.datetime):
        return (value - EPOCH) // dt.timedelta(milliseconds=1)
    if isinstance(value, uuid.UUID):
        return value.bytes
    return value


def typed(items) -> list:
    # The type is compared too: True == 1 in Python, and botocore gives bools for types 0/1.
    return [(name, type(value), value) for name, value in items]


def ours_as_botocore(frames: list[Frame]) -> list[tuple[list, bytes]]:
    return [(typed((k, as_botocore(v)) for k, v in f.headers.items()), f.payload) for f in frames]


# -- strategies ----------------------------------------------------------------------------------

MIN_MS = (dt.datetime(1, 1, 1, tzinfo=dt.timezone.utc) - EPOCH) // dt.timedelta(milliseconds=1)
MAX_MS = (dt.datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=dt.timezone.utc) - EPOCH) // dt.timedelta(
    milliseconds=1
)

header_names = st.text(min_size=1, max_size=24).filter(lambda s: len(s.encode("utf-8")) < 256)
typed_values = st.one_of(
    st.just((TRUE, True)),
    st.just((FALSE, False)),
    st.tuples(st.just(INT8), st.integers(-(2**7), 2**7 - 1)),
    st.tuples(st.just(INT16), st.integers(-(2**15), 2**15 - 1)),
    st.tuples(st.just(INT32), st.integers(-(2**31), 2**31 - 1)),
    st.tuples(st.just(INT64), st.integers(-(2**63), 2**63 - 1)),
    st.tuples(st.just(BYTES), st.binary(max_size=300)),
    st.tuples(st.just(STRING), st.text(max_size=100)),
    st.tuples(st.just(TIMESTAMP), st.integers(MIN_MS, MAX_MS)),
    st.tuples(st.just(UUID), st.binary(min_size=16, max_size=16)),
)


def expected_value(kind: int, value: object) -> object:
    if kind == TIMESTAMP:
        return EPOCH + dt.timedelta(milliseconds=value)  # type: ignore[arg-type]
    if kind == UUID:
        return uuid.UUID(bytes=value)  # type: ignore[arg-type]
    return value


@st.composite
def frames_strategy(draw, max_payload: int = 1024):
    """(encoded frame, expected headers, payload) with any mix of header types."""
    names = draw(st.lists(header_names, max_size=8, unique=True))
    raw_headers = b""
    expected: dict[str, object] = {}
    for name in names:
        kind, value = draw(typed_values)
        raw_headers += encode_header(name, kind, value)
        expected[name] = expected_value(kind, value)
    payload = draw(st.binary(max_size=max_payload))
    return build_frame(raw_headers, payload), expected, payload


def streams(max_frames: int = 5, max_payload: int = 1024):
    return st.lists(frames_strategy(max_payload), min_size=1, max_size=max_frames)


# -- against botocore, on frames hypothesis makes up ---------------------------------------------


def check_stream(built, frames: list[Frame]) -> None:
    data = b"".join(frame for frame, _, _ in built)
    assert ours_as_botocore(frames) == botocore_parse(data)
    assert [typed(f.headers.items()) for f in frames] == [typed(h.items()) for _, h, _ in built]
    assert [f.payload for f in frames] == [p for _, _, p in built]


@given(built=streams(), data=st.data())
def test_any_frames_at_random_split_points_decode_as_botocore_does(built, data) -> None:
    stream = b"".join(frame for frame, _, _ in built)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    check_stream(built, decode(stream, cuts))


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(built=streams(max_frames=3, max_payload=200))
def test_any_frames_one_byte_at_a_time_decode_as_botocore_does(built) -> None:
    check_stream(built, decode_bytewise(b"".join(frame for frame, _, _ in built)))


def test_every_header_type_decodes_to_its_python_type() -> None:
    stamp_ms = 1_700_000_000_123
    an_id = uuid.UUID("12345678-1234-5678-1234-567812345678")
    raw = b"".join(
        [
            encode_header("t", TRUE, None),
            encode_header("f", FALSE, None),
            encode_header("i8", INT8, -128),
            encode_header("i16", INT16, -32768),
            encode_header("i32", INT32, 2**31 - 1),
            encode_header("i64", INT64, -(2**63)),
            encode_header("b", BYTES, b"\x00\xff"),
            encode_header("s", STRING, "héllo"),
            encode_header("ts", TIMESTAMP, stamp_ms),
            encode_header("id", UUID, an_id.bytes),
        ]
    )
    [frame] = decode(build_frame(raw, b"body"))
    assert typed(frame.headers.items()) == typed(
        {
            "t": True,
            "f": False,
            "i8": -128,
            "i16": -32768,
            "i32": 2**31 - 1,
            "i64": -(2**63),
            "b": b"\x00\xff",
            "s": "héllo",
            "ts": dt.datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=dt.timezone.utc),
            "id": an_id,
        }.items()
    )
    assert frame.payload == b"body"


def test_a_frame_with_no_headers_and_no_payload() -> None:
    assert decode(build_frame(b"", b"")) == [Frame({}, b"")]


# -- the real capture ----------------------------------------------------------------------------

CAPTURE_EVENT_TYPES = (
    ["messageStart"]
    + ["contentBlockDelta"] * 17
    + ["contentBlockStop", "contentBlockStart", "contentBlockDelta", "contentBlockDelta", "contentBlockStop"]
    + ["messageStop", "metadata"]
)


@pytest.fixture(scope="module")
def capture() -> bytes:
    return CAPTURE.read_bytes()


@pytest.fixture(scope="module")
def capture_frames(capture: bytes) -> list[Frame]:
    return decode(capture)


def test_capture_decodes_to_the_bedrock_conversation(capture_frames: list[Frame]) -> None:
    assert len(capture_frames) == 25
    assert [f.event_type for f in capture_frames] == CAPTURE_EVENT_TYPES
    assert {(f.message_type, f.content_type) for f in capture_frames} == {("event", "application/json")}
    events = [json.loads(f.payload) for f in capture_frames]
    assert all("p" in event for event in events)  # Bedrock's padding
    assert events[0]["role"] == "assistant"
    assert "".join(e["delta"]["text"] for e in events[1:18]).startswith("To calculate the cosine of 7,")
    assert events[19]["start"]["toolUse"]["name"] == "cosine"
    assert "".join(e["delta"]["toolUse"]["input"] for e in events[20:22]) == '{"x": 7}'
    assert events[23]["stopReason"] == "tool_use"
    assert events[24]["usage"]["inputTokens"] == 386
    assert events[24]["usage"]["outputTokens"] == 75


def test_capture_equals_botocores_parse(capture: bytes, capture_frames: list[Frame]) -> None:
    assert ours_as_botocore(capture_frames) == botocore_parse(capture)


def test_capture_one_byte_at_a_time(capture: bytes, capture_frames: list[Frame]) -> None:
    assert decode_bytewise(capture) == capture_frames


@given(data=st.data())
def test_capture_at_random_split_points(capture: bytes, capture_frames: list[Frame], data) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(capture)), max_size=40))
    assert decode(capture, cuts) == capture_frames


def test_capture_fed_as_bytearray_and_memoryview_chunks_that_the_caller_reuses(
    capture: bytes, capture_frames: list[Frame]
) -> None:
    # Chunks that end mid-frame leave a tail the decoder must copy, not reference.
    decoder = Decoder()
    frames: list[Frame] = []
    for start in range(0, len(capture), 100):
        scratch = bytearray(capture[start : start + 100])
        if start % 200:
            with memoryview(scratch) as view:
                frames += decoder.feed(view)
        else:
            frames += decoder.feed(scratch)
        scratch[:] = b"\xaa" * len(scratch)  # the caller scribbles over its buffer
    decoder.close()
    assert frames == capture_frames


@pytest.mark.parametrize("fmt", ["c", "b"])
def test_memoryviews_of_any_byte_format_are_read_as_unsigned_bytes(fmt: str, capture_frames: list[Frame]) -> None:
    long_name = "n" * 200  # a name length byte >= 128 reads negative as a signed byte
    stream = build_frame(encode_header(long_name, STRING, "v"), b"payload") + CAPTURE.read_bytes()
    view = memoryview(stream).cast(fmt)
    expected = [Frame({long_name: "v"}, b"payload"), *capture_frames]
    assert decode(view) == expected  # type: ignore[arg-type]  # parsed in place
    assert decode(view, cuts=[5, 300, 301, 1000]) == expected  # type: ignore[arg-type]  # via the buffer


def test_buffered_counts_the_partial_frame(capture: bytes, capture_frames: list[Frame]) -> None:
    (first,) = struct.unpack(">I", capture[:4])
    decoder = Decoder()
    assert decoder.feed(capture[: first + 5]) == capture_frames[:1]
    assert decoder.buffered == 5
    assert decoder.feed(capture[first + 5 : first + 30]) == []
    assert decoder.buffered == 30


# -- corruption ----------------------------------------------------------------------------------


def a_frame(payload: bytes = b'{"hello":"world"}') -> bytes:
    return event_frame("contentBlockDelta", {"delta": {"text": payload.decode()}})


def test_flipped_payload_byte_fails_the_message_crc() -> None:
    frame = bytearray(a_frame())
    frame[-10] ^= 0x01
    with pytest.raises(EventStreamError, match="message CRC"):
        Decoder().feed(bytes(frame))


def test_flipped_message_crc_byte_is_caught_too() -> None:
    frame = bytearray(a_frame())
    frame[-1] ^= 0x80
    with pytest.raises(EventStreamError, match="message CRC"):
        decode(bytes(frame), cuts=list(range(len(frame))))


@pytest.mark.parametrize("index", range(12))
def test_flipped_prelude_byte_fails_as_soon_as_the_prelude_is_in(index: int) -> None:
    frame = bytearray(a_frame())
    frame[index] ^= 0x04
    decoder = Decoder()
    for i in range(11):
        assert decoder.feed(frame[i : i + 1]) == []
    with pytest.raises(EventStreamError, match="prelude CRC"):
        decoder.feed(frame[11:12])  # nothing of the body needed


def test_prelude_claiming_two_gib_is_rejected_right_after_twelve_bytes() -> None:
    decoder = Decoder()
    prelude = with_lengths(2 * 1024**3, 0)
    assert decoder.feed(prelude[:11]) == []
    assert decoder.buffered == 11
    with pytest.raises(EventStreamError, match="exceeds the limit"):
        decoder.feed(prelude[11:])
    assert decoder.buffered == 0


def test_max_frame_bytes_is_inclusive() -> None:
    frame = a_frame()
    assert len(decode(frame, decoder=Decoder(max_frame_bytes=len(frame)))) == 1
    with pytest.raises(EventStreamError, match="exceeds the limit"):
        Decoder(max_frame_bytes=len(frame) - 1).feed(frame[:12])


@pytest.mark.parametrize(
    ("total", "headers_len", "match"),
    [
        (0, 0, "below the minimum"),
        (15, 0, "below the minimum"),
        (16, 1, "does not fit"),
        (100, 85, "does not fit"),
        (2**32 - 1, 2**32 - 1, "does not fit"),
    ],
)
def test_impossible_lengths_are_rejected_at_the_prelude(total: int, headers_len: int, match: str) -> None:
    with pytest.raises(EventStreamError, match=match):
        Decoder(max_frame_bytes=2**32).feed(with_lengths(total, headers_len))


def test_headers_length_may_fill_the_frame_exactly() -> None:
    raw = encode_header("x", STRING, "y")
    assert decode(build_frame(raw, b"")) == [Frame({"x": "y"}, b"")]


@pytest.mark.parametrize(
    ("raw_headers", "match"),
    [
        (b"\x01x\x0a", "unknown type 10"),
        (b"\x01x\xff", "unknown type 255"),
        (b"\x01x", "truncated"),  # no type byte
        (b"\x05xy", "truncated"),  # name runs past the headers
        (b"\x01x\x07\x00\x05abc", "truncated"),  # string runs past the headers
        (b"\x01x\x06\x00", "truncated"),  # half a length
        (b"\x01x\x04\x00\x00", "truncated"),  # half an int32
        (b"\x01x\x09" + b"\x00" * 15, "truncated"),  # short uuid
        (b"\x01x\x08" + b"\x00" * 7, "truncated"),  # short timestamp
        (b"\x01x\x07\x00\x02\xc3\x28", "UTF-8"),
        (b"\x02\xff\xfe\x00", "UTF-8"),
        (b"\x01x\x00\x01x\x01", "repeated"),
        (encode_header("t", TIMESTAMP, 2**63 - 1), "out of range"),
        (encode_header("t", TIMESTAMP, -(2**63)), "out of range"),
    ],
)
def test_malformed_headers_inside_valid_crcs_are_errors(raw_headers: bytes, match: str) -> None:
    with pytest.raises(EventStreamError, match=match):
        Decoder().feed(build_frame(raw_headers, b"payload"))


def test_truncated_stream_then_close_is_an_error(capture: bytes) -> None:
    decoder = Decoder()
    frames = decoder.feed(capture[:-1])
    assert len(frames) == 24
    assert decoder.buffered > 0
    with pytest.raises(EventStreamError, match="stream ended"):
        decoder.close()


def test_stream_ending_inside_a_prelude_is_an_error() -> None:
    decoder = Decoder()
    decoder.feed(a_frame()[:5])
    with pytest.raises(EventStreamError, match="stream ended"):
        decoder.close()


def test_clean_end_closes_quietly(capture: bytes) -> None:
    decoder = Decoder()
    decoder.feed(capture)
    assert decoder.buffered == 0
    decoder.close()
    decoder.close()
    Decoder().close()  # an empty stream is fine too


def test_a_failed_decoder_stays_failed() -> None:
    decoder = Decoder()
    with pytest.raises(EventStreamError):
        decoder.feed(with_lengths(10, 0))
    with pytest.raises(EventStreamError, match="already failed"):
        decoder.feed(a_frame())
    with pytest.raises(EventStreamError, match="already failed"):
        decoder.feed(b"")
    with pytest.raises(EventStreamError, match="already failed"):
        decoder.close()


def test_feed_after_close_is_an_error() -> None:
    decoder = Decoder()
    decoder.close()
    with pytest.raises(EventStreamError, match="closed"):
        decoder.feed(a_frame())


def test_frames_before_the_corruption_travel_with_the_error() -> None:
    good = a_frame()
    bad = bytearray(a_frame(b"second"))
    bad[-6] ^= 0xFF
    with pytest.raises(EventStreamError) as caught:
        Decoder().feed(good + good + bytes(bad))
    assert [f.payload for f in caught.value.frames] == [decode(good)[0].payload] * 2


@settings(max_examples=300)
@given(garbage=st.binary(max_size=300), data=st.data())
def test_random_bytes_only_ever_give_frames_or_event_stream_errors(garbage: bytes, data) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(garbage)), max_size=10))
    try:
        decode(garbage, cuts)
    except EventStreamError:
        pass


@settings(max_examples=500)
@given(raw_headers=st.binary(max_size=64), payload=st.binary(max_size=32))
def test_random_headers_inside_valid_crcs_give_botocores_frame_or_an_error(raw_headers: bytes, payload: bytes) -> None:
    # Random bytes hardly ever pass the CRCs; these do, so they reach the header parser.
    stream = build_frame(raw_headers, payload)
    try:
        frames = decode(stream)
    except EventStreamError:
        return
    assert ours_as_botocore(frames) == botocore_parse(stream)


# -- exception frames and Bedrock payload helpers ------------------------------------------------


def test_exception_frame_is_recognised() -> None:
    stream = a_frame() + exception_frame("throttlingException", "Too many tokens, please wait.")
    frames = decode(stream, cuts=[7, 50, len(stream) - 3])
    assert [f.message_type for f in frames] == ["event", "exception"]
    error = frames[1]
    assert error.exception_type == "throttlingException"
    assert error.event_type is None
    assert error.content_type == "application/json"
    assert exception_message(error) == "Too many tokens, please wait."
    assert frames[0].exception_type is None


def test_exception_message_fallbacks() -> None:
    def frame(payload: bytes, **headers: str) -> Frame:
        return Frame({":message-type": "exception", **headers}, payload)

    assert exception_message(frame(b'{"Message":"capitalised"}')) == "capitalised"
    assert exception_message(frame(b"upstream said no")) == "upstream said no"
    assert exception_message(frame(b'["not", "an", "object"]')) == '["not", "an", "object"]'
    assert exception_message(frame(b"\xff\xfebad utf-8")) == "\ufffd\ufffdbad utf-8"
    long = exception_message(frame(b"x" * 10_000))
    assert long == "x" * MESSAGE_TEXT_LIMIT + "…"
    assert exception_message(frame(b"", **{":exception-type": "modelStreamErrorException"})) == (
        "modelStreamErrorException"
    )
    error = Frame({":message-type": "error", ":error-code": "Boom", ":error-message": "it broke"}, b"")
    assert exception_message(error) == "it broke"
    assert exception_message(Frame({}, b"")) == ""


def test_frame_properties_only_report_string_headers() -> None:
    bare = Frame({}, b"")
    assert (bare.message_type, bare.event_type, bare.exception_type, bare.content_type) == ("", None, None, None)
    odd = Frame({":message-type": True, ":event-type": 5, ":exception-type": b"x", ":content-type": "text/plain"}, b"")
    assert (odd.message_type, odd.event_type, odd.exception_type, odd.content_type) == ("", None, None, "text/plain")


def chunk_frame(payload: bytes) -> Frame:
    return Frame({":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}, payload)


def test_chunk_event_decodes_the_base64_inner_event() -> None:
    inner = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}
    inner_bytes = json.dumps(inner).encode()
    wire = encode_frame(
        {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"},
        padded_json({"bytes": base64.b64encode(inner_bytes).decode()}),
    )
    [frame] = decode(wire)
    assert b'"p":' in frame.payload
    assert chunk_event(frame) == inner_bytes


@given(inner=st.binary(max_size=500), pad=st.text(max_size=60))
def test_chunk_event_round_trips_any_bytes(inner: bytes, pad: str) -> None:
    payload = json.dumps({"bytes": base64.b64encode(inner).decode(), "p": pad}).encode()
    assert chunk_event(chunk_frame(payload)) == inner


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'{"p": "abc"}',
        b'{"bytes": 12, "p": "abc"}',
        b'{"bytes": "not*base64!", "p": "abc"}',
        b'{"bytes": "abc", "p": "abc"}',  # bad padding
        b'{"bytes": "e30=!", "p": "abc"}',  # a lax decoder would skip the "!"
        b"\xff\xfe",
    ],
)
def test_chunk_event_rejects_malformed_payloads(payload: bytes) -> None:
    with pytest.raises(EventStreamError):
        chunk_event(chunk_frame(payload))


def test_chunk_event_rejects_frames_that_are_not_chunks() -> None:
    payload = json.dumps({"bytes": base64.b64encode(b"{}").decode()}).encode()
    with pytest.raises(EventStreamError, match="not a chunk"):
        chunk_event(Frame({":event-type": "metadata", ":message-type": "event"}, payload))
    with pytest.raises(EventStreamError, match="not a chunk"):
        chunk_event(Frame({":event-type": "chunk", ":message-type": "exception"}, payload))
