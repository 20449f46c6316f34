"""InvokeModelWithResponseStream → Anthropic SSE, at every chunking, read back by the Anthropic SDK."""

from __future__ import annotations

import base64
import json

import anthropic
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bedrock_emulator.eventstream import event_frame, exception_frame
from extproc.translate.anthropic_stream import InvokeStreamToSSE
from extproc.usage import Usage


def chunk(event: dict) -> bytes:
    return event_frame("chunk", {"bytes": base64.b64encode(json.dumps(event).encode()).decode()})


def events(text_pieces: list[str], *, cache: bool = False) -> list[dict]:
    usage = {"input_tokens": 25, "output_tokens": 1}
    if cache:
        usage |= {"cache_read_input_tokens": 1000, "cache_creation_input_tokens": 200}
    out = [
        {"type": "message_start", "message": {"id": "msg_bdrk_1", "type": "message", "role": "assistant",
                                              "model": "claude-haiku-4-5-20251001", "content": [],
                                              "stop_reason": None, "stop_sequence": None, "usage": usage}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        *({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}} for p in text_pieces),
        {"type": "content_block_stop", "index": 0},
        # Newer Claude models repeat the input/cache counts on message_delta: never add them twice.
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": 42, **({"cache_read_input_tokens": 1000} if cache else {})}},
        {"type": "message_stop", "amazon-bedrock-invocationMetrics": {
            "inputTokenCount": 25, "outputTokenCount": 42, "invocationLatency": 300, "firstByteLatency": 100,
            **({"cacheReadInputTokenCount": 1000, "cacheWriteInputTokenCount": 200} if cache else {})}},
    ]
    return out


def stream_bytes(evs: list[dict]) -> bytes:
    return b"".join(chunk(e) for e in evs)


def translate(data: bytes, cuts: list[int]) -> tuple[bytes, InvokeStreamToSSE]:
    translator = InvokeStreamToSSE()
    out = bytearray()
    previous = 0
    for cut in sorted(set(cuts)) + [len(data)]:
        out += translator.feed(data[previous:cut])
        previous = cut
    out += translator.finish()
    return bytes(out), translator


def sdk_events(sse: bytes) -> list:
    client = anthropic.Anthropic(api_key="unused", base_url="http://unused")
    response = httpx.Response(200, content=sse, headers={"content-type": "text/event-stream"},
                              request=httpx.Request("POST", "http://unused/v1/messages"))
    stream = anthropic.Stream(cast_to=anthropic.types.RawMessageStreamEvent, response=response, client=client)
    return list(stream)


PIECES = ["Hello", " there,", " café", " 日本"]


def test_events_pass_through_and_metrics_are_removed() -> None:
    out, translator = translate(stream_bytes(events(PIECES)), [])
    blocks = out.split(b"\n\n")[:-1]
    assert [b.split(b"\n")[0] for b in blocks] == [
        b"event: message_start", b"event: content_block_start", *[b"event: content_block_delta"] * 4,
        b"event: content_block_stop", b"event: message_delta", b"event: message_stop"]
    assert blocks[-1] == b'event: message_stop\ndata: {"type":"message_stop"}'
    assert b"invocationMetrics" not in out
    assert translator.complete and translator.error is None
    assert translator.usage == Usage(input=25, output=42)
    parsed = sdk_events(out)
    text = "".join(e.delta.text for e in parsed if e.type == "content_block_delta")
    assert text == "".join(PIECES)


def test_cache_tokens_counted_once_each() -> None:
    _, translator = translate(stream_bytes(events(PIECES, cache=True)), [])
    assert translator.usage == Usage(input=25, output=42, cache_read=1000, cache_write=200)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=4000), max_size=40))
def test_any_chunking_gives_identical_output(cuts: list[int]) -> None:
    data = stream_bytes(events(PIECES, cache=True))
    whole, _ = translate(data, [])
    split, translator = translate(data, [c % len(data) for c in cuts])
    assert split == whole
    assert translator.usage == Usage(input=25, output=42, cache_read=1000, cache_write=200)


def test_one_byte_at_a_time_and_a_long_answer() -> None:
    data = stream_bytes(events([f" w{i}" for i in range(1200)]))
    whole, _ = translate(data, [])
    bytewise, translator = translate(data, list(range(1, len(data))))
    assert bytewise == whole
    assert translator.complete
    text = "".join(e.delta.text for e in sdk_events(whole) if e.type == "content_block_delta")
    assert text == "".join(f" w{i}" for i in range(1200))


@pytest.mark.parametrize(
    ("exception", "error_type"),
    [("throttlingException", "rate_limit_error"), ("modelStreamErrorException", "api_error"),
     ("internalServerException", "api_error"), ("serviceUnavailableException", "overloaded_error"),
     ("validationException", "invalid_request_error")],
)
def test_exception_frame_mid_stream_is_an_error_event_the_sdk_raises(exception: str, error_type: str) -> None:
    data = stream_bytes(events(PIECES)[:3]) + exception_frame(exception, "Bedrock is unhappy")
    out, translator = translate(data, [])
    last = out.split(b"\n\n")[-2]
    assert last.startswith(b"event: error\ndata: ")
    error = json.loads(last.split(b"data: ", 1)[1])
    assert error["type"] == "error" and error["error"]["type"] == error_type
    assert "Bedrock is unhappy" in error["error"]["message"]
    assert translator.error == exception and not translator.complete
    with pytest.raises(anthropic.APIStatusError, match="Bedrock is unhappy"):
        sdk_events(out)
    assert translator.feed(chunk({"type": "message_stop"})) == b"", "nothing after an error"


def test_corrupt_and_truncated_streams_end_with_an_error_event() -> None:
    data = bytearray(stream_bytes(events(PIECES)))
    data[len(data) // 2] ^= 0xFF
    out, translator = translate(bytes(data), [])
    assert out.split(b"\n\n")[-2].startswith(b"event: error")
    assert translator.error == "stream_corrupt"

    cut = stream_bytes(events(PIECES)[:4])
    out, translator = translate(cut, [])
    assert out.split(b"\n\n")[-2].startswith(b"event: error")
    assert translator.error == "stream_truncated"
    assert translator.usage.input == 25, "what was known before the cut is kept"
    with pytest.raises(anthropic.APIStatusError, match="ended before"):
        sdk_events(out)
