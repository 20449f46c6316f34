"""Deterministic answers, their usage, and how each API spells them.

The same request always gets the same answer, and the answer quotes the last
user message, so tests can tell requests apart and compare runs. Token counts
come from the text (see :func:`prompt.count_tokens`), so usage is never zero
and agrees between InvokeModel, its stream, Converse and CountTokens for the
same input. ``max_tokens`` truncates the answer and ``stop_sequences`` cut it,
with the stop reasons Bedrock reports.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from . import markers
from .errors import validation
from .prompt import Prompt, Tool, count_tokens

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SNIPPET_CHARS = 40


@dataclass(frozen=True)
class ToolCall:
    name: str
    input: dict[str, Any]
    id_suffix: str

    @property
    def anthropic_id(self) -> str:
        return f"toolu_bdrk_01{self.id_suffix}"

    @property
    def converse_id(self) -> str:
        return f"tooluse_{self.id_suffix}"

    def input_json(self) -> str:
        return json.dumps(self.input, separators=(",", ":"))


@dataclass(frozen=True)
class Reply:
    message_id: str
    text: str
    tool_call: ToolCall | None
    stop_reason: str  # end_turn, tool_use, max_tokens or stop_sequence (both APIs use these words)
    stop_sequence: str | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


def _identifier(*parts: str) -> str:
    """A stable base62 identifier, shaped like Bedrock's random ones."""
    number = int(hashlib.sha256("\n".join(parts).encode()).hexdigest(), 16)
    chars = []
    for _ in range(22):
        number, rest = divmod(number, 62)
        chars.append(_BASE62[rest])
    return "".join(chars)


def sample_value(schema: Any) -> Any:
    """A value that fits a JSON schema well enough for a tool-calling test."""
    if not isinstance(schema, dict):
        return "emulated"
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties")
        return {name: sample_value(sub) for name, sub in properties.items()} if isinstance(properties, dict) else {}
    return {"integer": 1, "number": 1, "boolean": True, "array": [], "null": None}.get(str(kind), "emulated")


def _choose_tool(prompt: Prompt) -> Tool | None:
    wanted = markers.requested_tool(prompt.last_user_text())
    if wanted is None or not prompt.tools:
        return None
    if wanted == "":
        return prompt.tools[0]
    for tool in prompt.tools:
        if tool.name == wanted:
            return tool
    raise validation(f"Emulator marker [[emulator:tool={wanted}]] names a tool the request does not define.")


def compose(prompt: Prompt, model_key: str, found: markers.Markers = markers.Markers()) -> Reply:
    digest = prompt.digest()
    message_id = f"msg_bdrk_01{_identifier(digest, model_key)}"
    snippet = markers.strip(prompt.last_user_text())[:SNIPPET_CHARS] or "(no text)"
    tool = _choose_tool(prompt)
    tool_call = None
    if tool is not None:
        text = f"Emulated tool call to {tool.name} for: {snippet}"
        tool_call = ToolCall(tool.name, sample_value(tool.input_schema), _identifier(digest, model_key, tool.name))
    else:
        text = f"Emulated reply to: {snippet} (a deterministic answer from the Bedrock emulator)"
    if found.card:
        text += " The card on file is 4111 1111 1111 1111."  # a well-known test number, for answer guardrails
    if found.words:
        text += "".join(f" word{i}" for i in range(found.words))

    stop_reason = "tool_use" if tool_call else "end_turn"
    if found.guardrail:  # what Bedrock answers when a guardrail blocks the exchange
        text, tool_call, stop_reason = "Sorry, the model cannot answer this question.", None, "guardrail_intervened"
    stop_sequence = None
    cuts = [(text.find(s), s) for s in prompt.stop_sequences if s in text]
    if cuts:
        position, stop_sequence = min(cuts)
        text, tool_call, stop_reason = text[:position], None, "stop_sequence"

    output_tokens = count_tokens(text) + (count_tokens(tool_call.input_json()) if tool_call else 0)
    if output_tokens > prompt.max_tokens:
        text, tool_call, stop_reason, stop_sequence = text[: prompt.max_tokens * 4], None, "max_tokens", None
        output_tokens = min(count_tokens(text), prompt.max_tokens)
    return Reply(message_id, text, tool_call, stop_reason, stop_sequence, prompt.input_tokens(), output_tokens,
                 found.cache_read, found.cache_write)


def anthropic_usage(reply: Reply, output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": reply.input_tokens,
        "output_tokens": output_tokens,
        "cache_read_input_tokens": reply.cache_read_tokens,
        "cache_creation_input_tokens": reply.cache_write_tokens,
    }


def anthropic_message(reply: Reply, model_name: str) -> dict[str, Any]:
    """The InvokeModel answer: an Anthropic Message."""
    content: list[dict[str, Any]] = [{"type": "text", "text": reply.text}]
    if reply.tool_call:
        call = reply.tool_call
        content.append({"type": "tool_use", "id": call.anthropic_id, "name": call.name, "input": call.input})
    return {
        "id": reply.message_id,
        "type": "message",
        "role": "assistant",
        "model": model_name,
        "content": content,
        "stop_reason": reply.stop_reason,
        "stop_sequence": reply.stop_sequence,
        "usage": anthropic_usage(reply, reply.output_tokens),
    }


def converse_usage(reply: Reply) -> dict[str, int]:
    """Converse reports cache counts only when there are some, and in the total."""
    usage = {
        "inputTokens": reply.input_tokens,
        "outputTokens": reply.output_tokens,
        "totalTokens": reply.input_tokens + reply.output_tokens + reply.cache_read_tokens + reply.cache_write_tokens,
    }
    if reply.cache_read_tokens or reply.cache_write_tokens:
        usage |= {"cacheReadInputTokens": reply.cache_read_tokens, "cacheWriteInputTokens": reply.cache_write_tokens}
    return usage


def converse_content(reply: Reply) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = [{"text": reply.text}]
    if reply.tool_call:
        call = reply.tool_call
        content.append({"toolUse": {"toolUseId": call.converse_id, "name": call.name, "input": call.input}})
    return content


def converse_response(reply: Reply, latency_ms: int) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": converse_content(reply)}},
        "stopReason": reply.stop_reason,
        "usage": converse_usage(reply),
        "metrics": {"latencyMs": latency_ms},
    }
