"""Anthropic Messages → InvokeModel translation, against golden pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
    body = anthropic_invoke.to_invoke_body(request, betas)
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
    assert anthropic_invoke.read_response(body) == Usage(input=11, output=7, cache_read=100, cache_write=50)


def test_usage_of_unreadable_answer_is_zero() -> None:
    assert anthropic_invoke.read_response(b"<html>") == Usage()
