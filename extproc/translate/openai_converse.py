"""OpenAI Chat Completions ⇄ Bedrock Converse (non-streaming).

OpenAI clients (the ``openai`` SDK and the many tools built on it) send a
Chat Completions body; Bedrock serves every model through one modelled
operation, Converse (wire-formats §4, §5). This module translates the request
one way and the answer the other, as pure functions of bytes and dicts.

Everything the gateway can check is checked here, before a byte goes to
Bedrock, and answered as a 400 whose ``param`` names the exact field
(``messages[2].content``, ``tools[0].function.name``): an OpenAI client shows
that to its user, while Bedrock's own validation messages speak of Converse
fields the client never sent.

Choices where the two APIs do not line up (each is deliberate):

* **Conversation shape.** Converse wants strictly alternating user/assistant
  turns that start with a user turn. Consecutive messages of one role are
  merged into one turn; ``tool`` messages become ``toolResult`` blocks in a
  user turn, so several tool results and a user message right after them form
  one turn. Inside a user turn the ``toolResult`` blocks are put first, as
  Claude requires, in case a client put a user message between an assistant's
  tool calls and their results. A conversation whose first turn is the
  assistant's is refused (400) rather than silently padded with a user turn.
* **System and developer messages** become Converse ``system`` blocks, in
  order. One in the middle of the conversation is not refused (agent
  frameworks insert them to steer a running conversation): Converse has no
  system turn, so it is appended to the ``system`` list, keeping its order
  relative to the other system messages but no longer its position among the
  turns.
* **Empty text.** Bedrock rejects empty text blocks, so empty strings are
  dropped. A user turn left with nothing is refused; an assistant message left
  with nothing (no text, no tool calls) is dropped, which is what an empty
  answer in the history means; an empty tool result is sent as a
  ``toolResult`` with no content blocks. ``arguments: ""`` of a tool call
  (some clients write it for calls without arguments) is read as ``{}``.
* **Tools in the history without ``tools``.** Converse refuses ``toolUse`` /
  ``toolResult`` blocks unless the request declares ``toolConfig``, so when a
  conversation carries tool calls but the request has no ``tools`` (a client
  asking for a summary of an agent session, say) a minimal ``toolSpec`` (input
  schema ``{"type": "object"}``) is declared for each tool name the history
  uses. The model may then call those tools again.
* **``tool_choice: "none"``.** Converse has no "none" choice: the tools are
  withheld entirely (no ``toolConfig``), which is exactly "none". But when the
  history holds tool blocks Converse requires ``toolConfig``, so the tools are
  kept with ``{"auto": {}}``: the model is unlikely but able to call one, and
  such a call is returned as it is (``finish_reason: "tool_calls"``), never
  hidden. Rewriting the history to drop the tool blocks would be the other way
  out, but it changes what the model reads and is not reversible.
* **``response_format``** ``json_object`` / ``json_schema`` is served through
  a forced tool (``toolChoice {"tool": ...}``) whose input schema is the
  requested schema (``{"type": "object"}`` for ``json_object``); the tool's
  input comes back as ``message.content``, a JSON string, with
  ``finish_reason: "stop"``. It is named after ``json_schema.name``, or
  ``json_response``. Adherence to the schema is as good as the model's tool
  calling: ``strict`` is accepted but not enforced by a grammar. Since the
  answer is a tool call, JSON output cannot be combined with ``tools`` (400).
* **Images** are accepted as ``data:`` URLs (png, jpeg, gif, webp) only. A
  remote ``http(s)`` URL is refused: fetching it from inside the gateway would
  let any client make the gateway request arbitrary addresses (server-side
  request forgery). ``image_url.detail`` has no Bedrock equivalent and is
  ignored.
* **Parameters Bedrock cannot honour** and that would change the answer are
  refused with a 400 naming them, unless they hold their neutral value:
  ``logprobs`` (false), ``top_logprobs`` (0), ``logit_bias`` ({}),
  ``presence_penalty`` / ``frequency_penalty`` (0), ``seed``, ``audio``,
  ``prediction``, ``web_search_options``, ``moderation``, ``functions`` ([]),
  ``function_call`` ("none") (null is neutral for all of them),
  ``modalities`` (["text"]), ``reasoning_effort`` ("none"), ``verbosity``
  ("medium", the default), ``n`` (1), and ``parallel_tool_calls: false`` when
  tools are given. ``temperature`` above the model's maximum is refused
  rather than clamped.
* **Ignored fields**, which cannot change the answer: ``metadata``, ``store``,
  ``service_tier``, ``safety_identifier``, ``prompt_cache_key``,
  ``prompt_cache_retention``, ``prompt_cache_options``, the
  ``prompt_cache_breakpoint`` of content parts,
  ``stream_options.include_obfuscation``, the ``name`` of messages, the
  ``strict`` of tools and
  ``user`` (kept on :class:`ChatRequest` for logs, never sent upstream). Any
  other unknown top-level field is ignored too: OpenAI rejects them, but SDKs
  and tools add vendor fields (``top_k``, ``extra_body`` leftovers…) that a
  gateway should not turn into errors.

On the way back, ``reasoningContent`` blocks are not part of the answer's
``content``; Bedrock's ``inputTokens`` excludes cache reads and writes, so
``prompt_tokens`` adds them back, while the returned :class:`Usage` keeps each
type apart for billing.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import jsonwire
from ..errors import GatewayError, Kind, invalid
from ..usage import Usage

FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
    # No OpenAI counterpart (Bedrock could not parse the model's output or
    # tool call). "stop" is the one reason that promises nothing more;
    # "tool_calls" would send clients looking for calls that are not there.
    "malformed_model_output": "stop",
    "malformed_tool_use": "stop",
}
"""Every Bedrock ``stopReason`` → OpenAI ``finish_reason`` (unknown ones → ``stop``)."""

JSON_TOOL_NAME = "json_response"
"""The forced tool serving ``response_format`` json_object (and json_schema without a name)."""

_JSON_TOOL_DESCRIPTION = "Give your complete answer as the input of this tool, a JSON object."
_MAX_STOP_SEQUENCES = 4
# OpenAI's rule for function names, and Converse's ToolName: 1-64 of [a-zA-Z0-9_-].
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
_EMPTY_OBJECT_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A validated Chat Completions request."""

    model: str | None
    """The request's ``model``; None when absent (the gateway then uses its default)."""
    stream: bool
    include_usage: bool
    """``stream_options.include_usage``: a final usage chunk in a stream."""
    user: str | None
    """Kept for logs only, never sent upstream."""
    body: dict[str, Any]
    """The parsed request, as the client sent it."""
    _converse: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    """The Converse body built while validating, so images are not decoded twice."""


