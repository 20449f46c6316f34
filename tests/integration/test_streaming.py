"""Streaming through real Envoy: Bedrock event streams become Anthropic and OpenAI SSE, live."""

from __future__ import annotations

import json
import time

import anthropic
import httpx
import openai
import pytest

from devstack import Stack
from tests.integration.conftest import Emulator, Keys, record_of

PROMPT = "Tell me about streaming gateways please"


def anthropic_client(stack: Stack, keys: Keys) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.url, api_key=keys.alpha, max_retries=0, timeout=30)


def openai_client(stack: Stack, keys: Keys) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=keys.alpha, max_retries=0, timeout=30)


def test_anthropic_sdk_stream(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    with anthropic_client(stack, keys).messages.stream(
        model="claude-haiku-4-5", max_tokens=200, messages=[{"role": "user", "content": PROMPT}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert PROMPT[:40] in text
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0
    (seen,) = emulator.requests()
    assert seen["path"] == "/model/us.anthropic.claude-haiku-4-5-20251001-v1%3A0/invoke-with-response-stream"
    assert seen["signature_valid"] is True and "x-api-key" not in seen["headers"]
    assert "stream" not in json.loads(seen["body"])


def test_sse_headers_and_no_bedrock_metrics(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    with httpx.stream("POST", f"{stack.url}/v1/messages", headers={"x-api-key": keys.alpha}, json={
        "model": "haiku", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "hi"}],
    }) as response:
        body = response.read()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "content-length" not in response.headers
    assert b"event: message_start\ndata: " in body and body.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    assert b"invocationMetrics" not in body and b":event-type" not in body


def test_tokens_reach_the_client_as_they_are_produced(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    """With 300 ms between upstream frames, the first text arrives long before the last."""
    started = time.monotonic()
    arrivals = []
    with anthropic_client(stack, keys).messages.stream(
        model="haiku", max_tokens=200,
        messages=[{"role": "user", "content": "slowly now [[emulator:slow=300]] one two three four five six"}],
    ) as stream:
        for _ in stream.text_stream:
            arrivals.append(time.monotonic() - started)
    assert len(arrivals) >= 5
    assert arrivals[-1] - arrivals[0] > 1.0, arrivals
    assert arrivals[0] < arrivals[-1] / 2, arrivals


def test_error_before_the_stream_keeps_its_status(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    with pytest.raises(anthropic.RateLimitError):
        with anthropic_client(stack, keys).messages.stream(
            model="haiku", max_tokens=50,
            messages=[{"role": "user", "content": "x [[emulator:error=ThrottlingException]]"}],
        ) as stream:
            stream.get_final_message()
    with pytest.raises(openai.RateLimitError):
        list(openai_client(stack, keys).chat.completions.create(
            model="haiku", stream=True,
            messages=[{"role": "user", "content": "x [[emulator:error=ThrottlingException]]"}]))


def test_exception_mid_stream_ends_the_stream_and_the_sdks_raise(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    with pytest.raises(anthropic.APIStatusError, match="ThrottlingException"):
        with anthropic_client(stack, keys).messages.stream(
            model="haiku", max_tokens=200,
            messages=[{"role": "user", "content": f"{PROMPT} [[emulator:stream-exception=ThrottlingException]]"}],
        ) as stream:
            for _ in stream.text_stream:
                pass
    with pytest.raises(openai.APIError, match="ThrottlingException"):
        for _ in openai_client(stack, keys).chat.completions.create(
            model="haiku", stream=True,
            messages=[{"role": "user", "content": f"{PROMPT} [[emulator:stream-exception=ThrottlingException]]"}],
        ):
            pass


def test_upstream_dropping_the_connection_never_hangs_the_client(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    """Envoy can only reset the client's stream (no filter may write after an upstream reset):
    the SDK sees the cut and raises instead of waiting."""
    started = time.monotonic()
    with pytest.raises(Exception) as info:
        with anthropic_client(stack, keys).messages.stream(
            model="haiku", max_tokens=200,
            messages=[{"role": "user", "content": f"{PROMPT} [[emulator:drop]]"}],
        ) as stream:
            for _ in stream.text_stream:
                pass
    assert isinstance(info.value, anthropic.APIError) or "incomplete chunked read" in str(info.value), info.value
    assert time.monotonic() - started < 20


def test_openai_sdk_stream_with_usage(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    chunks = list(openai_client(stack, keys).chat.completions.create(
        model="haiku", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": PROMPT}]))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert PROMPT[:40] in text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens > 0 and chunks[-1].usage.completion_tokens > 0
    (seen,) = emulator.requests()
    assert seen["path"] == "/model/us.anthropic.claude-haiku-4-5-20251001-v1%3A0/converse-stream"


def test_openai_stream_tool_call(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    tools = [{"type": "function", "function": {"name": "lookup_order", "parameters": {
        "type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}}}]
    chunks = list(openai_client(stack, keys).chat.completions.create(
        model="haiku", stream=True, tools=tools,
        messages=[{"role": "user", "content": "Where is my order? [[emulator:tool]]"}]))
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].id and calls[0].function.name == "lookup_order" and calls[0].index == 0
    arguments = "".join(tc.function.arguments or "" for tc in calls)
    assert json.loads(arguments) == {"order_id": "emulated"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


def test_usage_is_recorded_once_and_a_disconnect_is_marked_partial(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    with anthropic_client(stack, keys).messages.stream(
        model="haiku", max_tokens=200, messages=[{"role": "user", "content": "count me once please"}],
    ) as stream:
        final = stream.get_final_message()
        complete_id = stream.response.headers["x-request-id"]
    with httpx.stream("POST", f"{stack.url}/v1/messages", headers={"x-api-key": keys.alpha}, json={
        "model": "haiku", "max_tokens": 200, "stream": True,
        "messages": [{"role": "user", "content": "I will leave early [[emulator:slow=400]] a b c d e f g h"}],
    }) as response:
        request_id = response.headers["x-request-id"]
        for line in response.iter_lines():
            if line.startswith("event: content_block_delta"):
                break  # the client goes away mid-stream
    record = record_of(stack, request_id)
    assert record["partial"] is True
    assert record["tokens"]["input"] > 0, "what was known before the disconnect is recorded"
    complete = record_of(stack, complete_id)  # exactly one record
    assert complete["partial"] is False and complete["status"] == 200
    assert complete["tokens"]["input"] == final.usage.input_tokens
    assert complete["tokens"]["output"] == final.usage.output_tokens


def test_a_long_streamed_answer_arrives_whole(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    """1,000+ deltas through Envoy in STREAMED mode, however the chunks fall."""
    with anthropic_client(stack, keys).messages.stream(
        model="haiku", max_tokens=20000, messages=[{"role": "user", "content": "long [[emulator:words=3300]]"}],
    ) as stream:
        deltas = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(deltas) >= 1000
    assert "".join(deltas).endswith(" word3299")
    assert final.usage.output_tokens > 3300

    chunks = list(openai_client(stack, keys).chat.completions.create(
        model="haiku", stream=True, max_tokens=20000,
        messages=[{"role": "user", "content": "long [[emulator:words=3300]]"}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) >= 1000 and text.endswith(" word3299")


def test_cache_tokens_are_reported_separately_on_every_path(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    prompt = "cached system prompt [[emulator:cache=1000,200]]"
    message = anthropic_client(stack, keys).messages.create(
        model="haiku", max_tokens=100, messages=[{"role": "user", "content": prompt}])
    assert (message.usage.cache_read_input_tokens, message.usage.cache_creation_input_tokens) == (1000, 200)
    with anthropic_client(stack, keys).messages.stream(
        model="haiku", max_tokens=100, messages=[{"role": "user", "content": prompt}]) as stream:
        streamed = stream.get_final_message()
        stream_id = stream.response.headers["x-request-id"]
    assert streamed.usage.cache_read_input_tokens == 1000
    completion = openai_client(stack, keys).chat.completions.create(
        model="haiku", messages=[{"role": "user", "content": prompt}])
    assert completion.usage.prompt_tokens_details.cached_tokens == 1000
    assert completion.usage.prompt_tokens >= 1200
    record = record_of(stack, stream_id)
    assert record["tokens"]["cache_read"] == 1000 and record["tokens"]["cache_write"] == 200
    assert record["tokens"]["input"] == streamed.usage.input_tokens
