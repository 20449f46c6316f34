"""Validate an Anthropic Messages body sent to InvokeModel and read it as a Prompt.

Bedrock checks the Claude body against a JSON schema before the model sees it
and answers ``ValidationException`` with the schema validator's wording,
``Malformed input request: #: extraneous key [model] is not permitted, please
reformat your input and try again.``; gateways that forget to drop ``model``
or ``stream``, or to add ``anthropic_version``, hit exactly this. Deeper
problems (a ``system`` role inside ``messages``) come back from the model in
Anthropic's own wording (``messages.1.role: Input should be 'user' or
'assistant'``). Both layers are reproduced here.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import BedrockError, validation
from .models import Model
from .prompt import Prompt, Tool, Turn, canonical_json

ANTHROPIC_VERSION = "bedrock-2023-05-31"

# Top-level keys the Bedrock schema for Claude accepts, with their JSON types.
_KEY_TYPES: dict[str, tuple[str, ...]] = {
    "anthropic_version": ("String",),
    "anthropic_beta": ("JSONArray",),
    "max_tokens": ("Integer",),
    "messages": ("JSONArray",),
    "system": ("String", "JSONArray"),
    "temperature": ("Number",),
    "top_p": ("Number",),
    "top_k": ("Integer",),
    "stop_sequences": ("JSONArray",),
    "tools": ("JSONArray",),
    "tool_choice": ("JSONObject",),
    "metadata": ("JSONObject",),
    "thinking": ("JSONObject",),
}
_REQUIRED = ("anthropic_version", "max_tokens", "messages")


def json_type(value: Any) -> str:
    """The type name the schema validator prints for a JSON value."""
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Number"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list):
        return "JSONArray"
    return "JSONObject"


def malformed(violations: list[str]) -> BedrockError:
    return validation(f"Malformed input request: {', '.join(violations)}, please reformat your input and try again.")


def load_body(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise malformed([f"#: invalid JSON ({exc})"]) from None
    if not isinstance(value, dict):
        raise malformed([f"#: expected type: JSONObject, found: {json_type(value)}"])
    return value


def _schema_violations(body: dict[str, Any]) -> list[str]:
    violations = [f"#: required key [{key}] not found" for key in _REQUIRED if key not in body]
    violations += [f"#: extraneous key [{key}] is not permitted" for key in body if key not in _KEY_TYPES]
    for key, allowed in _KEY_TYPES.items():
        if key not in body:
            continue
        found = json_type(body[key])
        if found not in allowed and not (found == "Integer" and "Number" in allowed):
            violations.append(f"#/{key}: expected type: {' or '.join(allowed)}, found: {found}")
        elif key == "anthropic_version" and body[key] != ANTHROPIC_VERSION:
            violations.append(f"#/anthropic_version: {body[key]} is not a valid enum value")
        elif key == "max_tokens" and body[key] < 1:
            violations.append(f"#/max_tokens: {body[key]} is not greater or equal to 1")
        elif key == "messages" and not body[key]:
            violations.append("#/messages: expected minimum item count: 1, found: 0")
        elif key in ("anthropic_beta", "stop_sequences"):
            violations += [
                f"#/{key}/{i}: expected type: String, found: {json_type(item)}"
                for i, item in enumerate(body[key])
                if not isinstance(item, str)
            ]
    return violations


def _block_texts(block: dict[str, Any]) -> list[str]:
    kind = block.get("type")
    if kind == "text":
        return [str(block.get("text", ""))]
    if kind == "thinking":
        return [str(block.get("thinking", ""))]
    if kind == "tool_use":
        return [canonical_json(block.get("input"))]
    if kind == "tool_result":
        content = block.get("content", "")
        if isinstance(content, str):
            return [content]
        return [text for inner in content if isinstance(inner, dict) for text in _block_texts(inner)]
    return [f"[{kind}]"]


def _turns(messages: list[Any]) -> tuple[Turn, ...]:
    turns = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise validation(f"messages.{i}: Input should be a valid dictionary")
        if message.get("role") not in ("user", "assistant"):
            raise validation(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if "content" not in message:
            raise validation(f"messages.{i}.content: Field required")
        content = message["content"]
        if isinstance(content, str):
            texts = [content]
        elif isinstance(content, list):
            texts = []
            for j, block in enumerate(content):
                if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                    raise validation(f"messages.{i}.content.{j}.type: Field required")
                texts += _block_texts(block)
        else:
            raise validation(f"messages.{i}.content: Input should be a valid list")
        turns.append(Turn(message["role"], tuple(texts)))
    return tuple(turns)


def _system(system: str | list[Any] | None) -> tuple[str, ...]:
    if system is None:
        return ()
    if isinstance(system, str):
        return (system,)
    texts = []
    for i, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise validation(f"system.{i}: Input should be a text block with a 'text' string")
        texts.append(block["text"])
    return tuple(texts)


def _tools(tools: list[Any]) -> tuple[Tool, ...]:
    found = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise validation(f"tools.{i}.name: Field required")
        # Server tools (bash, text editor…) have a "type" and no input_schema.
        schema = tool.get("input_schema", {})
        found.append(Tool(tool["name"], schema if isinstance(schema, dict) else {}))
    return tuple(found)


# The anthropic_beta values Bedrock's Claude models take; any other flag is
# refused with "invalid beta flag" (what Claude Code's own flags meet on Bedrock).
BEDROCK_BETA_FLAGS = frozenset({
    "computer-use-2024-10-22", "computer-use-2025-01-24", "token-efficient-tools-2025-02-19",
    "interleaved-thinking-2025-05-14", "output-128k-2025-02-19", "dev-full-thinking-2025-05-14",
    "context-1m-2025-08-07", "tool-search-tool-2025-10-19",
})


def parse(body: dict[str, Any], model: Model) -> Prompt:
    violations = _schema_violations(body)
    if violations:
        raise malformed(violations)
    if any(flag not in BEDROCK_BETA_FLAGS for flag in body.get("anthropic_beta", ())):
        raise validation("invalid beta flag")
    max_tokens = body["max_tokens"]
    if max_tokens > model.max_output_tokens:
        raise validation(
            f"max_tokens: {max_tokens} > {model.max_output_tokens}, which is the maximum allowed "
            f"number of output tokens for {model.anthropic_name}"
        )
    tools = body.get("tools", [])
    return Prompt(
        system=_system(body.get("system")),
        turns=_turns(body["messages"]),
        tools=_tools(tools),
        tools_json=canonical_json(tools),
        max_tokens=max_tokens,
        stop_sequences=tuple(body.get("stop_sequences", ())),
    )