def for_answer(request: ChatRequest) -> ChatRequest:
    """What reading the answer needs of ``request`` (its JSON mode), without the prompt.

    The gateway keeps this while the answer streams, so a 30 MB prompt is not
    held in memory for the minutes an answer can take.
    """
    kept = {"response_format": request.body["response_format"]} if "response_format" in request.body else {}
    return ChatRequest(model=request.model, stream=request.stream, include_usage=request.include_usage,
                       user=request.user, body=kept)


# -- request ---------------------------------------------------------------


def parse_request(raw: bytes | dict[str, Any]) -> ChatRequest:
    """Validate a Chat Completions body (bytes, or already parsed); every 400 names the offending field.

    The whole translation runs here (its result is kept on the request), so
    a bad message deep in the history is refused before any upstream call.
    """
    body = raw if isinstance(raw, dict) else jsonwire.load_object(raw)
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise invalid("model: must be a string naming the model", param="model")
    stream = _optional_bool(body, "stream") or False
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        if not stream:
            raise invalid("stream_options: only allowed when stream is true", param="stream_options")
        if not isinstance(options, dict):
            raise invalid("stream_options: must be an object", param="stream_options")
        include_usage = _optional_bool(options, "include_usage", "stream_options.") or False
        _optional_bool(options, "include_obfuscation", "stream_options.")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise invalid("user: must be a string", param="user")
    return ChatRequest(
        model=model,
        stream=stream,
        include_usage=include_usage,
        user=user,
        body=body,
        _converse=_translate(body),
    )


