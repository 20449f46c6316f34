"""Bedrock ConverseStream → OpenAI chat.completion.chunk SSE, incrementally.

The real capture is replayed against golden SSE files (whole, byte by byte,
and split at random); streams built with the emulator's frame encoder cover
the other shapes. The produced bytes are read back with the ``openai`` SDK's
own stream parsing (a real client over a mock transport), so "the client
sees this text, these tool calls, this error" is checked the way a client
would see it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionChunk

from bedrock_emulator.eventstream import encode_frame, event_frame, exception_frame
from bedrock_emulator.replies import Reply
from bedrock_emulator.streams import Clock, converse_frames
from extproc.translate import openai_converse
from extproc.translate.openai_converse import ChatRequest, parse_request
from extproc.translate.openai_converse_stream import CORRUPT, TRUNCATED, ConverseStreamToChunks
from extproc.usage import Usage
from tests.paths import BEDROCK_CAPTURES

CAPTURE = BEDROCK_CAPTURES / "converse-stream-tool-use.bin"
GOLDEN = Path(__file__).parent / "golden" / "openai_converse_stream"
MODEL = "sonnet"
COMPLETION_ID = "chatcmpl-7f3c9a1e2b4d4c8e9f0a1b2c3d4e5f60"
CREATED = 1767225600
DONE = b"data: [DONE]\n\n"

COSINE_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "cosine",
            "description": "The cosine of x (radians).",
            "parameters": {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]},
        },
    }
]
CAPTURE_TEXT = (
    'To calculate the cosine of 7, we can use the "cosine" function that is available to us.'
    " Let's use this function to get the result."
)

# Every exception member of the ConverseStream union, and the OpenAI error type it becomes.
STREAM_EXCEPTIONS = {
    "internalServerException": "server_error",
    "modelStreamErrorException": "server_error",
    "validationException": "invalid_request_error",
    "throttlingException": "rate_limit_error",
    "serviceUnavailableException": "server_error",
}


# -- helpers ---------------------------------------------------------------


def _request(*, include_usage: bool = False, **fields: Any) -> ChatRequest:
    body: dict[str, Any] = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "Hi"}], **fields}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    return parse_request(json.dumps(body).encode())


def _translator(request: ChatRequest | None = None) -> ConverseStreamToChunks:
    return ConverseStreamToChunks(request or _request(), model=MODEL, completion_id=COMPLETION_ID, created=CREATED)


def _run(pieces: list[bytes], request: ChatRequest | None = None) -> tuple[list[bytes], ConverseStreamToChunks]:
    """Feed ``pieces`` one by one, then finish; the output of each call (finish's last)."""
    translator = _translator(request)
    outputs = [translator.feed(piece) for piece in pieces]
    outputs.append(translator.finish())
    return outputs, translator


def _translate(body: bytes, request: ChatRequest | None = None) -> tuple[bytes, ConverseStreamToChunks]:
    outputs, translator = _run([body], request)
    return b"".join(outputs), translator


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def _events(sse: bytes) -> list[str]:
    """The ``data`` of each event; every event must be exactly one ``data: ...`` line."""
    assert sse.endswith(b"\n\n"), sse[-200:]
    events = sse[:-2].split(b"\n\n")
    for event in events:
        assert event.startswith(b"data: "), event
        assert b"\n" not in event and b"\r" not in event, event
    return [event[6:].decode("utf-8") for event in events]


def _chunks(sse: bytes) -> list[dict[str, Any]]:
    """Every event but [DONE] parsed, checked compact, and checked by the SDK's model."""
    documents = []
    for data in _events(sse):
        if data == "[DONE]":
            continue
        document = json.loads(data)
        assert data == json.dumps(document, separators=(",", ":"), ensure_ascii=False), "compact UTF-8 JSON"
        if "error" not in document:
            ChatCompletionChunk.model_validate(document)
        documents.append(document)
    return documents


def _sdk_stream(pieces: list[bytes]) -> openai.Stream[ChatCompletionChunk]:
    """The OpenAI SDK's stream over a response whose body arrives as ``pieces``."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=iter(pieces))

    client = openai.OpenAI(
        api_key="sk-test",
        base_url="http://gateway.test/v1",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], stream=True)


@dataclass
class Answer:
    """What a client reassembles from a stream."""

    role: str | None = None
    text: str | None = None
    tool_calls: dict[int, dict[str, str]] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    chunks: int = 0
    error: openai.APIError | None = None


def _read(pieces: list[bytes]) -> Answer:
    """Reassemble a stream with the SDK, as a client does; an APIError is kept, not raised."""
    answer = Answer()
    try:
        for chunk in _sdk_stream(pieces):
            answer.chunks += 1
            assert isinstance(chunk, ChatCompletionChunk)
            assert (chunk.id, chunk.model, chunk.created, chunk.object) == (
                COMPLETION_ID, MODEL, CREATED, "chat.completion.chunk"
            )
            assert answer.finish_reason is None or not chunk.choices, "nothing after the finish chunk but usage"
            if chunk.usage is not None:
                assert not chunk.choices
                answer.usage = chunk.usage.model_dump(exclude_none=True)
            for choice in chunk.choices:
                assert choice.index == 0
                delta = choice.delta
                if delta.role is not None:
                    assert answer.role is None, "the role is sent once"
                    answer.role = delta.role
                if delta.content is not None:
                    answer.text = (answer.text or "") + delta.content
                for call in delta.tool_calls or []:
                    if call.index not in answer.tool_calls:
                        assert call.id and call.type == "function" and call.function and call.function.name
                        answer.tool_calls[call.index] = {"id": call.id, "name": call.function.name, "arguments": ""}
                    else:
                        assert call.id is None and (call.function is None or call.function.name is None)
                    if call.function is not None and call.function.arguments:
                        answer.tool_calls[call.index]["arguments"] += call.function.arguments
                if choice.finish_reason is not None:
                    answer.finish_reason = choice.finish_reason
    except openai.APIError as exc:
        answer.error = exc
    return answer


def _usage_frame(input_tokens: int = 12, output_tokens: int = 34, **extra: int) -> bytes:
    usage = {"inputTokens": input_tokens, "outputTokens": output_tokens,
             "totalTokens": input_tokens + output_tokens + sum(extra.values()), **extra}
    return event_frame("metadata", {"usage": usage, "metrics": {"latencyMs": 321}})


def _text_stream(pieces: list[str], stop_reason: str = "end_turn", metadata: bool = True) -> list[bytes]:
    frames = [event_frame("messageStart", {"role": "assistant"})]
    frames += [event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": p}}) for p in pieces]
    frames.append(event_frame("contentBlockStop", {"contentBlockIndex": 0}))
    frames.append(event_frame("messageStop", {"stopReason": stop_reason}))
    if metadata:
        frames.append(_usage_frame())
    return frames


def _tool_block(index: int, tool_id: str, name: str, fragments: list[str]) -> list[bytes]:
    start = {"toolUse": {"toolUseId": tool_id, "name": name}}
    frames = [event_frame("contentBlockStart", {"contentBlockIndex": index, "start": start})]
    frames += [
        event_frame("contentBlockDelta", {"contentBlockIndex": index, "delta": {"toolUse": {"input": fragment}}})
        for fragment in fragments
    ]
    frames.append(event_frame("contentBlockStop", {"contentBlockIndex": index}))
    return frames


def _text_block(index: int, pieces: list[str]) -> list[bytes]:
    frames = [event_frame("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": p}}) for p in pieces]
    frames.append(event_frame("contentBlockStop", {"contentBlockIndex": index}))
    return frames


def _message(blocks: list[bytes], stop_reason: str) -> list[bytes]:
    return [event_frame("messageStart", {"role": "assistant"}), *blocks,
            event_frame("messageStop", {"stopReason": stop_reason}), _usage_frame()]


# -- the real capture --------------------------------------------------------


def _capture_request(include_usage: bool) -> ChatRequest:
    return _request(include_usage=include_usage, tools=COSINE_TOOLS,
                    messages=[{"role": "user", "content": "What is the cosine of 7?"}])


def _golden(include_usage: bool) -> bytes:
    return (GOLDEN / ("tool_use_include_usage.sse" if include_usage else "tool_use.sse")).read_bytes()


@pytest.mark.parametrize("include_usage", [False, True], ids=["no_usage", "include_usage"])
def test_capture_whole_matches_golden(include_usage: bool) -> None:
    out, translator = _translate(CAPTURE.read_bytes(), _capture_request(include_usage))
    assert out == _golden(include_usage)
    assert translator.usage == Usage(input=386, output=75)
    assert translator.complete and translator.error is None


def test_golden_files_say_what_the_capture_says() -> None:
    """The golden files, read independently of the translator: 17 text deltas, one tool call, usage."""
    for include_usage in (False, True):
        chunks = _chunks(_golden(include_usage))
        assert _events(_golden(include_usage))[-1] == "[DONE]"
        assert chunks[0]["choices"] == [
            {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None, "logprobs": None}
        ]
        texts = [c["choices"][0]["delta"]["content"] for c in chunks[1:]
                 if c["choices"] and "content" in c["choices"][0]["delta"]]
        assert len(texts) == 17 and "".join(texts) == CAPTURE_TEXT
        assert chunks[18]["choices"][0]["delta"] == {"tool_calls": [{
            "index": 0, "id": "tooluse_QklrEHKjRu6Oc4BQUfy7ZQ", "type": "function",
            "function": {"name": "cosine", "arguments": ""},
        }]}
        assert chunks[19]["choices"][0]["delta"] == {
            "tool_calls": [{"index": 0, "function": {"arguments": '{"x": 7}'}}]
        }
        assert chunks[20]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "tool_calls", "logprobs": None}]
        assert all(c["id"] == COMPLETION_ID and c["created"] == CREATED and c["model"] == MODEL for c in chunks)
        if include_usage:
            assert len(chunks) == 22 and chunks[21]["choices"] == []
            assert chunks[21]["usage"] == {"prompt_tokens": 386, "completion_tokens": 75, "total_tokens": 461,
                                           "prompt_tokens_details": {"cached_tokens": 0}}
        else:
            assert len(chunks) == 21 and all("usage" not in c for c in chunks)


@pytest.mark.parametrize("include_usage", [False, True], ids=["no_usage", "include_usage"])
def test_capture_byte_by_byte_matches_golden(include_usage: bool) -> None:
    raw = CAPTURE.read_bytes()
    outputs, translator = _run([raw[i : i + 1] for i in range(len(raw))], _capture_request(include_usage))
    assert b"".join(outputs) == _golden(include_usage)
    assert translator.complete and translator.usage == Usage(input=386, output=75)
    # Incremental: [DONE] leaves with the last byte of the metadata frame, not at finish().
    assert outputs[-2].endswith(DONE) and outputs[-1] == b""


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), include_usage=st.booleans())
def test_capture_random_splits_match_golden(data: st.DataObject, include_usage: bool) -> None:
    raw = CAPTURE.read_bytes()
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(raw)), max_size=40))
    outputs, translator = _run(_split(raw, cuts), _capture_request(include_usage))
    assert b"".join(outputs) == _golden(include_usage)
    assert translator.complete and translator.error is None


@pytest.mark.parametrize("include_usage", [False, True], ids=["no_usage", "include_usage"])
def test_capture_through_the_sdk(include_usage: bool) -> None:
    raw = CAPTURE.read_bytes()
    outputs, _ = _run(_split(raw, list(range(0, len(raw), 97))), _capture_request(include_usage))
    answer = _read(outputs)  # the SDK gets the bytes in the pieces the translator produced them
    assert answer.error is None
    assert answer.role == "assistant"
    assert answer.text == CAPTURE_TEXT
    assert answer.tool_calls == {0: {"id": "tooluse_QklrEHKjRu6Oc4BQUfy7ZQ", "name": "cosine", "arguments": '{"x": 7}'}}
    assert answer.finish_reason == "tool_calls"
    if include_usage:
        assert answer.usage == {"prompt_tokens": 386, "completion_tokens": 75, "total_tokens": 461,
                                "prompt_tokens_details": {"cached_tokens": 0}}
    else:
        assert answer.usage is None


# -- streams built with the emulator's encoder ---------------------------------


def test_text_only_from_the_emulator() -> None:
    reply = Reply("msg_1", "Bonjour, ça va ? Très bien, merci — et toi ? 🙂 \"quoted\" and \\ back", None,
                  "end_turn", None, input_tokens=21, output_tokens=17)
    frames = list(converse_frames(reply, Clock()))
    out, translator = _translate(b"".join(frames), _request(include_usage=True))
    answer = _read([out])
    assert answer.error is None and answer.text == reply.text and answer.tool_calls == {}
    assert answer.finish_reason == "stop"
    assert answer.usage == {"prompt_tokens": 21, "completion_tokens": 17, "total_tokens": 38,
                            "prompt_tokens_details": {"cached_tokens": 0}}
    assert translator.usage == Usage(input=21, output=17) and translator.complete
    assert "ça va" in out.decode() and b"\\u" not in out, "non-ASCII text is sent as UTF-8, not escaped"
    _chunks(out)


def test_each_frame_leaves_as_soon_as_it_is_complete() -> None:
    frames = _text_stream(["one", " two", " three"])
    translator = _translator(_request(include_usage=True))
    outputs = []
    for frame in frames:
        outputs.append(translator.feed(frame[:-1]))  # all but the last byte: nothing yet
        assert outputs[-1] == b""
        outputs.append(translator.feed(frame[-1:]))
    role, one, two, three, stop, finish, metadata = outputs[1::2]
    assert [c["choices"][0]["delta"] for c in _chunks(role)] == [{"role": "assistant", "content": ""}]
    assert [c["choices"][0]["delta"] for c in _chunks(one + two + three)] == [
        {"content": "one"}, {"content": " two"}, {"content": " three"}]
    assert stop == b""  # contentBlockStop says nothing to an OpenAI client
    assert _chunks(finish)[0]["choices"][0]["finish_reason"] == "stop"
    assert metadata.endswith(DONE) and _chunks(metadata)[0]["usage"]["completion_tokens"] == 34
    assert translator.finish() == b""


def test_long_answer() -> None:
    rng = random.Random(1234)
    words = ["alpha", "β", "γάμμα", "日本語", "🚀", "\"q\"", "back\\slash", "new\nline", "tab\t", "</script>",
             "\u2028"]
    pieces = [" " + rng.choice(words) for _ in range(1500)]
    raw = b"".join(_text_stream(pieces, stop_reason="max_tokens"))
    cuts = [rng.randrange(len(raw)) for _ in range(400)]
    outputs, translator = _run(_split(raw, cuts), _request(include_usage=True))
    out = b"".join(outputs)
    contents = [c for c in _chunks(out) if c["choices"] and "content" in c["choices"][0]["delta"]]
    assert len(contents) == 1 + 1500  # the role chunk's "" and one chunk per delta
    answer = _read(outputs)
    assert answer.error is None and answer.text == "".join(pieces)
    assert answer.finish_reason == "length"
    assert translator.complete and translator.usage == Usage(input=12, output=34)


def test_two_tool_calls() -> None:
    frames = _message(
        [
            *_text_block(0, ["Let me look ", "both up."]),
            *_tool_block(1, "tooluse_first", "get_weather", ["", '{"city": ', '"Paris"}']),
            *_tool_block(2, "tooluse_second", "get_time", ['{"zone":', ' "Europe/Par', 'is"}']),
        ],
        "tool_use",
    )
    outputs, translator = _run(frames, _request(tools=[
        {"type": "function", "function": {"name": "get_weather"}},
        {"type": "function", "function": {"name": "get_time"}},
    ]))
    answer = _read(outputs)
    assert answer.error is None
    assert answer.text == "Let me look both up."
    assert answer.tool_calls == {
        0: {"id": "tooluse_first", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        1: {"id": "tooluse_second", "name": "get_time", "arguments": '{"zone": "Europe/Paris"}'},
    }
    assert answer.finish_reason == "tool_calls"
    calls = [c["choices"][0]["delta"]["tool_calls"] for c in _chunks(b"".join(outputs))
             if c["choices"] and "tool_calls" in c["choices"][0]["delta"]]
    assert [call[0]["index"] for call in calls] == [0, 0, 0, 1, 1, 1, 1]  # the empty fragment is not sent
    assert calls[3] == [{"index": 1, "id": "tooluse_second", "type": "function",
                         "function": {"name": "get_time", "arguments": ""}}]
    assert translator.complete


@pytest.mark.parametrize(
    ("response_format", "tool_name"),
    [
        ({"type": "json_object"}, openai_converse.JSON_TOOL_NAME),
        ({"type": "json_schema", "json_schema": {"name": "weather", "schema": {"type": "object"}}}, "weather"),
        ({"type": "json_schema", "json_schema": {"schema": {"type": "object"}}}, openai_converse.JSON_TOOL_NAME),
    ],
    ids=["json_object", "json_schema_named", "json_schema_unnamed"],
)
def test_json_response_format(response_format: dict[str, Any], tool_name: str) -> None:
    fragments = ['{"city": "Par', 'is", "temp', '": 21, "sky": "☀"}']
    frames = _message(
        [*_text_block(0, ["Here is the JSON:"]), *_tool_block(1, "tooluse_json", tool_name, ["", *fragments])],
        "tool_use",
    )
    outputs, translator = _run(frames, _request(response_format=response_format))
    answer = _read(outputs)
    assert answer.error is None
    assert answer.text == "".join(fragments), "the forced tool's input is the content, the text around it is not"
    assert json.loads(answer.text) == {"city": "Paris", "temp": 21, "sky": "☀"}
    assert answer.tool_calls == {}
    assert answer.finish_reason == "stop"
    assert b"tool_calls" not in b"".join(outputs)
    assert translator.complete


def test_json_response_format_answered_in_text() -> None:
    """The model wrote text and never called the JSON tool: the text is the answer, sent at messageStop."""
    frames = _message(_text_block(0, ['{"a":', " 1}"]), "end_turn")
    outputs, _ = _run(frames, _request(response_format={"type": "json_object"}))
    answer = _read(outputs)
    assert answer.text == '{"a": 1}' and answer.finish_reason == "stop"
    contents = [c["choices"][0]["delta"]["content"] for c in _chunks(b"".join(outputs))
                if c["choices"] and "content" in c["choices"][0]["delta"]]
    assert contents == ["", '{"a": 1}']


# The same Converse blocks, streamed and not: the client must end up with the same answer.
SAME_ANSWER_CASES = {
    "text": ({}, [{"text": "Hello there."}], "end_turn"),
    "text_and_tool": ({"tools": COSINE_TOOLS}, [{"text": "Calling."}, {"toolUse": {
        "toolUseId": "tooluse_a", "name": "cosine", "input": {"x": 7}}}], "tool_use"),
    "json_tool": ({"response_format": {"type": "json_object"}}, [{"text": "ignored"}, {"toolUse": {
        "toolUseId": "tooluse_j", "name": "json_response", "input": {"k": [1, 2]}}}], "tool_use"),
    "json_tool_twice": ({"response_format": {"type": "json_object"}}, [
        {"toolUse": {"toolUseId": "tooluse_j1", "name": "json_response", "input": {"k": 1}}},
        {"toolUse": {"toolUseId": "tooluse_j2", "name": "json_response", "input": {"k": 2}}}], "tool_use"),
    "json_text_only": ({"response_format": {"type": "json_object"}}, [{"text": "{}"}], "end_turn"),
    "guardrail": ({}, [{"text": "Sorry"}], "guardrail_intervened"),
    "unknown_stop_reason": ({}, [{"text": "Hm"}], "a_new_reason"),
}


@pytest.mark.parametrize("name", SAME_ANSWER_CASES)
def test_same_answer_as_the_non_streaming_translator(name: str) -> None:
    fields, blocks, stop_reason = SAME_ANSWER_CASES[name]
    frames: list[bytes] = []
    for index, block in enumerate(blocks):
        if "text" in block:
            frames += _text_block(index, [block["text"][:3], block["text"][3:]])
        else:
            use = block["toolUse"]
            document = json.dumps(use["input"])
            frames += _tool_block(index, use["toolUseId"], use["name"], [document[:4], document[4:]])
    request = _request(include_usage=True, **fields)
    answer = _read(_run(_message(frames, stop_reason), request)[0])
    converse = {"output": {"message": {"role": "assistant", "content": blocks}}, "stopReason": stop_reason,
                "usage": {"inputTokens": 12, "outputTokens": 34, "totalTokens": 46}}
    body, usage = openai_converse.from_converse_response(
        json.dumps(converse).encode(), request=request, model=MODEL, completion_id=COMPLETION_ID, created=CREATED)
    whole = json.loads(body)
    message = whole["choices"][0]["message"]
    assert answer.error is None
    assert answer.text == message["content"]
    assert [answer.tool_calls[i] for i in sorted(answer.tool_calls)] == [
        {"id": c["id"], "name": c["function"]["name"], "arguments": c["function"]["arguments"]}
        for c in message.get("tool_calls", [])
    ]
    assert answer.finish_reason == whole["choices"][0]["finish_reason"]
    assert answer.usage == whole["usage"]


@pytest.mark.parametrize("stop_reason", [*sorted(openai_converse.FINISH_REASONS), "a_future_reason"])
def test_finish_reasons(stop_reason: str) -> None:
    blocks = [*_text_block(0, ["x"]), *_tool_block(1, "tooluse_f", "cosine", ['{"x": 1}'])]
    out, _ = _translate(b"".join(_message(blocks, stop_reason)), _request(tools=COSINE_TOOLS))
    last = _chunks(out)[-1]
    expected = openai_converse.FINISH_REASONS.get(stop_reason, "stop")
    assert last["choices"] == [{"index": 0, "delta": {}, "finish_reason": expected, "logprobs": None}]


def test_tool_use_without_a_tool_call_finishes_with_stop() -> None:
    out, _ = _translate(b"".join(_text_stream(["x"], stop_reason="tool_use")))
    assert _chunks(out)[-1]["choices"][0]["finish_reason"] == "stop"


def test_reasoning_content_is_not_sent() -> None:
    frames = _message(
        [
            event_frame("contentBlockDelta", {"contentBlockIndex": 0,
                                              "delta": {"reasoningContent": {"text": "secret thoughts"}}}),
            event_frame("contentBlockDelta", {"contentBlockIndex": 0,
                                              "delta": {"reasoningContent": {"signature": "c2lnbmF0dXJl"}}}),
            event_frame("contentBlockStop", {"contentBlockIndex": 0}),
            *_text_block(1, ["The answer."]),
        ],
        "end_turn",
    )
    outputs, translator = _run(frames)
    out = b"".join(outputs)
    assert b"secret" not in out and b"c2lnbmF0dXJl" not in out
    answer = _read(outputs)
    assert answer.text == "The answer." and answer.finish_reason == "stop" and translator.complete


def test_cache_tokens_in_usage_counted_once() -> None:
    frames = _text_stream(["Done."], metadata=False)
    frames.append(_usage_frame(11, 7, cacheReadInputTokens=1000, cacheWriteInputTokens=150))
    frames.append(_usage_frame(999, 999))  # a second metadata event must not count again
    out, translator = _translate(b"".join(frames), _request(include_usage=True))
    assert translator.usage == Usage(input=11, output=7, cache_read=1000, cache_write=150)
    usage_chunks = [c for c in _chunks(out) if "usage" in c]
    assert usage_chunks == [{"id": COMPLETION_ID, "object": "chat.completion.chunk", "created": CREATED,
                             "model": MODEL, "choices": [],
                             "usage": {"prompt_tokens": 1161, "completion_tokens": 7, "total_tokens": 1168,
                                       "prompt_tokens_details": {"cached_tokens": 1000}}}]
    assert out.endswith(DONE) and out.count(DONE) == 1


def test_metadata_twice_before_message_stop_counted_once() -> None:
    frames = _text_stream(["a"], metadata=False)
    frames[-1:-1] = [_usage_frame(5, 6), _usage_frame(500, 600)]
    out, translator = _translate(b"".join(frames), _request(include_usage=True))
    assert translator.usage == Usage(input=5, output=6)
    assert [c["usage"]["total_tokens"] for c in _chunks(out) if "usage" in c] == [11]


def test_metadata_before_message_stop() -> None:
    frames = _text_stream(["a"], metadata=False)
    frames.insert(-1, _usage_frame(5, 6))
    out, translator = _translate(b"".join(frames), _request(include_usage=True))
    chunks = _chunks(out)
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["prompt_tokens"] == 5 and out.endswith(DONE)
    assert translator.complete


def test_unknown_events_are_ignored() -> None:
    frames = _text_stream(["kept"])
    frames.insert(2, event_frame("someFutureEvent", {"contentBlockIndex": 0, "delta": {"text": "NOT THIS"}}))
    frames.insert(2, encode_frame({":message-type": "something-else", ":event-type": "contentBlockDelta"},
                                  b'{"contentBlockIndex":0,"delta":{"text":"NOR THIS"}}'))
    out, translator = _translate(b"".join(frames))
    assert b"NOT THIS" not in out and b"NOR THIS" not in out
    assert _read([out]).text == "kept" and translator.complete


# -- errors ----------------------------------------------------------------


@pytest.mark.parametrize("member", sorted(STREAM_EXCEPTIONS))
def test_exception_mid_stream(member: str) -> None:
    name = member[0].upper() + member[1:]
    frames = _text_stream(["Partial ", "answer"])
    frames = [*frames[:3], exception_frame(member, "Something went wrong upstream."), *frames[3:]]
    translator = _translator(_request(include_usage=True))
    outputs = [translator.feed(frame) for frame in frames]
    assert outputs[4:] == [b""] * (len(frames) - 4), "nothing after the error event"
    assert translator.finish() == b"" and translator.finish() == b""
    assert translator.feed(b"more") == b""
    assert translator.error == name and not translator.complete
    out = b"".join(outputs)
    assert DONE not in out
    error_event = json.loads(_events(out)[-1])
    assert error_event == {"error": {"message": f"{name}: Something went wrong upstream.",
                                     "type": STREAM_EXCEPTIONS[member], "param": None, "code": name}}
    answer = _read(outputs)
    assert answer.text == "Partial answer", "what came before the error reached the client"
    assert answer.finish_reason is None
    assert isinstance(answer.error, openai.APIError)
    assert answer.error.code == name and answer.error.type == STREAM_EXCEPTIONS[member]
    assert "Something went wrong upstream." in answer.error.message


def test_error_message_frame() -> None:
    frames = _text_stream(["Hi"])
    error = encode_frame({":message-type": "error", ":error-code": "InternalFailure",
                          ":error-message": "An internal error occurred"}, b"")
    out, translator = _translate(b"".join([*frames[:2], error, *frames[2:]]))
    assert translator.error == "InternalFailure"
    answer = _read([out])
    assert answer.error is not None and answer.error.code == "InternalFailure"
    assert "An internal error occurred" in answer.error.message


def _corrupt(frame: bytes, offset: int) -> bytes:
    broken = bytearray(frame)
    broken[offset] ^= 0x01
    return bytes(broken)


@pytest.mark.parametrize("where", ["payload", "prelude"])
@pytest.mark.parametrize("feeding", ["whole", "frame_by_frame", "byte_by_byte"])
def test_corrupt_crc(where: str, feeding: str) -> None:
    frames = _text_stream(["Good ", "so far", " never seen"])
    bad = 2  # the second text delta (frame 0 is messageStart)
    frames[bad] = _corrupt(frames[bad], len(frames[bad]) - 10 if where == "payload" else 2)
    raw = b"".join(frames)
    pieces = {"whole": [raw], "frame_by_frame": frames, "byte_by_byte": [raw[i : i + 1] for i in range(len(raw))]}
    outputs, translator = _run(pieces[feeding], _request(include_usage=True))
    assert outputs[-1] == b"", "finish() sends nothing after the error"
    out = b"".join(outputs)
    assert translator.error == CORRUPT and not translator.complete
    assert DONE not in out and b"so far" not in out and b"never seen" not in out
    error = json.loads(_events(out)[-1])["error"]
    assert error["code"] == CORRUPT and error["type"] == "server_error" and "CRC" in error["message"]
    answer = _read(outputs)
    assert answer.text == "Good ", "frames before the corruption are delivered, even from the same chunk"
    assert isinstance(answer.error, openai.APIError) and answer.error.code == CORRUPT


def test_corruption_after_the_end_in_the_same_chunk() -> None:
    """An exception frame, or a whole answer, then garbage, all in one chunk: the first end wins."""
    garbage = b"\x00\x00\x00\x20" + b"\xff" * 40
    frames = _text_stream(["Hi"])
    out, translator = _translate(b"".join([*frames[:2], exception_frame("throttlingException", "Slow down."), garbage]))
    assert translator.error == "ThrottlingException"
    assert [json.loads(e)["error"]["code"] for e in _events(out) if "error" in json.loads(e)] == ["ThrottlingException"]
    out, translator = _translate(b"".join([*frames, garbage]))
    assert translator.complete and translator.error is None
    assert out.endswith(DONE) and b"error" not in out


def test_payload_that_is_not_json_is_corrupt() -> None:
    frames = _text_stream(["ok"])
    frames[1] = encode_frame({":message-type": "event", ":event-type": "contentBlockDelta"}, b'{"delta": {"te')
    out, translator = _translate(b"".join(frames))
    assert translator.error == CORRUPT
    assert json.loads(_events(out)[-1])["error"]["code"] == CORRUPT and DONE not in out


def _truncations() -> list[Any]:
    frames = _text_stream(["Half ", "an answer"])
    at_boundary = b"".join(frames[:3])
    inside_frame = at_boundary + frames[3][:20]
    inside_metadata = b"".join(frames[:-1]) + frames[-1][:-1]  # after messageStop
    return [
        pytest.param(b"", "", None, id="empty_body"),
        pytest.param(at_boundary, "Half an answer", None, id="at_frame_boundary"),
        pytest.param(inside_frame, "Half an answer", None, id="inside_a_frame"),
        pytest.param(inside_metadata, "Half an answer", "stop", id="inside_metadata"),
    ]


@pytest.mark.parametrize(("body", "text", "finish_reason"), _truncations())
def test_truncated(body: bytes, text: str, finish_reason: str | None) -> None:
    outputs, translator = _run([body], _request(include_usage=True))
    out = b"".join(outputs)
    assert translator.error == TRUNCATED and not translator.complete
    assert DONE not in out
    error = json.loads(_events(outputs[-1])[-1])["error"]
    assert error["code"] == TRUNCATED and "ended early" in error["message"]
    assert translator.finish() == b""
    answer = _read(outputs)
    assert (answer.text or "") == text and answer.finish_reason == finish_reason
    assert isinstance(answer.error, openai.APIError) and answer.error.code == TRUNCATED


@pytest.mark.parametrize("include_usage", [False, True], ids=["no_usage", "include_usage"])
def test_clean_end_without_metadata(include_usage: bool) -> None:
    frames = _text_stream(["All ", "there."], metadata=False)
    outputs, translator = _run(frames, _request(include_usage=include_usage))
    assert outputs[-1] == DONE, "[DONE] is sent by finish()"
    assert DONE not in b"".join(outputs[:-1])
    assert translator.complete and translator.error is None and translator.usage == Usage()
    answer = _read(outputs)
    assert answer.text == "All there." and answer.finish_reason == "stop"
    assert answer.usage is None, "no usage chunk when Bedrock never said the usage"
    assert translator.finish() == b""


def test_finish_twice_and_feed_after_the_end() -> None:
    raw = b"".join(_text_stream(["x"]))
    translator = _translator()
    assert translator.feed(raw).endswith(DONE)
    assert translator.finish() == b""
    assert translator.finish() == b""
    assert translator.feed(raw) == b""
    assert translator.complete and translator.error is None
