"""Anthropic Messages → InvokeModel translation, against golden pairs."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from extproc import jsonwire
from extproc.config import Anthropic
from extproc.errors import GatewayError
from extproc.translate import anthropic_invoke
from extproc.usage import Usage

GOLDEN = Path(__file__).parent / "golden" / "anthropic_invoke"


@pytest.mark.parametrize("case", sorted(GOLDEN.glob("*.json")), ids=lambda p: p.stem)
def test_golden_request(case: Path) -> None:
    golden = json.loads(case.read_text())
    request = anthropic_invoke.parse_request(json.dumps(golden["request"]).encode())
    assert request.model == golden["model"]
    assert request.stream == golden["stream"]
    betas = anthropic_invoke.beta_flags(golden["headers"].get("anthropic-beta"))
    rules = Anthropic(**golden.get("rules", {"beta_allowlist": None, "drop_fields": []}))
    body, _ = anthropic_invoke.to_invoke_body(request, betas, rules)
    assert json.loads(body) == golden["bedrock_body"]
    assert b"\\u" not in body, "non-ASCII text is sent as UTF-8, not escaped"


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (b'{"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": "haiku", "messages": [{"role": "user", "content": "x"}]}', "max_tokens"),
        (b'{"model": "haiku", "max_tokens": true, "messages": [{"role": "user", "content": "x"}]}', "max_tokens"),
        (b'{"model": "haiku", "max_tokens": 5, "messages": []}', "messages"),
        (b'{"model": "haiku", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "stream": "yes"}', "stream"),
        (b'{"model": "haiku", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "anthropic_beta": "a"}',
         "anthropic_beta"),
    ],
)
def test_bad_requests_are_400_naming_the_field(raw: bytes, param: str | None) -> None:
    with pytest.raises(GatewayError) as info:
        anthropic_invoke.parse_request(raw)
    assert info.value.status == 400
    assert info.value.param == param
    if param:
        assert param in info.value.message


def test_usage_keeps_every_token_type_separate() -> None:
    body = json.dumps({
        "id": "msg_bdrk_1", "type": "message", "role": "assistant", "content": [],
        "usage": {"input_tokens": 11, "output_tokens": 7, "cache_read_input_tokens": 100,
                  "cache_creation_input_tokens": 50},
    }).encode()
    assert anthropic_invoke.read_response(jsonwire.load_answer(body)) == Usage(
        input=11, output=7, cache_read=100, cache_write=50)


def test_usage_of_unreadable_answer_is_zero() -> None:
    assert anthropic_invoke.read_response(jsonwire.load_answer(b"<html>")) == Usage()


def test_default_rules_drop_unknown_betas_and_refused_fields_and_say_so() -> None:
    request = anthropic_invoke.parse_request(json.dumps({
        "model": "haiku", "max_tokens": 8, "anthropic_beta": ["claude-code-20250219", "interleaved-thinking-2025-05-14"],
        "context_management": {"edits": []}, "output_config": {"effort": "low"},
        "messages": [{"role": "user", "content": "hi"}],
    }).encode())
    body, adjustments = anthropic_invoke.to_invoke_body(request, ["oauth-2025-04-20", "context-1m-2025-08-07"], Anthropic())
    sent = json.loads(body)
    assert sent["anthropic_beta"] == ["interleaved-thinking-2025-05-14", "context-1m-2025-08-07"]
    assert "context_management" not in sent and "output_config" not in sent
    assert adjustments.as_log() == {"dropped_betas": ["claude-code-20250219", "oauth-2025-04-20"],
                                    "dropped_fields": ["context_management", "output_config"]}


def test_passthrough_mode_keeps_every_beta() -> None:
    request = anthropic_invoke.parse_request(b'{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"}]}')
    body, adjustments = anthropic_invoke.to_invoke_body(request, ["anything-2099"], Anthropic(beta_allowlist=None))
    assert json.loads(body)["anthropic_beta"] == ["anything-2099"] and adjustments.as_log() == {}


def test_system_message_mid_conversation_joins_the_system_prompt_in_order() -> None:
    request = anthropic_invoke.parse_request(json.dumps({
        "model": "haiku", "max_tokens": 8,
        "system": [{"type": "text", "text": "first", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                     {"role": "system", "content": "second"}, {"role": "user", "content": "c"}],
    }).encode())
    body, adjustments = anthropic_invoke.to_invoke_body(request, [], Anthropic())
    sent = json.loads(body)
    assert sent["system"] == [{"type": "text", "text": "first", "cache_control": {"type": "ephemeral"}},
                              {"type": "text", "text": "second"}]
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert adjustments.moved_system_messages == 1


def test_count_tokens_body_and_answer() -> None:
    request = anthropic_invoke.parse_request(
        b'{"model":"haiku","messages":[{"role":"user","content":"count me"}]}', count_only=True)
    invoke, _ = anthropic_invoke.to_invoke_body(request, [], Anthropic())
    wrapped = json.loads(anthropic_invoke.count_tokens_body(invoke))
    inner = json.loads(base64.b64decode(wrapped["input"]["invokeModel"]["body"]))
    assert inner["anthropic_version"] == "bedrock-2023-05-31" and inner["max_tokens"] == 1
    assert inner["messages"] == [{"role": "user", "content": "count me"}]
    assert json.loads(anthropic_invoke.read_count_tokens(b'{"inputTokens": 42}')) == {"input_tokens": 42}
    with pytest.raises(GatewayError):
        anthropic_invoke.read_count_tokens(b"{}")
