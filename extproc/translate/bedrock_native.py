"""Bedrock-native routes: answers pass through untouched, only read for metering.

boto3 and Claude Code's Bedrock mode already speak Bedrock, so the gateway
does not translate their answers: JSON bodies and event streams reach the
client byte for byte with their own content type (Claude Code refuses an
event stream relabelled as SSE). A copy is read for usage: the JSON usage
fields, or, for streams, the frames decoded as they pass.
"""

from __future__ import annotations

import json
from typing import Any

from ..bedrock.eventstream import Decoder, EventStreamError, chunk_event
from ..usage import Usage
from .anthropic_invoke import UsageCounter

_METRICS = "amazon-bedrock-invocationMetrics"
from .openai_converse import converse_usage


def answer_usage(action: str, anthropic_body: bool, headers: dict[str, str], body: bytes) -> Usage:
    """Usage of a successful JSON answer to ``action``."""
    if action == "count-tokens":
        return Usage()  # counting tokens consumes none
    try:
        answer: Any = json.loads(body)
    except (ValueError, RecursionError):
        answer = None
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
    """Relays an event stream unchanged while reading a copy for usage."""

    relays = True

    def __init__(self, action: str) -> None:
        self._converse = action == "converse-stream"
        self._decoder = Decoder()
        self._anthropic = UsageCounter()
        self._converse_usage = Usage()
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
        for frame in frames:
            if frame.message_type != "event":
                self.error = frame.exception_type or frame.message_type or "stream_error"
                break
            try:
                if self._converse:
                    if frame.event_type == "metadata":
                        self._converse_usage = converse_usage(json.loads(frame.payload).get("usage"))
                        self.complete = True
                elif frame.event_type == "chunk":
                    event = json.loads(chunk_event(frame))
                    self._anthropic.count(event)
                    # Claude ends with message_stop; every model's last chunk carries the metrics.
                    self.complete = self.complete or event.get("type") == "message_stop" or _METRICS in event
            except (EventStreamError, ValueError, AttributeError, RecursionError):
                self.error = "stream_corrupt"
                break
        return b""

    def finish(self) -> bytes:
        if not self.complete and self.error is None:
            self.error = "stream_truncated"
        return b""
