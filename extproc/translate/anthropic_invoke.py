"""Anthropic Messages API ⇄ Bedrock InvokeModel (Claude).

Bedrock's InvokeModel for Claude takes the Messages body almost unchanged
(wire-formats §2): ``model`` moves into the path, ``stream`` chooses the
operation, ``anthropic_version`` becomes the Bedrock one, and the
``anthropic-beta`` header becomes the ``anthropic_beta`` body list. The
answer *is* an Anthropic Message, so the response body goes back to the
client untouched and is only read for its usage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import invalid
from ..usage import Usage

BEDROCK_ANTHROPIC_VERSION = "bedrock-2023-05-31"


@dataclass(frozen=True, slots=True)
class MessagesRequest:
    """A validated Messages request, ready to be sent to a model."""

    model: str
    stream: bool
    body: dict[str, Any]


def parse_request(raw: bytes) -> MessagesRequest:
    """Validate what the gateway itself relies on; Bedrock validates the rest."""
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise invalid(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise invalid("request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model: field required (a string naming the model)", param="model")
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise invalid("max_tokens: field required (an integer of at least 1)", param="max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages: field required (a non-empty list)", param="messages")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise invalid("stream: must be a boolean", param="stream")
    betas = body.get("anthropic_beta", [])
    if not isinstance(betas, list) or not all(isinstance(b, str) for b in betas):
        raise invalid("anthropic_beta: must be a list of strings", param="anthropic_beta")
    return MessagesRequest(model=model, stream=stream, body=body)


def beta_flags(header: str | None) -> list[str]:
    """``anthropic-beta: a, b`` → ``["a", "b"]``."""
    return [flag.strip() for flag in (header or "").split(",") if flag.strip()]


def to_invoke_body(request: MessagesRequest, betas: list[str]) -> bytes:
    """The InvokeModel body for ``request``."""
    body = {k: v for k, v in request.body.items() if k not in ("model", "stream")}
    body["anthropic_version"] = BEDROCK_ANTHROPIC_VERSION
    merged = list(dict.fromkeys([*body.get("anthropic_beta", []), *betas]))
    if merged:
        body["anthropic_beta"] = merged
    else:
        body.pop("anthropic_beta", None)
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def usage_of(message: dict[str, Any]) -> Usage:
    """Usage of an Anthropic Message (or the ``usage`` of a stream event)."""
    usage = message.get("usage")
    if not isinstance(usage, dict):
        return Usage()
    return Usage(
        input=int(usage.get("input_tokens") or 0),
        output=int(usage.get("output_tokens") or 0),
        cache_read=int(usage.get("cache_read_input_tokens") or 0),
        cache_write=int(usage.get("cache_creation_input_tokens") or 0),
    )


def read_response(raw: bytes) -> Usage:
    """Usage of a successful InvokeModel answer, which is passed on unchanged."""
    try:
        message = json.loads(raw)
    except ValueError:
        return Usage()
    return usage_of(message) if isinstance(message, dict) else Usage()
