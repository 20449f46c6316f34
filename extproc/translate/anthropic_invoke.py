"""Anthropic Messages API ⇄ Bedrock InvokeModel (Claude).

Bedrock's InvokeModel for Claude takes the Messages body almost unchanged
(wire-formats §2): ``model`` moves into the path, ``stream`` chooses the
operation, ``anthropic_version`` becomes the Bedrock one, and the
``anthropic-beta`` header becomes the ``anthropic_beta`` body list. The
answer *is* an Anthropic Message, so the response body goes back to the
client untouched and is only read for its usage.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from .. import jsonwire
from ..config import Anthropic
from ..errors import GatewayError, Kind, invalid
from ..usage import Usage

BEDROCK_ANTHROPIC_VERSION = "bedrock-2023-05-31"


@dataclass(frozen=True, slots=True)
class MessagesRequest:
    """A validated Messages request, ready to be sent to a model."""

    model: str
    stream: bool
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Adjustments:
    """What was changed so that Bedrock accepts the body (logged, never silent)."""

    dropped_betas: tuple[str, ...] = ()
    dropped_fields: tuple[str, ...] = ()
    moved_system_messages: int = 0

    def as_log(self) -> dict[str, object]:
        return {k: v for k, v in (("dropped_betas", list(self.dropped_betas)),
                                  ("dropped_fields", list(self.dropped_fields)),
                                  ("moved_system_messages", self.moved_system_messages)) if v}


def parse_request(raw: bytes | dict[str, Any], *, count_only: bool = False) -> MessagesRequest:
    """Validate what the gateway itself relies on; Bedrock validates the rest.

    ``raw`` is the body, or the body already parsed (the gateway parses once).
    ``count_only`` is ``/v1/messages/count_tokens``, whose body has no ``max_tokens``.
    """
    body = raw if isinstance(raw, dict) else jsonwire.load_object(raw)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model: field required (a string naming the model)", param="model")
    max_tokens = body.get("max_tokens", 1 if count_only else None)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise invalid("max_tokens: field required (an integer of at least 1)", param="max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages: field required (a non-empty list)", param="messages")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise invalid("stream: must be a boolean", param="stream")
    check_invoke_fields(body)
    return MessagesRequest(model=model, stream=stream, body=body)


def check_invoke_fields(body: dict[str, Any]) -> None:
    """The fields the gateway itself rewrites must have the types it expects (else a 400, not a 500)."""
    betas = body.get("anthropic_beta", [])
    if not isinstance(betas, list) or not all(isinstance(b, str) for b in betas):
        raise invalid("anthropic_beta: must be a list of strings", param="anthropic_beta")
    system = body.get("system")
    if system is not None and not isinstance(system, (str, list)):
        raise invalid("system: must be a string or a list of content blocks", param="system")
    messages = body.get("messages")
    if messages is not None and not isinstance(messages, list):
        raise invalid("messages: must be a list", param="messages")


def beta_flags(header: str | None) -> list[str]:
    """``anthropic-beta: a, b`` → ``["a", "b"]``."""
    return [flag.strip() for flag in (header or "").split(",") if flag.strip()]


def to_invoke_body(request: MessagesRequest, betas: list[str], rules: Anthropic) -> tuple[bytes, Adjustments]:
    """The InvokeModel body for ``request`` (``anthropic-beta`` header flags in ``betas``)."""
    body = {k: v for k, v in request.body.items() if k not in ("model", "stream")}
    body.setdefault("max_tokens", request.body.get("max_tokens", 1))
    body["anthropic_version"] = BEDROCK_ANTHROPIC_VERSION
    adjustments = make_bedrock_ready(body, betas, rules)
    return jsonwire.dumps(body), adjustments


def make_bedrock_ready(body: dict[str, Any], betas: list[str], rules: Anthropic) -> Adjustments:
    """Change an InvokeModel body in place into one Bedrock accepts.

    Used for bodies the gateway translated and for Bedrock-native bodies
    (Claude Code's Bedrock mode) alike: beta flags outside the allowlist are
    dropped, fields Bedrock refuses are removed, and ``system``-role messages
    (which some clients put mid-conversation) join the top-level ``system``.
    """
    dropped_fields = tuple(name for name in rules.drop_fields if body.pop(name, None) is not None)
    existing = body.get("anthropic_beta", [])
    flags = list(dict.fromkeys([*(existing if isinstance(existing, list) else []), *betas]))
    allowed = flags if rules.beta_allowlist is None else [f for f in flags if f in rules.beta_allowlist]
    if allowed:
        body["anthropic_beta"] = allowed
    else:
        body.pop("anthropic_beta", None)
    moved = _move_system_messages(body)
    return Adjustments(tuple(f for f in flags if f not in allowed), dropped_fields, moved)


def _move_system_messages(body: dict[str, Any]) -> int:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return 0
    system_messages = [m for m in messages if isinstance(m, dict) and m.get("role") == "system"]
    if not system_messages:
        return 0
    body["messages"] = [m for m in messages if not (isinstance(m, dict) and m.get("role") == "system")]
    system = body.get("system")
    blocks: list[Any] = [{"type": "text", "text": system}] if isinstance(system, str) else list(system or [])
    for message in system_messages:
        content = message.get("content")
        if isinstance(content, str):
            blocks.append({"type": "text", "text": content})
        elif isinstance(content, list):
            blocks.extend(b for b in content if isinstance(b, dict) and b.get("type") == "text")
    body["system"] = blocks
    return len(system_messages)


def count_tokens_body(invoke_body: bytes) -> bytes:
    """Bedrock CountTokens input wrapping an InvokeModel body (a blob: base64 on the wire)."""
    return jsonwire.dumps({"input": {"invokeModel": {"body": base64.b64encode(invoke_body).decode("ascii")}}})


def read_count_tokens(raw: bytes) -> bytes:
    """Bedrock's ``{"inputTokens": N}`` as Anthropic's ``{"input_tokens": N}``."""
    try:
        count = json.loads(raw)["inputTokens"]
    except (ValueError, KeyError, TypeError):
        raise GatewayError(502, Kind.UPSTREAM, "Bedrock's CountTokens answer was not readable") from None
    if isinstance(count, bool) or not isinstance(count, int):
        raise GatewayError(502, Kind.UPSTREAM, "Bedrock's CountTokens answer was not readable")
    return jsonwire.dumps({"input_tokens": count})


_USAGE_FIELDS = {"input_tokens": "input", "output_tokens": "output",
                 "cache_read_input_tokens": "cache_read", "cache_creation_input_tokens": "cache_write"}
_METRICS = "amazon-bedrock-invocationMetrics"
_METRIC_FIELDS = {"inputTokenCount": "input", "outputTokenCount": "output",
                  "cacheReadInputTokenCount": "cache_read", "cacheWriteInputTokenCount": "cache_write"}


class UsageCounter:
    """Token counts of one answer: the largest value each type was reported with.

    Anthropic's numbers are cumulative (``message_start`` carries input and
    cache counts, each ``message_delta`` the output so far and sometimes the
    others again) and Bedrock's invocation metrics repeat the totals, so the
    maximum per type counts each token once where a sum would count it twice.
    """

    def __init__(self) -> None:
        self._tokens = dict.fromkeys(("input", "output", "cache_read", "cache_write"), 0)

    @property
    def usage(self) -> Usage:
        return Usage(**self._tokens)

    def count(self, event: dict[str, Any]) -> None:
        """Read a Message, a stream event, or a chunk carrying the invocation metrics."""
        message = event.get("message")
        for usage in (event.get("usage"), message.get("usage") if isinstance(message, dict) else None):
            if isinstance(usage, dict):
                self._take(usage, _USAGE_FIELDS)
        metrics = event.get(_METRICS)
        if isinstance(metrics, dict):
            self._take(metrics, _METRIC_FIELDS)

    def _take(self, source: dict[str, Any], fields: dict[str, str]) -> None:
        for field, token_type in fields.items():
            value = source.get(field)
            if isinstance(value, int) and not isinstance(value, bool) and value > self._tokens[token_type]:
                self._tokens[token_type] = value


def read_response(message: Any) -> Usage:
    """Usage of a successful InvokeModel answer (parsed; it is passed on unchanged)."""
    counter = UsageCounter()
    if isinstance(message, dict):
        counter.count(message)
    return counter.usage