def to_converse_body(request: ChatRequest, *, max_temperature: float = 1.0) -> bytes:
    """The Converse body for ``request`` (compact UTF-8 JSON).

    ``max_temperature`` is the model's ceiling: OpenAI's scale goes to 2,
    Claude's to 1, and a temperature above it is refused rather than clamped
    so the client learns its setting is not what it gets.
    """
    converse = request._converse if request._converse is not None else _translate(request.body)
    temperature = converse.get("inferenceConfig", {}).get("temperature")
    if temperature is not None and temperature > max_temperature:
        raise invalid(
            f"temperature: must be between 0 and {max_temperature:g} for this model (got {temperature:g})",
            param="temperature",
        )
    return jsonwire.dumps(converse)


def _translate(body: dict[str, Any]) -> dict[str, Any]:
    """The Converse body for a Chat Completions body, validating as it goes."""
    _refuse_unsupported(body)
    tools = _tools(body.get("tools"))
    _parallel_tool_calls(body, tools)
    choice = _tool_choice(body.get("tool_choice"), tools)
    json_tool = _response_format(body.get("response_format"), tools)
    system, messages = _conversation(body.get("messages"))
    converse: dict[str, Any] = {"messages": messages}
    if system:
        converse["system"] = system
    inference = _inference_config(body)
    if inference:
        converse["inferenceConfig"] = inference
    tool_config = _tool_config(tools, choice, json_tool, messages)
    if tool_config:
        converse["toolConfig"] = tool_config
    return converse


# Parameters that change the answer and that Converse cannot honour: refused
# unless they hold their neutral value (null is always neutral).
_UNSUPPORTED: tuple[tuple[str, str, Callable[[Any], bool]], ...] = (
    ("logprobs", "log probabilities", lambda v: v is False),
    ("top_logprobs", "log probabilities", lambda v: _is_int(v) and v == 0),
    ("logit_bias", "logit biases", lambda v: isinstance(v, dict) and not v),
    ("presence_penalty", "presence penalties", lambda v: _is_number(v) and v == 0),
    ("frequency_penalty", "frequency penalties", lambda v: _is_number(v) and v == 0),
    ("seed", "seeded sampling", lambda v: False),
    ("audio", "audio output", lambda v: False),
    ("modalities", "output modalities other than text", lambda v: v == ["text"]),
    ("prediction", "predicted outputs", lambda v: False),
    ("web_search_options", "web search", lambda v: False),
    ("moderation", "OpenAI moderation", lambda v: False),
    ("functions", "the deprecated functions parameter (use tools)", lambda v: v == []),
    ("function_call", "the deprecated function_call parameter (use tool_choice)", lambda v: v == "none"),
    ("reasoning_effort", "reasoning_effort", lambda v: v == "none"),
    ("verbosity", "verbosity", lambda v: v == "medium"),
)


def _refuse_unsupported(body: dict[str, Any]) -> None:
    for name, what, neutral in _UNSUPPORTED:
        value = body.get(name)
        if value is not None and not neutral(value):
            raise invalid(f"{name}: Bedrock does not support {what}; omit it", param=name)
    n = body.get("n")
    if n is not None and not (_is_int(n) and n == 1):
        if _is_int(n) and n > 1:
            raise invalid("n: Bedrock does not support more than one choice per request; send n=1 or omit it",
                          param="n")
        raise invalid("n: must be 1", param="n")


def _parallel_tool_calls(body: dict[str, Any], tools: list[dict[str, Any]]) -> None:
    value = _optional_bool(body, "parallel_tool_calls")
    if value is False and tools:
        raise invalid(
            "parallel_tool_calls: Bedrock does not support limiting the model to one tool call per turn; "
            "omit it or send true",
            param="parallel_tool_calls",
        )


