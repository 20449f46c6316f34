"""Validate a Converse body and read it as a Prompt.

Converse is a modelled AWS operation: its first line of checks is the AWS
service framework's (``1 validation error detected: Value 'system' at
'messages.1.member.role' failed to satisfy constraint: ...``, 1-based member
indexes), then Bedrock's own conversation rules (start with a user turn,
alternate roles, declare ``toolConfig`` when the history holds tool blocks).
The same reader serves CountTokens' ``converse`` input, which has no
``inferenceConfig``.
"""

from __future__ import annotations

import json
from itertools import pairwise
from typing import Any

from .errors import BedrockError, validation
from .models import Model
from .prompt import Prompt, Tool, Turn, canonical_json

# Content block members Bedrock accepts in a message; exactly one per block.
_BLOCK_MEMBERS = frozenset(
    {
        "text",
        "image",
        "document",
        "video",
        "audio",
        "toolUse",
        "toolResult",
        "guardContent",
        "cachePoint",
        "reasoningContent",
        "citationsContent",
        "searchResult",
    }
)
_SYSTEM_MEMBERS = frozenset({"text", "guardContent", "cachePoint"})
_DEFAULT_MAX_TOKENS = 4096


def load_body(body: bytes) -> dict[str, Any]:
    """The JSON body of a modelled operation (Converse, ConverseStream, CountTokens)."""
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise validation(f"Unable to parse the request body as JSON: {exc}") from None
    if not isinstance(value, dict):
        raise validation("Unable to parse the request body: expected a JSON object.")
    return value


def _not_null(path: str) -> str:
    return f"Value null at '{path}' failed to satisfy constraint: Member must not be null"


def _detected(violations: list[str]) -> BedrockError:
    plural = "s" if len(violations) > 1 else ""
    return validation(f"{len(violations)} validation error{plural} detected: {'; '.join(violations)}")


def _block_texts(block: dict[str, Any]) -> list[str]:
    ((member, value),) = block.items()
    if member == "text":
        return [str(value)]
    if member == "toolUse":
        return [canonical_json(value.get("input"))] if isinstance(value, dict) else []
    if member == "toolResult":
        content = value.get("content", []) if isinstance(value, dict) else []
        texts = []
        for inner in content:
            if isinstance(inner, dict) and "text" in inner:
                texts.append(str(inner["text"]))
            elif isinstance(inner, dict) and "json" in inner:
                texts.append(canonical_json(inner["json"]))
        return texts
    if member == "reasoningContent":
        reasoning = value.get("reasoningText", {}) if isinstance(value, dict) else {}
        return [str(reasoning.get("text", ""))]
    if member == "guardContent":
        guarded = value.get("text", {}) if isinstance(value, dict) else {}
        return [str(guarded.get("text", ""))]
    if member == "cachePoint":
        return []
    return [f"[{member}]"]


def _turns(messages: Any) -> tuple[tuple[Turn, ...], bool]:
    """The turns, and whether any of them holds a tool block."""
    if messages is None:
        raise _detected([_not_null("messages")])
    if not isinstance(messages, list):
        raise validation("Unable to parse 'messages': expected a list of messages.")
    violations = []
    turns = []
    uses_tools = False
    for n, message in enumerate(messages, start=1):
        if not isinstance(message, dict):
            violations.append(_not_null(f"messages.{n}.member"))
            continue
        role = message.get("role")
        if role is None:
            violations.append(_not_null(f"messages.{n}.member.role"))
        elif role not in ("user", "assistant"):
            violations.append(
                f"Value '{role}' at 'messages.{n}.member.role' failed to satisfy constraint: "
                "Member must satisfy enum value set: [user, assistant]"
            )
        content = message.get("content")
        if not isinstance(content, list):
            violations.append(_not_null(f"messages.{n}.member.content"))
            continue
        texts = []
        for m, block in enumerate(content, start=1):
            if not isinstance(block, dict) or len(block) != 1 or next(iter(block)) not in _BLOCK_MEMBERS:
                violations.append(
                    f"Value at 'messages.{n}.member.content.{m}.member' failed to satisfy constraint: "
                    "Member must have exactly one of the supported content block types set"
                )
                continue
            uses_tools = uses_tools or "toolUse" in block or "toolResult" in block
            texts += _block_texts(block)
        turns.append(Turn(str(role), tuple(texts)))
    if violations:
        raise _detected(violations)
    if not turns or turns[0].role != "user":
        raise validation(
            "A conversation must start with a user message. "
            "Try again with a conversation that starts with a user message."
        )
    if any(a.role == b.role for a, b in pairwise(turns)):
        raise validation(
            "A conversation must alternate between user and assistant roles. Make sure the conversation "
            "alternates between user and assistant roles and try again."
        )
    return tuple(turns), uses_tools


