"""Pure parts of the emulator: markers, replies, body validation, models, credentials, records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bedrock_emulator import (
    anthropic_input,
    converse_input,
    credentials,
    markers,
    models,
    replies,
)
from bedrock_emulator.errors import BedrockError
from bedrock_emulator.prompt import Prompt
from bedrock_emulator.recorder import REDACTED, Recorder

from .emulator_support import ANTHROPIC_VERSION, HAIKU, HAIKU_BASE, invoke_body, user

HAIKU_MODEL = models.resolve(HAIKU).model  # type: ignore[union-attr]


def anthropic_prompt(body: dict) -> Prompt:
    return anthropic_input.parse(body, HAIKU_MODEL)


def converse_prompt(body: dict) -> Prompt:
    return converse_input.parse(body, HAIKU_MODEL)


# -- markers ------------------------------------------------------------------------------------------


def test_markers_are_found_and_normalised() -> None:
    found = markers.scan("a [[emulator:error=throttlingException]] b [[emulator:slow=250]] [[emulator:drop]]")
    assert found == markers.Markers(error="ThrottlingException", slow_ms=250, stream_exception=None, drop=True)
    assert (
        markers.scan("[[emulator:stream-exception=ModelStreamErrorException]]").stream_exception
        == "ModelStreamErrorException"
    )
    assert markers.scan("no markers here") == markers.Markers()


@pytest.mark.parametrize(
    "text",
    [
        "[[emulator:error=NoSuchException]]",
        "[[emulator:slow=abc]]",
        "[[emulator:explode]]",
        "[[emulator:drop=1]]",
        "[[emulator:Error=ThrottlingException]]",
        "[[emulator: slow=10]]",
    ],
)
def test_a_misspelt_marker_is_a_validation_error_not_silence(text: str) -> None:
    with pytest.raises(BedrockError) as caught:
        markers.scan(text)
    assert caught.value.code == "ValidationException"


def test_tool_marker_only_counts_in_the_last_user_message() -> None:
    assert markers.requested_tool("call it [[emulator:tool]]") == ""
    assert markers.requested_tool("[[emulator:tool=get_weather]]") == "get_weather"
    assert markers.requested_tool("nothing") is None
    tools = [{"name": "t", "input_schema": {"type": "object"}}]
    earlier = {"role": "user", "content": "[[emulator:tool]]"}
    body = invoke_body("plain", tools=tools)
    body["messages"] = [earlier, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "plain"}]
    assert replies.compose(anthropic_prompt(body), HAIKU_BASE).tool_call is None


# -- replies ------------------------------------------------------------------------------------------


def test_replies_are_deterministic_and_quote_the_last_user_message() -> None:
    first = replies.compose(
        anthropic_prompt(invoke_body("What is the capital of France? Answer briefly please.")), HAIKU_BASE
    )
    again = replies.compose(
        anthropic_prompt(invoke_body("What is the capital of France? Answer briefly please.")), HAIKU_BASE
    )
    other = replies.compose(anthropic_prompt(invoke_body("Something else")), HAIKU_BASE)
    assert first == again
    assert first.text.startswith("Emulated reply to: What is the capital of France? Answer br (")
    assert first.message_id != other.message_id and first.text != other.text
    assert first.message_id.startswith("msg_bdrk_01") and len(first.message_id) == len("msg_bdrk_01") + 22
    assert first.input_tokens > 0 and first.output_tokens > 0


def test_invoke_and_converse_count_the_same_conversation_alike() -> None:
    text = "Count me the same way through both APIs"
    through_invoke = anthropic_prompt(invoke_body(text, system="be brief"))
    through_converse = converse_prompt({"messages": user(text), "system": [{"text": "be brief"}]})
    assert through_invoke.input_tokens() == through_converse.input_tokens() == 12
    assert replies.compose(through_invoke, HAIKU_BASE).text == replies.compose(through_converse, HAIKU_BASE).text


def test_max_tokens_truncates_the_answer() -> None:
    reply = replies.compose(anthropic_prompt(invoke_body("hello", max_tokens=3)), HAIKU_BASE)
    assert (reply.stop_reason, reply.output_tokens, reply.text) == ("max_tokens", 3, "Emulated rep")


def test_stop_sequence_cuts_the_answer() -> None:
    reply = replies.compose(anthropic_prompt(invoke_body("hello STOP world", stop_sequences=["STOP"])), HAIKU_BASE)
    assert (reply.stop_reason, reply.stop_sequence, reply.text) == (
        "stop_sequence",
        "STOP",
        "Emulated reply to: hello ",
    )


def test_tool_call_input_follows_the_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "where": {"type": "object", "properties": {"lat": {"type": "number"}}},
        },
    }
    body = {
        "messages": user("weather? [[emulator:tool=forecast]]"),
        "toolConfig": {
            "tools": [
                {"toolSpec": {"name": "other", "inputSchema": {"json": {"type": "object"}}}},
                {"toolSpec": {"name": "forecast", "inputSchema": {"json": schema}}},
            ]
        },
    }
    reply = replies.compose(converse_prompt(body), HAIKU_BASE)
    assert reply.stop_reason == "tool_use"
    assert reply.tool_call is not None and reply.tool_call.name == "forecast"
    assert reply.tool_call.input == {"city": "emulated", "days": 1, "unit": "celsius", "where": {"lat": 1}}
    assert reply.tool_call.converse_id.startswith("tooluse_")
    with pytest.raises(BedrockError, match="names a tool the request does not define"):
        replies.compose(converse_prompt({**body, "messages": user("[[emulator:tool=nope]]")}), HAIKU_BASE)


# -- Anthropic body validation --------------------------------------------------------------------------


def rejected(parse, body) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(BedrockError) as caught:
        parse(body)
    assert caught.value.code == "ValidationException" and caught.value.status == 400
    return caught.value.message


def test_extraneous_and_missing_keys_in_bedrock_wording() -> None:
    assert rejected(anthropic_prompt, invoke_body("hi", model="claude")) == (
        "Malformed input request: #: extraneous key [model] is not permitted, please reformat your input and try again."
    )
    assert rejected(anthropic_prompt, {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}) == (
        "Malformed input request: #: required key [anthropic_version] not found, please reformat your input and try again."
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"anthropic_version": "bedrock-2023-05-32"},
            "#/anthropic_version: bedrock-2023-05-32 is not a valid enum value",
        ),
        ({"max_tokens": 0}, "#/max_tokens: 0 is not greater or equal to 1"),
        ({"max_tokens": "10"}, "#/max_tokens: expected type: Integer, found: String"),
        ({"messages": []}, "#/messages: expected minimum item count: 1, found: 0"),
        ({"temperature": "hot"}, "#/temperature: expected type: Number, found: String"),
        ({"stream": True}, "#: extraneous key [stream] is not permitted"),
        (
            {"max_tokens": 64001},
            "max_tokens: 64001 > 64000, which is the maximum allowed number of output tokens for claude-haiku-4-5-20251001",
        ),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages.0.role: Input should be 'user' or 'assistant'"),
        ({"messages": [{"role": "user"}]}, "messages.0.content: Field required"),
    ],
)
def test_anthropic_body_violations(change: dict, expected: str) -> None:
    assert expected in rejected(anthropic_prompt, {**invoke_body("hi"), **change})


def test_anthropic_body_accepts_every_documented_key() -> None:
    body = invoke_body(
        "hi",
        anthropic_beta=["token-efficient-tools-2025-02-19"],
        system=[{"type": "text", "text": "sys"}],
        temperature=1,
        top_p=0.9,
        top_k=5,
        stop_sequences=["x"],
        tools=[{"name": "t", "input_schema": {"type": "object"}}],
        tool_choice={"type": "auto"},
        metadata={"user_id": "u"},
        thinking={"type": "enabled", "budget_tokens": 1024},
    )
    assert anthropic_prompt(body).system == ("sys",)


def test_malformed_json_is_a_validation_error() -> None:
    assert rejected(anthropic_input.load_body, b"{not json").startswith("Malformed input request:")
    assert rejected(converse_input.load_body, b"[1]").startswith("Unable to parse")


# -- Converse body validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {},
            "1 validation error detected: Value null at 'messages' failed to satisfy constraint: Member must not be null",
        ),
        ({"messages": [{"role": "system", "content": [{"text": "x"}]}]}, "Value 'system' at 'messages.1.member.role'"),
        (
            {"messages": [{"role": "assistant", "content": [{"text": "x"}]}]},
            "A conversation must start with a user message.",
        ),
        ({"messages": user("a") + user("b")}, "A conversation must alternate between user and assistant roles."),
        (
            {"messages": [{"role": "user", "content": [{"text": "a", "image": {}}]}]},
            "messages.1.member.content.1.member",
        ),
        ({"messages": user("a"), "inferenceConfig": {"maxTokens": 0}}, "Value '0' at 'inferenceConfig.maxTokens'"),
        ({"messages": user("a"), "inferenceConfig": {"temperature": 1.5}}, "less than or equal to 1"),
        ({"messages": user("a"), "inferenceConfig": {"maxTokens": 70000}}, "exceeds the model limit of 64000"),
        ({"messages": user("a"), "toolConfig": {"tools": []}}, "at 'toolConfig.tools' failed to satisfy constraint"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"toolResult": {"toolUseId": "t", "content": [{"text": "r"}]}}]}
                ]
            },
            "The toolConfig field must be defined when using toolUse and toolResult content blocks.",
        ),
    ],
)
def test_converse_body_violations(body: dict, expected: str) -> None:
    assert expected in rejected(converse_prompt, body)


# -- models ---------------------------------------------------------------------------------------------


def test_catalogue_has_the_profiles_of_the_reference_table() -> None:
    expected = {
        "anthropic.claude-haiku-4-5-20251001-v1:0": {"global", "us", "eu"},
        "anthropic.claude-sonnet-4-20250514-v1:0": {"global", "us", "eu", "apac"},
        "anthropic.claude-sonnet-4-5-20250929-v1:0": {"global", "us", "eu", "jp"},
        "anthropic.claude-opus-4-1-20250805-v1:0": {"us"},
        "anthropic.claude-opus-4-5-20251101-v1:0": {"global", "us", "eu"},
    }
    for base, prefixes in expected.items():
        resolved = models.resolve(base)
        assert resolved is not None and not resolved.is_profile and not resolved.model.on_demand
        for prefix in prefixes:
            assert models.resolve(f"{prefix}.{base}").is_profile  # type: ignore[union-attr]
        assert models.resolve(f"au.{base}") is None
    assert models.resolve("amazon.nova-lite-v1:0").model.on_demand  # type: ignore[union-attr]
    assert not models.resolve("us.amazon.nova-lite-v1:0").model.is_anthropic  # type: ignore[union-attr]


# -- credentials -------------------------------------------------------------------------------------------


def test_credentials_default_to_the_public_development_pair() -> None:
    assert credentials.load(None, {}) == [credentials.DEV_CREDENTIAL]
    assert credentials.DEV_CREDENTIAL.access_key_id == "AKIDEMULATOR00000000"


def test_credentials_from_file_and_environment_are_merged(tmp_path: Path) -> None:
    file = tmp_path / "creds.json"
    file.write_text(json.dumps([{"access_key_id": "AKIDFILE", "secret_access_key": "s1"}]))
    env = {
        credentials.ENV_VAR: json.dumps([{"access_key_id": "ASIAENV", "secret_access_key": "s2", "session_token": "t"}])
    }
    loaded = credentials.load(file, env)
    assert [(c.access_key_id, c.session_token) for c in loaded] == [("AKIDFILE", None), ("ASIAENV", "t")]
    assert "s1" not in repr(loaded) and "'t'" not in repr(loaded)


@pytest.mark.parametrize(
    "text",
    [
        '{"access_key_id": "a"}',
        "[{}]",
        '[{"access_key_id": "a", "secret_access_key": ""}]',
        "[]",
        "nope",
        '[{"access_key_id": "a", "secret_access_key": "b", "extra": 1}]',
    ],
)
def test_bad_credentials_are_refused_at_startup(text: str) -> None:
    with pytest.raises(ValueError):
        credentials.load(None, {credentials.ENV_VAR: text})


def test_same_key_with_two_secrets_is_refused() -> None:
    text = json.dumps(
        [{"access_key_id": "a", "secret_access_key": "b"}, {"access_key_id": "a", "secret_access_key": "c"}]
    )
    with pytest.raises(ValueError, match="configured twice"):
        credentials.load(None, {credentials.ENV_VAR: text})


# -- the request record ----------------------------------------------------------------------------------------


def test_records_keep_the_newest_and_never_a_credential() -> None:
    recorder = Recorder(limit=3)
    for i in range(5):
        recorder.start(
            f"id{i}",
            "POST",
            f"/model/m{i}/invoke",
            [
                (
                    "Authorization",
                    "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/bedrock/aws4_request, SignedHeaders=host, Signature=abcdef",
                ),
                ("X-Amz-Security-Token", "secret-token"),
                ("x-api-key", "client-key"),
                ("X-Dup", "a"),
                ("x-dup", "b"),
            ],
        )
    records = recorder.snapshot()
    assert [r["request_id"] for r in records] == ["id2", "id3", "id4"]
    headers = records[0]["headers"]
    assert headers["authorization"].endswith(f"Signature={REDACTED}") and "Credential=AKID/" in headers["authorization"]
    assert headers["x-amz-security-token"] == headers["x-api-key"] == REDACTED
    assert headers["x-dup"] == "a,b"
    assert "abcdef" not in json.dumps(records) and "secret-token" not in json.dumps(records)
    recorder.clear()
    assert recorder.snapshot() == []


def test_anthropic_version_constant_matches_bedrock() -> None:
    assert anthropic_input.ANTHROPIC_VERSION == ANTHROPIC_VERSION


def test_bad_credentials_stop_the_server_without_echoing_secrets() -> None:
    env = {**os.environ, credentials.ENV_VAR: json.dumps([{"access_key_id": "a", "secret_access_key": "hush", "x": 1}])}
    result = subprocess.run(
        [sys.executable, "-m", "bedrock_emulator", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert "cannot load credentials" in result.stderr and "hush" not in result.stderr


def test_words_and_cache_markers_shape_the_reply() -> None:
    from bedrock_emulator import markers

    found = markers.scan("long please [[emulator:words=30]] [[emulator:cache=1000,200]]")
    assert (found.words, found.cache_read, found.cache_write) == (30, 1000, 200)
    reply = replies.compose(anthropic_prompt(invoke_body("long please", max_tokens=4000)), HAIKU_BASE, found)
    assert reply.text.endswith(" word29")
    assert replies.anthropic_usage(reply, reply.output_tokens)["cache_read_input_tokens"] == 1000
    usage = replies.converse_usage(reply)
    assert (usage["cacheReadInputTokens"], usage["cacheWriteInputTokens"]) == (1000, 200)
    assert usage["totalTokens"] == reply.input_tokens + reply.output_tokens + 1200
    for bad in ("[[emulator:words=0]]", "[[emulator:words=x]]", "[[emulator:cache=5]]"):
        with pytest.raises(BedrockError):
            markers.scan(bad)
