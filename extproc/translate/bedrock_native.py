"""Bedrock-native routes: answers pass through untouched, only read for metering.

boto3 and Claude Code's Bedrock mode already speak Bedrock, so the gateway
does not translate their answers: JSON bodies and event streams reach the
client byte for byte with their own content type (Claude Code refuses an
event stream relabelled as SSE). A copy is read for usage: the JSON usage
fields, or, for streams, the frames decoded as they pass.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .. import jsonwire
from ..bedrock.eventstream import Decoder, EventStreamError, Frame, chunk_event, encode_chunk, encode_event, encode_frame
from ..guardrails.enforce import StreamRedactor
from ..usage import Usage
from .anthropic_invoke import UsageCounter

_METRICS = "amazon-bedrock-invocationMetrics"
_ANTHROPIC_FIELDS = {"text_delta": "text", "input_json_delta": "partial_json"}
from .openai_converse import converse_usage


def answer_usage(action: str, anthropic_body: bool, headers: dict[str, str], answer: Any) -> Usage:
    """Usage of a successful answer to ``action`` (``answer`` parsed, None if it was not JSON)."""
    if action == "count-tokens":
        return Usage()  # counting tokens consumes none
    if action == "converse" and isinstance(answer, dict):
        return converse_usage(answer.get("usage"))
    if anthropic_body and isinstance(answer, dict) and isinstance(answer.get("usage"), dict):
        usage = UsageCounter()
        usage.count(answer)
        return usage.usage
    # Other models' InvokeModel bodies differ; Bedrock's headers count for all of them.
    return Usage(
        input=_int(headers.get("x-amzn-bedrock-input-token-count")),
        output=_int(headers.get("x-amzn-bedrock-output-token-count")),
    )


def _int(value: str | None) -> int:
    return int(value) if value and value.isdigit() else 0


class EventStreamMeter:
    """Relays an event stream while reading a copy for usage.

    With a guardrail redactor (``make_redactor``), answer text is redacted in
    the frames themselves: a frame whose text changed is re-encoded, a block's
    held-back text is flushed as one more delta frame before its stop frame,
    and every other frame is re-encoded to the very bytes Bedrock sent (the
    client still gets a valid ``application/vnd.amazon.eventstream``).
    Without one, the stream is relayed untouched (``relays``).
    """

    def __init__(self, action: str, make_redactor: Callable[[], StreamRedactor] | None = None) -> None:
        self._converse = action == "converse-stream"
        self._decoder = Decoder()
        self._anthropic = UsageCounter()
        self._converse_usage = Usage()
        self._make_redactor = make_redactor
        self._redactors: dict[object, tuple[StreamRedactor, str]] = {}
        self.relays = make_redactor is None
        self.complete = False
        self.error: str | None = None

    @property
    def usage(self) -> Usage:
        return self._converse_usage if self._converse else self._anthropic.usage

    def feed(self, chunk: bytes) -> bytes:
        if self.error is not None:
            return b""
        try:
            frames = self._decoder.feed(chunk)
        except EventStreamError as exc:
            frames, self.error = exc.frames, "stream_corrupt"
        out = bytearray()
        for frame in frames:
            if frame.message_type != "event":
                self.error = frame.exception_type or frame.message_type or "stream_error"
                out += self._pass(frame)
                break
            try:
                out += self._event(frame)
            except (EventStreamError, ValueError, AttributeError, TypeError, RecursionError):
                self.error = "stream_corrupt"
                break
        return bytes(out)

    def _event(self, frame: Frame) -> bytes:
        if self._converse:
            payload = json.loads(frame.payload)
            if frame.event_type == "metadata":
                self._converse_usage = converse_usage(payload.get("usage"))
                self.complete = True
            elif self._make_redactor is not None and frame.event_type in ("contentBlockDelta", "contentBlockStop"):
                return self._converse_text(frame, payload)
            return self._pass(frame)
        if frame.event_type != "chunk":
            return self._pass(frame)
        event = json.loads(chunk_event(frame))
        self._anthropic.count(event)
        # Claude ends with message_stop; every model's last chunk carries the metrics.
        self.complete = self.complete or event.get("type") == "message_stop" or _METRICS in event
        if self._make_redactor is not None and event.get("type") in ("content_block_delta", "content_block_stop"):
            return self._anthropic_text(frame, event)
        return self._pass(frame)

    def _redacted(self, index: object, text: str, kind: str) -> str:
        assert self._make_redactor is not None
        if index not in self._redactors:
            self._redactors[index] = (self._make_redactor(), kind)
        return self._redactors[index][0].feed(text)

    def _flushed(self, index: object) -> tuple[str, str]:
        held = self._redactors.pop(index, None)
        return (held[0].flush(), held[1]) if held is not None else ("", "")

    def _anthropic_text(self, frame: Frame, event: dict[str, Any]) -> bytes:
        index = event.get("index")
        if event["type"] == "content_block_stop":
            rest, kind = self._flushed(index)
            extra = encode_chunk(jsonwire.dumps({"type": "content_block_delta", "index": index,
                                                 "delta": {"type": kind, _ANTHROPIC_FIELDS[kind]: rest}})) if rest else b""
            return extra + self._pass(frame)
        delta = event.get("delta")
        kind = delta.get("type") if isinstance(delta, dict) else None
        field = _ANTHROPIC_FIELDS.get(kind)  # type: ignore[arg-type]
        if field is None or not isinstance(delta[field], str):  # type: ignore[index]
            return self._pass(frame)
        text = delta[field]  # type: ignore[index]
        delta[field] = self._redacted(index, text, str(kind))  # type: ignore[index]
        return self._pass(frame) if delta[field] == text else encode_chunk(jsonwire.dumps(event))  # type: ignore[index]

    def _converse_text(self, frame: Frame, payload: dict[str, Any]) -> bytes:
        """Text deltas and tool-input fragments (JSON text) go through the block's redactor."""
        index = payload.get("contentBlockIndex")
        if frame.event_type == "contentBlockStop":
            rest, kind = self._flushed(index)
            delta = {"text": rest} if kind == "text" else {"toolUse": {"input": rest}}
            extra = encode_event("contentBlockDelta", jsonwire.dumps(
                {"contentBlockIndex": index, "delta": delta})) if rest else b""
            return extra + self._pass(frame)
        delta = payload.get("delta")
        holder: dict[str, Any] | None = None
        if isinstance(delta, dict) and isinstance(delta.get("text"), str):
            holder, field, kind = delta, "text", "text"
        elif isinstance(delta, dict) and isinstance(delta.get("toolUse"), dict) and isinstance(
                delta["toolUse"].get("input"), str):
            holder, field, kind = delta["toolUse"], "input", "toolUse"
        if holder is None:
            return self._pass(frame)
        text = holder[field]
        holder[field] = self._redacted(index, text, kind)
        if holder[field] == text:
            return self._pass(frame)
        payload.pop("p", None)
        return encode_event("contentBlockDelta", jsonwire.dumps(payload))

    def _pass(self, frame: Frame) -> bytes:
        """A frame unchanged: nothing to write when the whole stream is relayed as it is."""
        return b"" if self.relays else _reencode(frame)

    def finish(self) -> bytes:
        if not self.complete and self.error is None:
            self.error = "stream_truncated"
        return b""


def _reencode(frame: Frame) -> bytes:
    return encode_frame({k: v for k, v in frame.headers.items() if isinstance(v, str)}, frame.payload)