def _system(system: Any) -> tuple[str, ...]:
    if system is None:
        return ()
    if not isinstance(system, list):
        raise validation("Unable to parse 'system': expected a list of system content blocks.")
    violations = [
        f"Value at 'system.{n}.member' failed to satisfy constraint: "
        "Member must have exactly one of the supported system content block types set"
        for n, block in enumerate(system, start=1)
        if not isinstance(block, dict) or len(block) != 1 or next(iter(block)) not in _SYSTEM_MEMBERS
    ]
    if violations:
        raise _detected(violations)
    return tuple(text for block in system for text in _block_texts(block))


def _tools(tool_config: Any) -> tuple[tuple[Tool, ...], str]:
    """The tools, and their definitions as canonical JSON (they cost input tokens)."""
    if tool_config is None:
        return (), ""
    tools = tool_config.get("tools") if isinstance(tool_config, dict) else None
    if tools is None:
        raise _detected([_not_null("toolConfig.tools")])
    if not isinstance(tools, list) or not tools:
        raise _detected(
            [
                "Value '[]' at 'toolConfig.tools' failed to satisfy constraint: "
                "Member must have length greater than or equal to 1"
            ]
        )
    found = []
    violations = []
    for n, tool in enumerate(tools, start=1):
        if isinstance(tool, dict) and "cachePoint" in tool:
            continue
        spec = tool.get("toolSpec") if isinstance(tool, dict) else None
        if not isinstance(spec, dict):
            violations.append(_not_null(f"toolConfig.tools.{n}.member.toolSpec"))
            continue
        if not isinstance(spec.get("name"), str):
            violations.append(_not_null(f"toolConfig.tools.{n}.member.toolSpec.name"))
        schema = spec.get("inputSchema")
        if not isinstance(schema, dict) or not isinstance(schema.get("json"), dict):
            violations.append(_not_null(f"toolConfig.tools.{n}.member.toolSpec.inputSchema"))
            continue
        found.append(Tool(str(spec.get("name")), schema["json"]))
    if violations:
        raise _detected(violations)
    return tuple(found), canonical_json(tools)


def _inference(config: Any, model: Model) -> tuple[int, tuple[str, ...]]:
    if config is None:
        return min(_DEFAULT_MAX_TOKENS, model.max_output_tokens), ()
    if not isinstance(config, dict):
        raise validation("Unable to parse 'inferenceConfig': expected an object.")
    violations = []
    max_tokens = config.get("maxTokens", min(_DEFAULT_MAX_TOKENS, model.max_output_tokens))
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        violations.append(
            f"Value '{max_tokens}' at 'inferenceConfig.maxTokens' failed to satisfy constraint: "
            "Member must have value greater than or equal to 1"
        )
    for key in ("temperature", "topP"):
        value = config.get(key)
        if value is None:
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            violations.append(
                f"Value '{value}' at 'inferenceConfig.{key}' failed to satisfy constraint: Member must be a number"
            )
        elif not 0 <= value <= 1:
            bound = "less than or equal to 1" if value > 1 else "greater than or equal to 0"
            violations.append(
                f"Value '{value}' at 'inferenceConfig.{key}' failed to satisfy constraint: "
                f"Member must have value {bound}"
            )
    stops = config.get("stopSequences", [])
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        violations.append(
            "Value at 'inferenceConfig.stopSequences' failed to satisfy constraint: "
            "Member must be a list of non-empty strings"
        )
    if violations:
        raise _detected(violations)
    if max_tokens > model.max_output_tokens:
        raise validation(
            f"The maximum tokens you requested exceeds the model limit of {model.max_output_tokens}. "
            f"Try again with a maximum tokens value that is lower than {model.max_output_tokens}."
        )
    return max_tokens, tuple(stops)


def parse(body: dict[str, Any], model: Model) -> Prompt:
    turns, uses_tools = _turns(body.get("messages"))
    system = _system(body.get("system"))
    tool_config = body.get("toolConfig")
    tools, tools_json = _tools(tool_config)
    if uses_tools and tool_config is None:
        raise validation("The toolConfig field must be defined when using toolUse and toolResult content blocks.")
    max_tokens, stop_sequences = _inference(body.get("inferenceConfig"), model)
    return Prompt(
        system=system,
        turns=turns,
        tools=tools,
        tools_json=tools_json,
        max_tokens=max_tokens,
        stop_sequences=stop_sequences,
    )
