"""The running emulator through boto3's real bedrock-runtime client: botocore signs and parses."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from typing import Any

import pytest
from botocore.exceptions import ClientError, EventStreamError

from .emulator_support import (
    DEV_KEY,
    HAIKU,
    HAIKU_BASE,
    STS_KEY,
    invoke_body,
    user,
)

WEATHER_TOOL_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def converse_text(response: dict[str, Any]) -> str:
    return "".join(block.get("text", "") for block in response["output"]["message"]["content"])


def invoke(client: Any, body: dict[str, Any], model_id: str = HAIKU) -> tuple[dict[str, Any], dict[str, str]]:
    response = client.invoke_model(modelId=model_id, body=json.dumps(body), contentType="application/json")
    return json.loads(response["body"].read()), response["ResponseMetadata"]["HTTPHeaders"]


def stream_events(client: Any, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.invoke_model_with_response_stream(modelId=HAIKU, body=json.dumps(body))
    assert response["contentType"] == "application/json"
    return [json.loads(event["chunk"]["bytes"]) for event in response["body"]]


def error_of(call: Callable[..., Any], *args: Any, **kwargs: Any) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    return caught.value


# -- Converse and ConverseStream ------------------------------------------------------------------------


def test_converse(client: Any) -> None:
    response = client.converse(
        modelId=HAIKU,
        messages=user("What is the tallest mountain?"),
        system=[{"text": "Answer briefly."}],
        inferenceConfig={"maxTokens": 200, "temperature": 0.2},
    )
    assert (
        converse_text(response)
        == "Emulated reply to: What is the tallest mountain? (a deterministic answer from the Bedrock emulator)"
    )
    assert response["output"]["message"]["role"] == "assistant"
    assert response["stopReason"] == "end_turn"
    usage = response["usage"]
    assert usage["inputTokens"] > 0 and usage["outputTokens"] > 0
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]
    assert isinstance(response["metrics"]["latencyMs"], int)


def test_converse_stream_matches_converse(client: Any) -> None:
    kwargs = {"modelId": HAIKU, "messages": user("Stream me a haiku about streams")}
    whole = client.converse(**kwargs)
    events = list(client.converse_stream(**kwargs)["stream"])
    kinds = [next(iter(event)) for event in events]
    assert kinds[0] == "messageStart" and kinds[-2:] == ["messageStop", "metadata"]
    deltas = [e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e]
    assert len(deltas) >= 3
    assert "".join(deltas) == converse_text(whole)
    assert events[-2]["messageStop"]["stopReason"] == "end_turn"
    assert events[-1]["metadata"]["usage"] == whole["usage"]
    assert "latencyMs" in events[-1]["metadata"]["metrics"]


def test_converse_on_a_non_anthropic_model(client: Any) -> None:
    for model_id in ("amazon.nova-lite-v1:0", "us.amazon.nova-lite-v1:0"):
        assert converse_text(client.converse(modelId=model_id, messages=user("hi nova"))).startswith(
            "Emulated reply to: hi nova"
        )


def test_converse_max_tokens_and_stop_sequences(client: Any) -> None:
    short = client.converse(modelId=HAIKU, messages=user("hello"), inferenceConfig={"maxTokens": 2})
    assert (short["stopReason"], short["usage"]["outputTokens"], converse_text(short)) == ("max_tokens", 2, "Emulated")
    stopped = client.converse(modelId=HAIKU, messages=user("say END now"), inferenceConfig={"stopSequences": ["END"]})
    assert (stopped["stopReason"], converse_text(stopped)) == ("stop_sequence", "Emulated reply to: say ")


def test_converse_tool_use(client: Any) -> None:
    tool_config = {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "description": "weather",
                    "inputSchema": {"json": WEATHER_TOOL_SCHEMA},
                }
            }
        ]
    }
    response = client.converse(
        modelId=HAIKU, messages=user("Weather in Paris? [[emulator:tool]]"), toolConfig=tool_config
    )
    assert response["stopReason"] == "tool_use"
    tool_use = response["output"]["message"]["content"][-1]["toolUse"]
    assert tool_use["name"] == "get_weather" and tool_use["input"] == {"city": "emulated"}
    assert tool_use["toolUseId"].startswith("tooluse_")

    # The tool result goes back, and the conversation carries on.
    follow_up = [
        *user("Weather in Paris? [[emulator:tool]]"),
        response["output"]["message"],
        {
            "role": "user",
            "content": [{"toolResult": {"toolUseId": tool_use["toolUseId"], "content": [{"text": "sunny"}]}}],
        },
    ]
    final = client.converse(modelId=HAIKU, messages=follow_up, toolConfig=tool_config)
    assert (final["stopReason"], converse_text(final)) == (
        "end_turn",
        "Emulated reply to: sunny (a deterministic answer from the Bedrock emulator)",
    )

    # Without a toolConfig the marker is just text.
    assert client.converse(modelId=HAIKU, messages=user("[[emulator:tool]]"))["stopReason"] == "end_turn"


def test_converse_stream_tool_use(client: Any) -> None:
    tool_config = {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": WEATHER_TOOL_SCHEMA}}}]}
    events = list(
        client.converse_stream(modelId=HAIKU, messages=user("[[emulator:tool]]"), toolConfig=tool_config)["stream"]
    )
    start = next(e["contentBlockStart"] for e in events if "contentBlockStart" in e)
    assert start["start"]["toolUse"]["name"] == "get_weather" and start["contentBlockIndex"] == 1
    fragments = [
        e["contentBlockDelta"]["delta"]["toolUse"]["input"]
        for e in events
        if "toolUse" in e.get("contentBlockDelta", {}).get("delta", {})
    ]
    assert len(fragments) == 2 and json.loads("".join(fragments)) == {"city": "emulated"}
    assert next(e["messageStop"] for e in events if "messageStop" in e)["stopReason"] == "tool_use"


# -- InvokeModel and its stream ---------------------------------------------------------------------------


def test_invoke_model(client: Any) -> None:
    message, headers = invoke(client, invoke_body("Name three colours"))
    assert message["id"].startswith("msg_bdrk_")
    assert (message["type"], message["role"], message["model"]) == ("message", "assistant", "claude-haiku-4-5-20251001")
    assert message["content"] == [
        {
            "type": "text",
            "text": "Emulated reply to: Name three colours (a deterministic answer from the Bedrock emulator)",
        }
    ]
    assert (message["stop_reason"], message["stop_sequence"]) == ("end_turn", None)
    usage = message["usage"]
    assert usage["cache_read_input_tokens"] == usage["cache_creation_input_tokens"] == 0
    assert headers["x-amzn-bedrock-input-token-count"] == str(usage["input_tokens"])
    assert headers["x-amzn-bedrock-output-token-count"] == str(usage["output_tokens"])
    assert int(headers["x-amzn-bedrock-invocation-latency"]) >= 0
    assert headers["content-type"] == "application/json" and headers["x-amzn-requestid"]
    again, _ = invoke(client, invoke_body("Name three colours"))
    assert again == message


def test_invoke_model_with_response_stream(client: Any) -> None:
    body = invoke_body("Stream three colours")
    whole, _ = invoke(client, body)
    events = stream_events(client, body)
    types = [event["type"] for event in events]
    assert types[:2] == ["message_start", "content_block_start"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert types.count("content_block_delta") >= 3
    assert (
        events[0]["message"]["id"] == whole["id"]
        and events[0]["message"]["usage"]["input_tokens"] == whole["usage"]["input_tokens"]
    )
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    assert text == whole["content"][0]["text"]
    assert events[-2]["delta"]["stop_reason"] == "end_turn"
    assert events[-2]["usage"]["output_tokens"] == whole["usage"]["output_tokens"]
    metrics = events[-1]["amazon-bedrock-invocationMetrics"]
    assert metrics["inputTokenCount"] == whole["usage"]["input_tokens"]
    assert metrics["outputTokenCount"] == whole["usage"]["output_tokens"]
    assert metrics["invocationLatency"] >= metrics["firstByteLatency"] >= 0


def test_invoke_tool_use_and_streamed_tool_input(client: Any) -> None:
    tools = [{"name": "get_weather", "description": "weather", "input_schema": WEATHER_TOOL_SCHEMA}]
    message, _ = invoke(client, invoke_body("Weather? [[emulator:tool]]", tools=tools))
    assert message["stop_reason"] == "tool_use"
    tool_use = message["content"][-1]
    assert (tool_use["type"], tool_use["name"], tool_use["input"]) == ("tool_use", "get_weather", {"city": "emulated"})
    assert tool_use["id"].startswith("toolu_bdrk_")

    events = stream_events(client, invoke_body("Weather? [[emulator:tool]]", tools=tools))
    start = next(e for e in events if e["type"] == "content_block_start" and e["content_block"]["type"] == "tool_use")
    assert start["content_block"]["id"] == tool_use["id"]
    partial = "".join(
        e["delta"]["partial_json"] for e in events if e.get("delta", {}).get("type") == "input_json_delta"
    )
    assert json.loads(partial) == {"city": "emulated"}
    assert next(e for e in events if e["type"] == "message_delta")["delta"]["stop_reason"] == "tool_use"


def test_invoke_max_tokens(client: Any) -> None:
    message, _ = invoke(client, invoke_body("hello", max_tokens=1))
    assert (message["stop_reason"], message["usage"]["output_tokens"], message["content"][0]["text"]) == (
        "max_tokens",
        1,
        "Emul",
    )


# -- CountTokens ------------------------------------------------------------------------------------------------


def test_count_tokens_both_forms_agree_with_usage(client: Any) -> None:
    body = invoke_body("How many tokens is this sentence, exactly?", system="Be exact.")
    message, _ = invoke(client, body)
    counted = client.count_tokens(modelId=HAIKU_BASE, input={"invokeModel": {"body": json.dumps(body)}})
    assert counted["inputTokens"] == message["usage"]["input_tokens"]

    conversation = {"messages": user("How many tokens is this sentence, exactly?"), "system": [{"text": "Be exact."}]}
    via_converse = client.count_tokens(modelId=HAIKU_BASE, input={"converse": conversation})
    assert via_converse["inputTokens"] == client.converse(modelId=HAIKU, **conversation)["usage"]["inputTokens"]
    assert via_converse["inputTokens"] == counted["inputTokens"]


def test_count_tokens_refuses_inference_profiles_and_other_models(client: Any) -> None:
    for model_id, message in (
        (HAIKU, "The provided model identifier is invalid."),
        ("amazon.nova-lite-v1:0", "The provided model doesn't support counting tokens."),
    ):
        error = error_of(client.count_tokens, modelId=model_id, input={"converse": {"messages": user("hi")}})
        assert (error.response["Error"]["Code"], error.response["Error"]["Message"]) == ("ValidationException", message)


# -- errors -------------------------------------------------------------------------------------------------------

ERRORS = [
    ("ValidationException", 400),
    ("ServiceQuotaExceededException", 400),
    ("AccessDeniedException", 403),
    ("ResourceNotFoundException", 404),
    ("ModelTimeoutException", 408),
    ("ModelErrorException", 424),
    ("ThrottlingException", 429),
    ("ModelNotReadyException", 429),
    ("InternalServerException", 500),
    ("ServiceUnavailableException", 503),
]


@pytest.mark.parametrize(("code", "status"), ERRORS)
def test_error_markers_raise_the_bedrock_error(client: Any, code: str, status: int) -> None:
    error = error_of(lambda: client.converse(modelId=HAIKU, messages=user(f"fail [[emulator:error={code}]]")))
    assert error.response["Error"]["Code"] == code
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert error.response["Error"]["Message"]
    assert type(error).__name__ == code  # botocore mapped it to the modelled exception class
    stream_error = error_of(
        lambda: client.invoke_model_with_response_stream(
            modelId=HAIKU, body=json.dumps(invoke_body(f"[[emulator:error={code}]]"))
        )
    )
    assert (stream_error.response["Error"]["Code"], stream_error.response["ResponseMetadata"]["HTTPStatusCode"]) == (
        code,
        status,
    )


def test_use_case_form_message(client: Any) -> None:
    error = error_of(lambda: invoke(client, invoke_body("[[emulator:error=ResourceNotFoundException]]")))
    assert error.response["Error"]["Message"].startswith(
        "Model use case details have not been submitted for this account."
    )


@pytest.mark.parametrize(
    "member",
    [
        "throttlingException",
        "modelStreamErrorException",
        "internalServerException",
        "serviceUnavailableException",
        "validationException",
    ],
)
def test_converse_stream_exception_marker(client: Any, member: str) -> None:
    name = member[0].upper() + member[1:]
    received = []
    with pytest.raises(EventStreamError) as caught:
        for event in client.converse_stream(modelId=HAIKU, messages=user(f"go [[emulator:stream-exception={name}]]"))[
            "stream"
        ]:
            received.append(event)
    assert caught.value.response["Error"]["Code"] == member
    assert caught.value.response["Error"]["Message"]
    assert len(received) == 3 and "messageStart" in received[0]


def test_invoke_stream_exception_marker(client: Any) -> None:
    received = []
    with pytest.raises(EventStreamError) as caught:
        for event in client.invoke_model_with_response_stream(
            modelId=HAIKU, body=json.dumps(invoke_body("[[emulator:stream-exception=ModelTimeoutException]]"))
        )["body"]:
            received.append(json.loads(event["chunk"]["bytes"])["type"])
    assert caught.value.response["Error"]["Code"] == "modelTimeoutException"
    assert received == ["message_start", "content_block_start", "content_block_delta"]


def test_stream_exception_a_stream_cannot_carry_is_refused(client: Any) -> None:
    error = error_of(
        lambda: client.converse_stream(
            modelId=HAIKU, messages=user("[[emulator:stream-exception=ModelTimeoutException]]")
        )
    )
    assert error.response["Error"]["Code"] == "ValidationException"


def test_unknown_model_and_base_model_ids(client: Any) -> None:
    unknown = error_of(lambda: client.converse(modelId="us.anthropic.claude-nonexistent-v1:0", messages=user("hi")))
    assert (unknown.response["Error"]["Code"], unknown.response["Error"]["Message"]) == (
        "ValidationException",
        "The provided model identifier is invalid.",
    )
    for call in (
        lambda: client.converse(modelId=HAIKU_BASE, messages=user("hi")),
        lambda: invoke(client, invoke_body("hi"), model_id=HAIKU_BASE),
    ):
        error = error_of(call)
        assert error.response["Error"]["Code"] == "ValidationException"
        assert error.response["Error"]["Message"] == (
            f"Invocation of model ID {HAIKU_BASE} with on-demand throughput isn\u2019t supported. Retry your request "
            "with the ID or ARN of an inference profile that contains this model."
        )
    nova = error_of(lambda: invoke(client, invoke_body("hi"), model_id="us.amazon.nova-lite-v1:0"))
    assert nova.response["Error"]["Code"] == "ValidationException"


def test_extraneous_key_is_rejected(client: Any) -> None:
    error = error_of(lambda: invoke(client, invoke_body("hi", model="claude-haiku-4-5")))
    assert error.response["Error"]["Code"] == "ValidationException"
    assert error.response["Error"]["Message"] == (
        "Malformed input request: #: extraneous key [model] is not permitted, please reformat your input and try again."
    )


# -- credentials --------------------------------------------------------------------------------------------------


def test_wrong_secret_and_unknown_key(make_client: Callable[..., Any]) -> None:
    wrong_secret = error_of(lambda: make_client(secret="not-the-secret").converse(modelId=HAIKU, messages=user("hi")))
    assert wrong_secret.response["Error"]["Code"] == "InvalidSignatureException"
    assert wrong_secret.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    unknown = error_of(lambda: make_client(key_id="AKIDUNKNOWN000000000").converse(modelId=HAIKU, messages=user("hi")))
    assert unknown.response["Error"]["Code"] == "UnrecognizedClientException"
    assert unknown.response["Error"]["Message"] == "The security token included in the request is invalid."


def test_session_token_credentials(make_client: Callable[..., Any]) -> None:
    key_id, secret, token = STS_KEY
    assert make_client(key_id, secret, token).converse(modelId=HAIKU, messages=user("hi"))["stopReason"] == "end_turn"
    for bad_token in ("wrong-token", None):
        error = error_of(make_client(key_id, secret, bad_token).converse, modelId=HAIKU, messages=user("hi"))
        assert error.response["Error"]["Code"] == "UnrecognizedClientException"
    # The long-term development key must not carry a token either.
    error = error_of(lambda: make_client(DEV_KEY[0], DEV_KEY[1], token).converse(modelId=HAIKU, messages=user("hi")))
    assert error.response["Error"]["Code"] == "UnrecognizedClientException"


# -- timing and faults -----------------------------------------------------------------------------------------


def test_slow_marker_spreads_stream_frames_over_time(client: Any) -> None:
    started = time.monotonic()
    response = client.converse_stream(
        modelId=HAIKU, messages=user("[[emulator:slow=300]] hi"), inferenceConfig={"maxTokens": 8}
    )
    arrivals = [time.monotonic() for _ in response["stream"]]
    assert len(arrivals) >= 5
    assert arrivals[0] - started >= 0.28  # the wait before answering
    gaps = [later - earlier for earlier, later in pairwise(arrivals)]
    assert min(gaps) >= 0.25, gaps


def test_drop_marker_cuts_the_stream(make_client: Callable[..., Any]) -> None:
    client = make_client(read_timeout=5)
    received = []
    started = time.monotonic()
    with pytest.raises(Exception) as caught:
        for event in client.converse_stream(modelId=HAIKU, messages=user("[[emulator:drop]]"))["stream"]:
            received.append(event)
    assert not isinstance(caught.value, (AssertionError, EventStreamError))
    assert len(received) == 3
    assert time.monotonic() - started < 4  # cut at once, not a read timeout


def test_drop_marker_without_stream_closes_the_connection(make_client: Callable[..., Any]) -> None:
    from botocore.exceptions import ConnectionClosedError

    client = make_client(read_timeout=5)
    with pytest.raises(ConnectionClosedError):
        client.converse(modelId=HAIKU, messages=user("[[emulator:drop]]"))


def test_slow_requests_do_not_hold_up_others(make_client: Callable[..., Any]) -> None:
    clients = [make_client() for _ in range(17)]

    def slow() -> float:
        started = time.monotonic()
        clients[0].converse(modelId=HAIKU, messages=user("[[emulator:slow=1500]] slow one"))
        return time.monotonic() - started

    def fast(i: int) -> str:
        return converse_text(clients[i + 1].converse(modelId=HAIKU, messages=user(f"fast {i}")))

    with ThreadPoolExecutor(max_workers=17) as pool:
        slow_future = pool.submit(slow)
        time.sleep(0.1)
        started = time.monotonic()
        answers = list(pool.map(fast, range(16)))
        fast_elapsed = time.monotonic() - started
        assert slow_future.result() >= 1.5
    assert answers == [
        f"Emulated reply to: fast {i} (a deterministic answer from the Bedrock emulator)" for i in range(16)
    ]
    assert fast_elapsed < 1.2, "16 concurrent requests waited behind a slow one"


def test_a_10_mb_body_is_accepted(client: Any) -> None:
    big = "lorem ipsum " * (10 * 1024 * 1024 // 12 + 1)
    message, _ = invoke(client, invoke_body(big))
    assert message["usage"]["input_tokens"] == (len(big) + 3) // 4
    assert message["content"][0]["text"].startswith("Emulated reply to: lorem ipsum lorem ipsum")


def test_anthropic_version_is_required_exactly(client: Any) -> None:
    error = error_of(lambda: invoke(client, {**invoke_body("hi"), "anthropic_version": "2023-06-01"}))
    assert error.response["Error"]["Message"] == (
        "Malformed input request: #/anthropic_version: 2023-06-01 is not a valid enum value, "
        "please reformat your input and try again."
    )
