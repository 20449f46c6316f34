"""The event sequences of InvokeModelWithResponseStream and ConverseStream.

Both are generators, so each event is built at the moment it is sent: the
latencies Bedrock reports at the end of a stream (``invocationLatency``,
``firstByteLatency``, ``latencyMs``) are then real measurements, including any
``slow`` marker delay. InvokeModel's stream wraps each Anthropic stream event,
base64-encoded, in a ``chunk`` event; ConverseStream sends its own members
(``messageStart``, ``contentBlockDelta``…) directly.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from typing import Any

from .eventstream import event_frame
from .replies import Reply, anthropic_usage, converse_usage

_WORDS_PER_DELTA = 3


class Clock:
    """Milliseconds since the request arrived, and when the first byte left."""

    def __init__(self) -> None:
        self._start = time.monotonic()
        self.first_byte_ms: int | None = None

    def elapsed_ms(self) -> int:
        return int((time.monotonic() - self._start) * 1000)

    def mark_first_byte(self) -> None:
        if self.first_byte_ms is None:
            self.first_byte_ms = self.elapsed_ms()


class Reported:
    """The token usage a stream has put on the wire so far, for ``/_emulator/requests``.

    A generator notes the usage a frame carries just before yielding it
    (``pending``); the writer calls :meth:`sent` once the frame is written. So
    a client that leaves mid-stream is known to have been told only what it
    was sent, which is what a gateway can meter. Output tokens are a running
    total in Anthropic streams (``message_delta`` supersedes ``message_start``).
    """

    def __init__(self) -> None:
        self.usage: dict[str, int] = {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0}
        self.pending: dict[str, int] = {}

    def note(self, **usage: int) -> None:
        self.pending = usage

    def sent(self) -> None:
        self.usage.update(self.pending)
        self.pending = {}


def text_pieces(text: str) -> list[str]:
    """The text in a few deltas of about three words, as a model would stream it."""
    words = re.findall(r"\s*\S+", text)
    return ["".join(words[i : i + _WORDS_PER_DELTA]) for i in range(0, len(words), _WORDS_PER_DELTA)]


def json_pieces(document: str) -> list[str]:
    """A tool input in two fragments: clients must join ``partial_json`` themselves."""
    middle = len(document) // 2
    return [document[:middle], document[middle:]]


def _chunk(event: dict[str, Any]) -> bytes:
    encoded = base64.b64encode(json.dumps(event, separators=(",", ":")).encode("utf-8")).decode("ascii")
    return event_frame("chunk", {"bytes": encoded})


def anthropic_frames(reply: Reply, model_name: str, clock: Clock, reported: Reported | None = None) -> Iterator[bytes]:
    """InvokeModelWithResponseStream: one ``chunk`` frame per Anthropic stream event."""
    message: dict[str, Any] = {
        "id": reply.message_id,
        "type": "message",
        "role": "assistant",
        "model": model_name,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        # Like the real API, message_start reports the output so far; the total comes in message_delta.
        "usage": anthropic_usage(reply, 1),
    }
    clock.mark_first_byte()
    reported = reported or Reported()
    reported.note(input=reply.input_tokens, output=1, cache_read=reply.cache_read_tokens,
                  cache_write=reply.cache_write_tokens)
    yield _chunk({"type": "message_start", "message": message})
    yield _chunk({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    for piece in text_pieces(reply.text):
        yield _chunk({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}})
    yield _chunk({"type": "content_block_stop", "index": 0})
    if reply.tool_call:
        call = reply.tool_call
        start = {"type": "tool_use", "id": call.anthropic_id, "name": call.name, "input": {}}
        yield _chunk({"type": "content_block_start", "index": 1, "content_block": start})
        for piece in json_pieces(call.input_json()):
            delta = {"type": "input_json_delta", "partial_json": piece}
            yield _chunk({"type": "content_block_delta", "index": 1, "delta": delta})
        yield _chunk({"type": "content_block_stop", "index": 1})
    reported.note(output=reply.output_tokens)
    yield _chunk(
        {
            "type": "message_delta",
            "delta": {"stop_reason": reply.stop_reason, "stop_sequence": reply.stop_sequence},
            "usage": {"output_tokens": reply.output_tokens},
        }
    )
    metrics = {
        "inputTokenCount": reply.input_tokens,
        "outputTokenCount": reply.output_tokens,
        "invocationLatency": clock.elapsed_ms(),
        "firstByteLatency": clock.first_byte_ms,
    }
    if reply.cache_read_tokens or reply.cache_write_tokens:
        metrics |= {"cacheReadInputTokenCount": reply.cache_read_tokens,
                    "cacheWriteInputTokenCount": reply.cache_write_tokens}
    yield _chunk({"type": "message_stop", "amazon-bedrock-invocationMetrics": metrics})


def converse_frames(reply: Reply, clock: Clock, reported: Reported | None = None) -> Iterator[bytes]:
    """ConverseStream: text blocks have no start event, tool blocks do (as in real captures)."""
    clock.mark_first_byte()
    yield event_frame("messageStart", {"role": "assistant"})
    for piece in text_pieces(reply.text):
        yield event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}})
    yield event_frame("contentBlockStop", {"contentBlockIndex": 0})
    if reply.tool_call:
        call = reply.tool_call
        start = {"toolUse": {"toolUseId": call.converse_id, "name": call.name}}
        yield event_frame("contentBlockStart", {"contentBlockIndex": 1, "start": start})
        for piece in json_pieces(call.input_json()):
            yield event_frame("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": piece}}})
        yield event_frame("contentBlockStop", {"contentBlockIndex": 1})
    yield event_frame("messageStop", {"stopReason": reply.stop_reason})
    (reported or Reported()).note(input=reply.input_tokens, output=reply.output_tokens,
                                  cache_read=reply.cache_read_tokens, cache_write=reply.cache_write_tokens)
    yield event_frame("metadata", {"usage": converse_usage(reply), "metrics": {"latencyMs": clock.elapsed_ms()}})
