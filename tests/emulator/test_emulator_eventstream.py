"""The frame encoder, judged by botocore's own event stream parser and a real capture."""

from __future__ import annotations

import json
import struct
import zlib

import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from hypothesis import given
from hypothesis import strategies as st

from bedrock_emulator.eventstream import (
    encode_frame,
    event_frame,
    exception_frame,
    padded_json,
    padding,
)

from .emulator_support import SHARED_TESTDATA

CAPTURE = SHARED_TESTDATA / "bedrock-captures" / "converse-stream-tool-use.bin"


def decode_all(data: bytes, split_every: int | None = None) -> list:
    buffer = EventStreamBuffer()
    messages = []
    step = split_every or max(1, len(data))
    for offset in range(0, len(data), step):
        buffer.add_data(data[offset : offset + step])
        messages.extend(buffer)
    return messages


header_names = st.text(min_size=1, max_size=40).filter(lambda s: 0 < len(s.encode()) < 256)
header_values = st.text(max_size=200)


@given(
    headers=st.dictionaries(header_names, header_values, max_size=6),
    payload=st.binary(max_size=2048),
    split=st.integers(1, 64),
)
def test_botocore_decodes_any_frame_we_encode_whatever_the_chunking(
    headers: dict[str, str], payload: bytes, split: int
) -> None:
    frames = encode_frame(headers, payload) * 2
    messages = decode_all(frames, split_every=split)
    assert len(messages) == 2
    for message in messages:
        assert message.headers == headers
        assert message.payload == payload


def test_checksums_are_real() -> None:
    frame = bytearray(encode_frame({":event-type": "chunk"}, b'{"a":1}'))
    total, headers_length = struct.unpack(">II", frame[:8])
    assert (total, headers_length) == (len(frame), len(b"\x0b:event-type\x07\x00\x05chunk"))
    assert struct.unpack(">I", frame[8:12])[0] == zlib.crc32(frame[:8])
    frame[-5] ^= 0xFF  # corrupt the payload: botocore must notice
    with pytest.raises(ChecksumMismatch):
        decode_all(bytes(frame))


def test_reencoding_a_real_bedrock_capture_gives_the_same_bytes() -> None:
    if not CAPTURE.exists():
        pytest.skip(f"shared test data not present: {CAPTURE}")
    original = CAPTURE.read_bytes()
    messages = decode_all(original)
    assert len(messages) == 25
    assert b"".join(encode_frame(m.headers, m.payload) for m in messages) == original


def test_capture_payloads_follow_the_padding_shape_we_emit() -> None:
    if not CAPTURE.exists():
        pytest.skip(f"shared test data not present: {CAPTURE}")
    for message in decode_all(CAPTURE.read_bytes()):
        payload = json.loads(message.payload)
        assert list(payload) == sorted(payload)  # Bedrock sorts keys
        assert "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".startswith(payload["p"])
        ours = json.loads(padded_json({k: v for k, v in payload.items() if k != "p"}))
        assert set(ours) == set(payload)


def test_event_frame_headers_and_padded_payload() -> None:
    (message,) = decode_all(event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "hi"}}))
    assert message.headers == {
        ":event-type": "contentBlockDelta",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    payload = json.loads(message.payload)
    assert payload["delta"] == {"text": "hi"} and payload["contentBlockIndex"] == 0
    assert payload["p"] == padding(
        json.dumps({"contentBlockIndex": 0, "delta": {"text": "hi"}}, sort_keys=True, separators=(",", ":"))
    )
    assert 1 <= len(payload["p"]) <= 62


def test_exception_frame_is_what_botocore_turns_into_an_error() -> None:
    (message,) = decode_all(exception_frame("throttlingException", "slow down"))
    assert message.headers == {
        ":exception-type": "throttlingException",
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    assert json.loads(message.payload) == {"message": "slow down"}
    assert message.to_response_dict()["status_code"] == 400


def test_oversized_header_value_is_refused() -> None:
    with pytest.raises(ValueError):
        encode_frame({"x": "v" * 40000}, b"")