def _tools(tools: Any) -> list[dict[str, Any]]:
    """The ``toolSpec`` of each function tool (an empty list when there are none)."""
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise invalid("tools: must be a list of tools", param="tools")
    specs: list[dict[str, Any]] = []
    names: set[str] = set()
    for i, tool in enumerate(tools):
        p = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise invalid(f"{p}: must be an object", param=p)
        if tool.get("type") != "function":
            raise invalid(f"{p}.type: must be \"function\" (Bedrock does not support custom tools)",
                          param=f"{p}.type")
        function = tool.get("function")
        if not isinstance(function, dict):
            raise invalid(f"{p}.function: must be an object", param=f"{p}.function")
        name = function.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
            raise invalid(f"{p}.function.name: must be 1 to 64 letters, digits, underscores or dashes",
                          param=f"{p}.function.name")
        if name in names:
            raise invalid(f"{p}.function.name: tool {name!r} is declared twice", param=f"{p}.function.name")
        names.add(name)
        description = function.get("description")
        if description is not None and not isinstance(description, str):
            raise invalid(f"{p}.function.description: must be a string", param=f"{p}.function.description")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise invalid(f"{p}.function.parameters: must be a JSON schema object", param=f"{p}.function.parameters")
        _optional_bool(function, "strict", f"{p}.function.")
        spec: dict[str, Any] = {"name": name}
        if description:  # Converse's description is a non-empty string
            spec["description"] = description
        # No parameters (or {}) means a function without arguments, whose input is an empty object.
        spec["inputSchema"] = {"json": parameters or _EMPTY_OBJECT_SCHEMA}
        specs.append(spec)
    return specs


def _tool_choice(choice: Any, tools: list[dict[str, Any]]) -> dict[str, Any] | str | None:
    """Converse's ``toolChoice``, ``"none"``, or None when the client left it to the default."""
    if choice is None:
        return None
    if not tools:
        raise invalid("tool_choice: only allowed when tools are given", param="tool_choice")
    if choice == "none":
        return "none"
    if choice == "auto":
        return {"auto": {}}
    if choice == "required":
        return {"any": {}}
    if isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str):
            raise invalid("tool_choice.function.name: field required", param="tool_choice.function.name")
        if name not in {spec["name"] for spec in tools}:
            raise invalid(f"tool_choice.function.name: {name!r} is not one of the tools",
                          param="tool_choice.function.name")
        return {"tool": {"name": name}}
    if isinstance(choice, dict) and choice.get("type") in ("allowed_tools", "custom"):
        raise invalid(f"tool_choice: type {choice['type']!r} is not supported by Bedrock; "
                      "use \"auto\", \"required\", \"none\" or a function", param="tool_choice")
    raise invalid("tool_choice: must be \"none\", \"auto\", \"required\" or "
                  "{\"type\": \"function\", \"function\": {\"name\": ...}}", param="tool_choice")


