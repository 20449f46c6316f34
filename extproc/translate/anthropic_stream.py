"""Bedrock InvokeModelWithResponseStream (Claude) → Anthropic Messages SSE, incrementally.

Each event-stream ``chunk`` frame carries one Anthropic stream event,
base64-encoded (wire-formats §2). The event's JSON is relayed as it came
(``event: <type>\\ndata: <json>\\n\\n``), except ``message_stop``, from which
Bedrock's ``amazon-bedrock-invocationMetrics`` is removed: clients of the
Anthropic API never see it, but the gateway meters from it.

Usage, exactly once: Anthropic's usage numbers are cumulative (``message_start``
has the input and cache counts, each ``message_delta`` the output so far, and
may repeat the others), and the invocation metrics repeat the totals. So each
token type is the largest value any of these reported, never a sum.

An exception frame, a corrupt frame, or a stream that ends before
``message_stop`` becomes one ``event: error`` in the Anthropic shape, after
which nothing more is sent: the SDK raises instead of hanging or returning a
silently cut answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from .. import jsonwire
from ..bedrock.errors import from_stream_exception
from ..bedrock.eventstream import Decoder, EventStreamError, Frame, chunk_event, exception_message
from ..errors import Api, GatewayError, Kind
from ..guardrails.enforce import StreamRedactor
from ..usage import Usage
from .anthropic_invoke import UsageCounter

_METRICS = "amazon-bedrock-invocationMetrics"
# Delta types whose text the guardrail policy reads, and the field holding it.
_DELTA_FIELDS = {"text_delta": "text", "input_json_delta": "partial_json"}
# Events that carry no usage, recognised by their leading "type" (parsed normally otherwise).
_DELTA = re.compile(rb'\{\s*"type"\s*:\s*"(content_block_delta|content_block_start|content_block_stop|ping)"')


def sse(event: str, data: bytes) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


class InvokeStreamToSSE:
    relays = False

    def __init__(self, make_redactor: Callable[[], StreamRedactor] | None = None) -> None:
        """``make_redactor``: the guardrail policy for answer text, one redactor per text block."""
        self._make_redactor = make_redactor
        self._redactors: dict[object, tuple[StreamRedactor, str]] = {}
        self._decoder = Decoder()
        self._usage = UsageCounter()
        self.complete = False
        self.error: str | None = None
        self._finished = False

    @property
    def usage(self) -> Usage:
        return self._usage.usage

    def feed(self, chunk: bytes) -> bytes:
        if self.error is not None or self.complete:
            return b""
        try:
            frames = self._decoder.feed(chunk)
        except EventStreamError as exc:
            return self._events(exc.frames) + self._fail(GatewayError(502, Kind.UPSTREAM, f"Bedrock's stream was corrupt: {exc}"), "stream_corrupt")
        return self._events(frames)

    def finish(self) -> bytes:
        """The upstream body ended: anything short of ``message_stop`` is an error for the client."""
        if self._finished:
            return b""
        self._finished = True
        if self.complete or self.error is not None:
            return b""
        return self._fail(GatewayError(502, Kind.UPSTREAM, "Bedrock's stream ended before the answer was complete"),
                          "stream_truncated")

    def _events(self, frames: list[Frame]) -> bytes:
        out = bytearray()
        for frame in frames:
            if self.error is not None or self.complete:
                break
            if frame.message_type != "event":
                name = frame.exception_type or frame.message_type or "stream_error"
                out += self._fail(from_stream_exception(name, exception_message(frame)), name)
                break
            if frame.event_type != "chunk":
                continue
            try:
                raw = chunk_event(frame)
                # Most events are deltas, which carry no usage: relay them without parsing
                # (unless their text must pass the guardrail policy).
                delta = _DELTA.match(raw) if self._make_redactor is None else None
                if delta is not None:
                    out += sse(delta.group(1).decode(), raw)
                    continue
                event = json.loads(raw)
                kind = str(event["type"])
            except (EventStreamError, ValueError, KeyError, TypeError, RecursionError) as exc:
                out += self._fail(GatewayError(502, Kind.UPSTREAM, f"unreadable stream event from Bedrock: {exc}"),
                                  "stream_corrupt")
                break
            self._usage.count(event)
            if kind == "message_stop":
                self.complete = True
                if _METRICS in event:
                    del event[_METRICS]
                    raw = json.dumps(event, separators=(",", ":")).encode()
            elif self._make_redactor is not None and kind in ("content_block_delta", "content_block_stop"):
                out += self._guarded(kind, event, raw)
                continue
            out += sse(kind, raw)
        return bytes(out)

    def _guarded(self, kind: str, event: dict[str, Any], raw: bytes) -> bytes:
        """A text or tool-input delta goes through its block's redactor; the block's end flushes it.

        Tool input arrives as fragments of JSON text (``partial_json``); a
        placeholder inside a JSON string keeps it valid JSON.
        """
        assert self._make_redactor is not None
        index = event.get("index")
        if kind == "content_block_stop":
            held = self._redactors.pop(index, None)
            rest = held[0].flush() if held is not None else ""
            flushed = b""
            if held is not None and rest:
                delta_type, field = held[1], _DELTA_FIELDS[held[1]]
                flushed = sse("content_block_delta", jsonwire.dumps(
                    {"type": "content_block_delta", "index": index, "delta": {"type": delta_type, field: rest}}))
            return flushed + sse(kind, raw)
        delta = event.get("delta")
        delta_type = delta.get("type") if isinstance(delta, dict) else None
        field = _DELTA_FIELDS.get(delta_type)  # type: ignore[arg-type]
        if field is None or not isinstance(delta[field], str):  # type: ignore[index]
            return sse(kind, raw)  # thinking and signature deltas are relayed as they are
        if index not in self._redactors:
            self._redactors[index] = (self._make_redactor(), str(delta_type))
        text = self._redactors[index][0].feed(delta[field])  # type: ignore[index]
        if not text:
            return b""
        delta[field] = text  # type: ignore[index]
        return sse(kind, jsonwire.dumps(event))

    def _fail(self, error: GatewayError, code: str) -> bytes:
        self.error = code
        return sse("error", error.render(Api.ANTHROPIC)[2])