def _response_format(response_format: Any, tools: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The ``toolSpec`` of the forced tool serving JSON output, or None for text."""
    if response_format is None:
        return None
    if not isinstance(response_format, dict):
        raise invalid("response_format: must be an object", param="response_format")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind not in ("json_object", "json_schema"):
        raise invalid("response_format.type: must be \"text\", \"json_object\" or \"json_schema\"",
                      param="response_format.type")
    if tools:
        raise invalid(
            "response_format: JSON output cannot be combined with tools on Bedrock: the gateway produces "
            "JSON through a forced tool call, which leaves the model no choice of your tools",
            param="response_format",
        )
    if kind == "json_object":
        return {"name": JSON_TOOL_NAME, "description": _JSON_TOOL_DESCRIPTION,
                "inputSchema": {"json": {"type": "object"}}}
    spec = response_format.get("json_schema")
    p = "response_format.json_schema"
    if not isinstance(spec, dict):
        raise invalid(f"{p}: must be an object", param=p)
    name = spec.get("name", JSON_TOOL_NAME)
    if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
        raise invalid(f"{p}.name: must be 1 to 64 letters, digits, underscores or dashes", param=f"{p}.name")
    schema = spec.get("schema")
    if schema is not None and not isinstance(schema, dict):
        raise invalid(f"{p}.schema: must be a JSON schema object", param=f"{p}.schema")
    if schema and schema.get("type", "object") != "object":
        raise invalid(f"{p}.schema: the root must be {{\"type\": \"object\"}}: Bedrock returns JSON as the "
                      "input of a tool call, which is always an object", param=f"{p}.schema")
    description = spec.get("description")
    if description is not None and not isinstance(description, str):
        raise invalid(f"{p}.description: must be a string", param=f"{p}.description")
    _optional_bool(spec, "strict", f"{p}.")
    return {"name": name, "description": description or _JSON_TOOL_DESCRIPTION,
            "inputSchema": {"json": schema or {"type": "object"}}}


def _tool_config(
    tools: list[dict[str, Any]],
    choice: dict[str, Any] | str | None,
    json_tool: dict[str, Any] | None,
    messages: list[dict[str, Any]],
) -> dict[str, Any] | None:
    in_history = _tool_names_in(messages)
    has_tool_blocks = any("toolUse" in b or "toolResult" in b for m in messages for b in m["content"])
    specs = [json_tool] if json_tool else list(tools)
    if json_tool:
        choice = {"tool": {"name": json_tool["name"]}}
    elif choice == "none":
        if not has_tool_blocks:
            return None  # withholding the tools is Converse's "none"
        choice = {"auto": {}}  # Converse requires toolConfig with tool blocks in the history
    if not tools and has_tool_blocks:
        declared = {spec["name"] for spec in specs}
        specs += [{"name": name, "inputSchema": {"json": {"type": "object"}}}
                  for name in in_history if name not in declared]
    if not specs:
        return None
    config: dict[str, Any] = {"tools": [{"toolSpec": spec} for spec in specs]}
    if choice is not None:
        config["toolChoice"] = choice
    return config


def _tool_names_in(messages: list[dict[str, Any]]) -> list[str]:
    names = (b["toolUse"]["name"] for m in messages for b in m["content"] if "toolUse" in b)
    return list(dict.fromkeys(names))


def _inference_config(body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    max_tokens = _optional_positive_int(body, "max_tokens")
    max_completion_tokens = _optional_positive_int(body, "max_completion_tokens")
    if max_tokens is not None and max_completion_tokens is not None and max_tokens != max_completion_tokens:
        raise invalid("max_completion_tokens: disagrees with max_tokens; send one of them",
                      param="max_completion_tokens")
    limit = max_completion_tokens if max_completion_tokens is not None else max_tokens
    if limit is not None:
        config["maxTokens"] = limit
    temperature = body.get("temperature")
    if temperature is not None:
        # The upper bound depends on the model: checked by to_converse_body.
        if not _is_number(temperature) or temperature < 0:
            raise invalid("temperature: must be a number of at least 0", param="temperature")
        config["temperature"] = temperature
    top_p = body.get("top_p")
    if top_p is not None:
        if not _is_number(top_p) or not 0 <= top_p <= 1:
            raise invalid("top_p: must be a number between 0 and 1", param="top_p")
        config["topP"] = top_p
    stop = body.get("stop")
    if stop is not None:
        sequences = [stop] if isinstance(stop, str) else stop
        if not isinstance(sequences, list) or len(sequences) > _MAX_STOP_SEQUENCES:
            raise invalid(f"stop: must be a string or a list of at most {_MAX_STOP_SEQUENCES} strings", param="stop")
        for k, sequence in enumerate(sequences):
            p = "stop" if isinstance(stop, str) else f"stop[{k}]"
            if not isinstance(sequence, str) or not sequence:
                raise invalid(f"{p}: must be a non-empty string", param=p)
        if sequences:
            config["stopSequences"] = sequences
    return config


# -- messages --------------------------------------------------------------


def _conversation(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Converse ``system`` blocks and alternating ``messages`` for OpenAI messages."""
    if not isinstance(messages, list) or not messages:
        raise invalid("messages: field required (a non-empty list of messages)", param="messages")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    first_message: list[int] = []  # index of the message that opened each turn, for errors
    pending: set[str] = set()  # tool call ids of the last assistant turn not answered yet

    def append(role: str, blocks: list[dict[str, Any]], index: int) -> None:
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
            first_message.append(index)

    for i, message in enumerate(messages):
        p = f"messages[{i}]"
        if not isinstance(message, dict):
            raise invalid(f"{p}: must be an object", param=p)
        role = message.get("role")
        if role in ("system", "developer"):
            system += [{"text": text} for text in _texts(message.get("content"), f"{p}.content") if text]
        elif role == "user":
            append("user", _user_blocks(message.get("content"), f"{p}.content"), i)
        elif role == "assistant":
            if not turns:
                raise invalid(
                    f"{p}.role: the conversation must start with a user message (Bedrock requires it), "
                    "but an assistant message comes first",
                    param=f"{p}.role",
                )
            blocks = _assistant_blocks(message, p)
            if blocks:
                if turns[-1]["role"] != "assistant":
                    pending = set()
                pending |= {b["toolUse"]["toolUseId"] for b in blocks if "toolUse" in b}
                append("assistant", blocks, i)
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise invalid(f"{p}.tool_call_id: field required (a string)", param=f"{p}.tool_call_id")
            if call_id not in pending:
                raise invalid(
                    f"{p}.tool_call_id: {call_id!r} answers no tool call of the assistant message before it",
                    param=f"{p}.tool_call_id",
                )
            pending.discard(call_id)
            content = [{"text": text} for text in _texts(message.get("content"), f"{p}.content") if text]
            append("user", [{"toolResult": {"toolUseId": call_id, "content": content}}], i)
        elif role is None:
            raise invalid(f"{p}.role: field required", param=f"{p}.role")
        elif role == "function":
            raise invalid(f"{p}.role: the deprecated \"function\" role is not supported; use \"tool\"",
                          param=f"{p}.role")
        else:
            raise invalid(f"{p}.role: must be one of system, developer, user, assistant, tool", param=f"{p}.role")

    if not turns:
        raise invalid("messages: must contain a user message (system messages alone are not a conversation)",
                      param="messages")
    for turn, index in zip(turns, first_message):
        if turn["role"] == "user":
            if not turn["content"]:
                raise invalid(f"messages[{index}].content: must not be empty (Bedrock rejects empty text)",
                              param=f"messages[{index}].content")
            # Tool results first: Claude refuses a user turn where text comes before them.
            turn["content"].sort(key=lambda block: "toolResult" not in block)
    return system, turns


def _texts(content: Any, p: str) -> list[str]:
    """The text of a system, developer or tool message: a string or text parts."""
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        raise invalid(f"{p}: must be a string or a list of text parts", param=p)
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise invalid(f"{p}[{j}]: must be an object", param=f"{p}[{j}]")
        if part.get("type") != "text":
            raise invalid(f"{p}[{j}].type: only text parts are allowed here", param=f"{p}[{j}].type")
        texts.append(_part_text(part, f"{p}[{j}]"))
    return texts


def _user_blocks(content: Any, p: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise invalid(f"{p}: must be a string or a list of content parts", param=p)
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        q = f"{p}[{j}]"
        if not isinstance(part, dict):
            raise invalid(f"{q}: must be an object", param=q)
        kind = part.get("type")
        if kind == "text":
            text = _part_text(part, q)
            if text:
                blocks.append({"text": text})
        elif kind == "image_url":
            blocks.append(_image(part.get("image_url"), f"{q}.image_url"))
        else:
            raise invalid(f"{q}.type: content parts of type {kind!r} are not supported on Bedrock; "
                          "send text or image_url parts", param=f"{q}.type")
    return blocks


def _part_text(part: dict[str, Any], p: str) -> str:
    text = part.get("text")
    if not isinstance(text, str):
        raise invalid(f"{p}.text: must be a string", param=f"{p}.text")
    return text


def _image(image_url: Any, p: str) -> dict[str, Any]:
    """An image part: only inline ``data:`` URLs, never remote ones."""
    if not isinstance(image_url, dict):
        raise invalid(f"{p}: must be an object with a url", param=p)
    url = image_url.get("url")
    p = f"{p}.url"
    if not isinstance(url, str):
        raise invalid(f"{p}: must be a string", param=p)
    if url[:8].lower().startswith(("http://", "https://")):
        raise invalid(
            f"{p}: remote image URLs are refused: fetching them from the gateway would be a server-side "
            "request forgery hole; send the image inline as a data: URL (data:image/png;base64,...)",
            param=p,
        )
    if url[:5].lower() != "data:":
        raise invalid(f"{p}: must be a data: URL (data:image/png;base64,...)", param=p)
    header, comma, data = url[5:].partition(",")
    media_type, *parameters = header.split(";")
    if not comma or "base64" not in (x.strip().lower() for x in parameters):
        raise invalid(f"{p}: must be a base64 data: URL (data:image/png;base64,...)", param=p)
    image_format = _IMAGE_FORMATS.get(media_type.strip().lower())
    if image_format is None:
        raise invalid(f"{p}: image type {media_type!r} is not supported; send png, jpeg, gif or webp", param=p)
    try:
        decoded = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"{p}: the image data is not valid base64", param=p) from None
    if not decoded:
        raise invalid(f"{p}: the image is empty", param=p)
    return {"image": {"format": image_format, "source": {"bytes": data}}}


def _assistant_blocks(message: dict[str, Any], p: str) -> list[dict[str, Any]]:
    """Text and ``toolUse`` blocks of an assistant message (empty text dropped)."""
    for name in ("audio", "function_call"):
        if message.get(name) is not None:
            raise invalid(f"{p}.{name}: not supported on Bedrock", param=f"{p}.{name}")
    content = message.get("content")
    texts: list[str] = []
    if isinstance(content, str):
        texts = [content]
    elif isinstance(content, list):
        for j, part in enumerate(content):
            q = f"{p}.content[{j}]"
            if not isinstance(part, dict):
                raise invalid(f"{q}: must be an object", param=q)
            if part.get("type") == "text":
                texts.append(_part_text(part, q))
            elif part.get("type") == "refusal":
                refusal = part.get("refusal")
                if not isinstance(refusal, str):
                    raise invalid(f"{q}.refusal: must be a string", param=f"{q}.refusal")
                texts.append(refusal)
            else:
                raise invalid(f"{q}.type: assistant content parts must be text or refusal", param=f"{q}.type")
    elif content is not None:
        raise invalid(f"{p}.content: must be a string, a list of text parts or null", param=f"{p}.content")
    refusal = message.get("refusal")
    if refusal is not None and not isinstance(refusal, str):
        raise invalid(f"{p}.refusal: must be a string or null", param=f"{p}.refusal")
    if refusal and not any(texts):
        texts = [refusal]  # the model's earlier answer was this refusal
    blocks: list[dict[str, Any]] = [{"text": text} for text in texts if text]

    calls = message.get("tool_calls")
    if calls is None:
        return blocks
    if not isinstance(calls, list):
        raise invalid(f"{p}.tool_calls: must be a list", param=f"{p}.tool_calls")
    for j, call in enumerate(calls):
        q = f"{p}.tool_calls[{j}]"
        if not isinstance(call, dict):
            raise invalid(f"{q}: must be an object", param=q)
        if call.get("type", "function") != "function":
            raise invalid(f"{q}.type: must be \"function\" (Bedrock does not support custom tools)",
                          param=f"{q}.type")
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            raise invalid(f"{q}.id: field required (a string)", param=f"{q}.id")
        function = call.get("function")
        if not isinstance(function, dict):
            raise invalid(f"{q}.function: must be an object", param=f"{q}.function")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise invalid(f"{q}.function.name: field required (a string)", param=f"{q}.function.name")
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            raise invalid(f"{q}.function.arguments: must be a string holding a JSON object",
                          param=f"{q}.function.arguments")
        try:
            tool_input = jsonwire.load(arguments, "arguments") if arguments.strip() else {}
        except GatewayError:
            tool_input = None
        if not isinstance(tool_input, dict):
            raise invalid(f"{q}.function.arguments: must be a JSON object encoded as a string",
                          param=f"{q}.function.arguments")
        blocks.append({"toolUse": {"toolUseId": call_id, "name": name, "input": tool_input}})
    return blocks


# -- response --------------------------------------------------------------


def from_converse_response(
    raw: bytes, *, request: ChatRequest, model: str, completion_id: str, created: int
) -> tuple[bytes, Usage]:
    """A ``chat.completion`` body for a successful Converse answer, and its usage.

    ``model`` is the name the client asked for (not the Bedrock model id).
    An answer that is not a Converse response raises a 502 ``GatewayError``.
    """
    answer, content = _read_answer(raw)
    json_tool = _json_tool_name(request.body)
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    json_answer: str | None = None
    for block in content:
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block.get("toolUse"), dict):
            use = block["toolUse"]
            arguments = json.dumps(use.get("input", {}), ensure_ascii=False)
            if json_tool is not None and json_answer is None and use.get("name") == json_tool:
                json_answer = arguments
            else:
                tool_calls.append({"id": use.get("toolUseId"), "type": "function",
                                   "function": {"name": use.get("name"), "arguments": arguments}})
        # reasoningContent, citations and the like are not part of an OpenAI answer's content.

    finish_reason = FINISH_REASONS.get(answer.get("stopReason"), "stop")
    if finish_reason == "tool_calls" and not tool_calls:
        finish_reason = "stop"  # the forced JSON tool answered: for the client that is the answer itself
    reply: dict[str, Any] = {"role": "assistant"}
    # With JSON output the forced tool's input is the answer; any text around it is not JSON.
    reply["content"] = json_answer if json_answer is not None else ("".join(texts) if texts else None)
    if tool_calls:
        reply["tool_calls"] = tool_calls
    reply["refusal"] = None

    usage = _usage(answer.get("usage"))
    completion = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": reply, "finish_reason": finish_reason, "logprobs": None}],
        "usage": openai_usage(usage),
    }
    return jsonwire.dumps(completion), usage


def converse_usage(usage: Any) -> Usage:
    """The :class:`Usage` of a Converse ``usage`` object (an answer's, or a stream's ``metadata``)."""
    return _usage(usage)


def openai_usage(usage: Usage) -> dict[str, Any]:
    """The Chat Completions ``usage`` object: ``prompt_tokens`` adds cache reads and writes back."""
    prompt_tokens = usage.input + usage.cache_read + usage.cache_write
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": usage.output,
        "total_tokens": prompt_tokens + usage.output,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read},
    }


def json_tool_name(request: ChatRequest) -> str | None:
    """The forced tool's name when the request's ``response_format`` asks for JSON, else None."""
    return _json_tool_name(request.body)


def _read_answer(raw: bytes) -> tuple[dict[str, Any], list[Any]]:
    """The Converse answer and its message's content blocks; 502 when it is not one."""
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = None
    output = answer.get("output") if isinstance(answer, dict) else None
    message = output.get("message") if isinstance(output, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(answer, dict) or not isinstance(content, list):
        raise GatewayError(502, Kind.UPSTREAM, "Bedrock's Converse answer could not be read: it has no output message")
    return answer, content


def _usage(usage: Any) -> Usage:
    """Converse ``usage``: ``inputTokens`` excludes cache reads and writes."""
    if not isinstance(usage, dict):
        return Usage()

    def count(name: str) -> int:
        value = usage.get(name)
        return value if _is_int(value) and value > 0 else 0

    return Usage(
        input=count("inputTokens"),
        output=count("outputTokens"),
        cache_read=count("cacheReadInputTokens"),
        cache_write=count("cacheWriteInputTokens"),
    )


def _json_tool_name(body: dict[str, Any]) -> str | None:
    """The forced tool's name when ``response_format`` asks for JSON."""
    response_format = body.get("response_format")
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_object":
        return JSON_TOOL_NAME
    if response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema")
        name = spec.get("name") if isinstance(spec, dict) else None
        return name if isinstance(name, str) and name else JSON_TOOL_NAME
    return None


# -- helpers ---------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _optional_bool(obj: dict[str, Any], name: str, prefix: str = "") -> bool | None:
    value = obj.get(name)
    if value is not None and not isinstance(value, bool):
        raise invalid(f"{prefix}{name}: must be a boolean", param=f"{prefix}{name}")
    return value


def _optional_positive_int(obj: dict[str, Any], name: str) -> int | None:
    value = obj.get(name)
    if value is not None and (not _is_int(value) or value < 1):
        raise invalid(f"{name}: must be an integer of at least 1", param=name)
    return value
