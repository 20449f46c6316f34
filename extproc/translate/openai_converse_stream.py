"""Bedrock ConverseStream → OpenAI ``chat.completion.chunk`` server-sent events, incrementally.

The upstream body is an AWS event stream (wire-formats §3) whose frames are
ConverseStream members (§4): ``messageStart``, ``contentBlockStart``,
``contentBlockDelta``, ``contentBlockStop``, ``messageStop``, ``metadata``,
or an exception. Envoy hands it over in chunks cut anywhere, so
:class:`ConverseStreamToChunks` is fed chunk by chunk and answers each with the
SSE bytes it completes (§5): ``data: <compact JSON>\\n\\n`` lines, ending with
``data: [DONE]\\n\\n``. It is the streaming twin of
:func:`openai_converse.from_converse_response` and follows the same rules
(finish reasons, the forced JSON tool of ``response_format``, usage).

Choices (each deliberate):

* **Nothing is buffered but frames.** A text or tool-input delta becomes a
  chunk as soon as its frame is complete, except in JSON mode (below).
* **Empty deltas are dropped.** Bedrock sends ``toolUse.input: ""`` right
  after a tool block starts; the tool call's first chunk already carries
  ``"arguments": ""``, so an empty chunk would say nothing.
* **Tool calls** are numbered 0, 1, … in the order their blocks start; the
  Converse ``contentBlockIndex`` (which also counts text blocks) maps to that
  number for the input fragments. A fragment for a block that never started
  as a tool call cannot be given an id or a name and is dropped.
* **JSON ``response_format``.** The forced tool's input fragments are sent as
  ``content``. As in the non-streaming answer, any text the model writes
  around that tool call is not part of the JSON answer, so in JSON mode text
  is held back: dropped when the JSON tool starts, sent in one ``content``
  chunk at ``messageStop`` if the JSON tool never came (the model answered in
  text after all). ``finish_reason`` is ``tool_calls`` only when a real tool
  call was sent, never for the forced tool.
* **Errors after the 200.** Once the stream has started, the HTTP status is
  gone; an exception frame, a corrupt frame or a body that ends early becomes
  one ``data: {"error": {...}}`` event, in the shape of an OpenAI error body
  (the ``openai`` SDK raises :class:`openai.APIError` on it), and nothing is
  ever sent after it: no ``[DONE]``, which would tell the client the answer
  was whole. Exception frames map like the same Bedrock error before the
  stream (:func:`bedrock.errors.from_stream_exception`), with the exception
  name (``ThrottlingException``) as ``code``.
* **A clean end without ``metadata``** (the last frame was ``messageStop``):
  the answer is whole, so :meth:`ConverseStreamToChunks.finish` sends
  ``[DONE]``, but no usage chunk even when one was asked for: the usage is not
  known, and zeros would be a lie. A body cut inside a frame is truncated,
  even after ``messageStop``.
* **Frames after the end** (after ``[DONE]`` or an error) are ignored, and so
  are frames of event types this module does not know (Bedrock adds members
  over time) and ``reasoningContent`` / citation deltas, which are not part of
  an OpenAI answer's content. A known event whose payload is not a JSON object
  makes the stream corrupt: skipping it could silently drop part of the answer.
"""

from __future__ import annotations

import json
from typing import Any

from ..bedrock.errors import from_stream_exception
from ..bedrock.eventstream import Decoder, EventStreamError, Frame, exception_message
from ..errors import Api, GatewayError, Kind
from ..usage import Usage
from .. import jsonwire
from ..guardrails.enforce import StreamRedactor
from .openai_converse import FINISH_REASONS, ChatRequest, converse_usage, json_tool_name, openai_usage

__all__ = ["ConverseStreamToChunks", "CORRUPT", "TRUNCATED"]

CORRUPT = "stream_corrupt"
"""``code`` of the error event (and :attr:`ConverseStreamToChunks.error`) for an undecodable stream."""
TRUNCATED = "stream_truncated"
"""``code`` of the error event (and :attr:`ConverseStreamToChunks.error`) for a body that ended early."""

_DONE = b"data: [DONE]\n\n"
_OPEN_CHOICE = b'[{"index":0,"delta":'
_CLOSE_CHOICE = b',"finish_reason":null,"logprobs":null}]}\n\n'
_ROLE_DELTA = b'{"role":"assistant","content":""}'


class ConverseStreamToChunks:
    """One ConverseStream response body → the SSE body of an OpenAI streamed chat completion.

    Feed it the upstream body chunk by chunk with :meth:`feed`, then call
    :meth:`finish` when the body has ended; each returns the bytes to send to
    the client (possibly ``b""``). Not thread-safe; one per response.
    """

    relays = False

    usage: Usage
    """The usage of the stream's ``metadata`` event (zeros until it arrives); taken once."""
    complete: bool
    """True once the stream ended properly: ``messageStop`` and ``metadata`` seen, or
    ``[DONE]`` sent by :meth:`finish` after a clean end without ``metadata``."""
    error: str | None
    """The Bedrock exception name (``ThrottlingException``), :data:`CORRUPT` or :data:`TRUNCATED`
    once the stream ended in error; None otherwise."""

    def __init__(self, request: ChatRequest, *, model: str, completion_id: str, created: int,
                 redactor: StreamRedactor | None = None) -> None:
        """``redactor``: the guardrail policy for the answer's content, with a bounded hold-back."""
        self._redactor = redactor
        self._tool_redactors: dict[int, StreamRedactor] = {}
        self.usage = Usage()
        self.complete = False
        self.error = None
        self._include_usage = request.include_usage
        self._json_tool = json_tool_name(request)
        self._decoder = Decoder()
        # Every chunk starts alike: its envelope is encoded once.
        self._head = b"".join((
            b'data: {"id":', jsonwire.dumps(completion_id),
            b',"object":"chat.completion.chunk","created":', jsonwire.dumps(created),
            b',"model":', jsonwire.dumps(model),
            b',"choices":',
        ))
        self._started = False  # the role chunk was sent
        self._stopped = False  # messageStop was seen (and its finish chunk sent)
        self._have_metadata = False
        self._ended = False  # [DONE] or an error event was sent (finish() always sends one): nothing more, ever
        self._calls: dict[int, int] = {}  # Converse contentBlockIndex → OpenAI tool call index
        self._json_block: int | None = None  # contentBlockIndex of the forced JSON tool's block
        self._held_text: list[str] = []  # JSON mode: text held until we know whether the JSON tool answers

    # -- the interface ----------------------------------------------------------

    def feed(self, chunk: bytes) -> bytes:
        """The SSE bytes that ``chunk`` (the next upstream body bytes, split anywhere) completes."""
        if self._ended or not chunk:
            return b""
        out: list[bytes] = []
        try:
            frames = self._decoder.feed(chunk)
        except EventStreamError as exc:
            self._frames(exc.frames, out)  # whole frames before the corruption still count
            if not self._ended:  # they may have ended the stream already
                self._fail(out, GatewayError(502, Kind.UPSTREAM, f"Bedrock's response stream is corrupt: {exc}",
                                             code=CORRUPT))
            return b"".join(out)
        self._frames(frames, out)
        return b"".join(out)

    def finish(self) -> bytes:
        """The closing bytes, once the upstream body has ended; ``b""`` when called again."""
        if self._ended:
            return b""
        out: list[bytes] = []
        try:
            self._decoder.close()
            cut_inside_a_frame = False
        except EventStreamError:
            cut_inside_a_frame = True
        if self._stopped and not cut_inside_a_frame:
            # The answer is whole; only the metadata (usage) never came.
            out.append(_DONE)
            self._ended = True
            self.complete = True
        else:
            self._fail(out, GatewayError(
                502, Kind.UPSTREAM,
                "Bedrock's response stream ended early, before the answer was complete; "
                "the text received so far is partial",
                code=TRUNCATED,
            ))
        return b"".join(out)

    # -- frames --------------------------------------------------------------

    def _frames(self, frames: list[Frame], out: list[bytes]) -> None:
        for frame in frames:
            if self._ended:
                return
            kind = frame.message_type
            if kind == "event":
                handler = _HANDLERS.get(frame.event_type or "")
                if handler is None:
                    continue  # an event type this module does not know: not part of the answer
                try:
                    payload = json.loads(frame.payload)
                except (ValueError, RecursionError):
                    payload = None
                if not isinstance(payload, dict):
                    self._fail(out, GatewayError(
                        502, Kind.UPSTREAM,
                        f"Bedrock's response stream is corrupt: its {frame.event_type} event is not a JSON object",
                        code=CORRUPT,
                    ))
                    return
                handler(self, payload, out)
            elif kind in ("exception", "error"):
                name = frame.exception_type if kind == "exception" else frame.headers.get(":error-code")
                if isinstance(name, str) and name:
                    error = from_stream_exception(name, exception_message(frame))
                else:
                    error = GatewayError(502, Kind.UPSTREAM, "Bedrock's response stream is corrupt: an "
                                         f"{kind} frame names no error: {exception_message(frame)}", code=CORRUPT)
                self._fail(out, error)
            # Any other message type is not part of ConverseStream: ignored.

    def _message_start(self, payload: dict[str, Any], out: list[bytes]) -> None:
        self._start(out)

    def _block_start(self, payload: dict[str, Any], out: list[bytes]) -> None:
        if self._stopped:
            return
        start = payload.get("start")
        use = start.get("toolUse") if isinstance(start, dict) else None
        index = payload.get("contentBlockIndex")
        if not isinstance(use, dict) or not isinstance(index, int) or index in self._calls:
            return
        name = use.get("name")
        if self._json_tool is not None and self._json_block is None and name == self._json_tool:
            self._json_block = index
            self._held_text.clear()  # text around the JSON answer is not part of it
            self._start(out)
            return
        call = len(self._calls)
        self._calls[index] = call
        self._start(out)
        delta = {"tool_calls": [{"index": call, "id": use.get("toolUseId"), "type": "function",
                                 "function": {"name": name, "arguments": ""}}]}
        out.append(self._chunk(jsonwire.dumps(delta)))

    def _block_delta(self, payload: dict[str, Any], out: list[bytes]) -> None:
        if self._stopped:
            return
        delta = payload.get("delta")
        if not isinstance(delta, dict):
            return
        text = delta.get("text")
        if isinstance(text, str):
            if not text:
                return
            if self._json_tool is None:
                self._content(text, out)
            elif self._json_block is None:
                self._held_text.append(text)
            return
        use = delta.get("toolUse")
        fragment = use.get("input") if isinstance(use, dict) else None
        if not isinstance(fragment, str) or not fragment:
            return  # reasoningContent, citations and the like; or an empty fragment
        index = payload.get("contentBlockIndex")
        if index is not None and index == self._json_block:
            self._content(fragment, out)
            return
        call = self._calls.get(index) if isinstance(index, int) else None
        if call is not None:
            if self._redactor is not None:
                fragment = self._tool_redactor(call).feed(fragment)
                if not fragment:
                    return
            out.append(self._arguments(call, fragment))

    def _message_stop(self, payload: dict[str, Any], out: list[bytes]) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._held_text:
            # JSON mode, and the JSON tool never answered: the text is the answer.
            self._content("".join(self._held_text), out)
            self._held_text.clear()
        if self._redactor is not None and (rest := self._redactor.flush()):
            self._emit_content(rest, out)
        for call, redactor in sorted(self._tool_redactors.items()):
            if rest := redactor.flush():
                out.append(self._arguments(call, rest))
        reason = FINISH_REASONS.get(payload.get("stopReason"), "stop")
        if reason == "tool_calls" and not self._calls:
            reason = "stop"  # the forced JSON tool answered: for the client that is the answer itself
        self._start(out)
        out.append(b"".join((self._head, _OPEN_CHOICE, b'{},"finish_reason":', jsonwire.dumps(reason),
                             b',"logprobs":null}]}\n\n')))
        if self._have_metadata:
            self._end(out)

    def _metadata(self, payload: dict[str, Any], out: list[bytes]) -> None:
        if self._have_metadata:
            return  # counted once
        self._have_metadata = True
        self.usage = converse_usage(payload.get("usage"))
        if self._stopped:
            self._end(out)

    # -- output --------------------------------------------------------------

    def _chunk(self, delta: bytes) -> bytes:
        return b"".join((self._head, _OPEN_CHOICE, delta, _CLOSE_CHOICE))

    def _start(self, out: list[bytes]) -> None:
        """The first chunk (the assistant's role), once, before anything else."""
        if not self._started:
            self._started = True
            out.append(self._chunk(_ROLE_DELTA))

    def _content(self, text: str, out: list[bytes]) -> None:
        if self._redactor is not None:
            text = self._redactor.feed(text)
            if not text:
                return
        self._emit_content(text, out)

    def _tool_redactor(self, call: int) -> StreamRedactor:
        """Tool arguments stream as JSON text: each call gets its own hold-back redactor."""
        assert self._redactor is not None
        if call not in self._tool_redactors:
            self._tool_redactors[call] = self._redactor.sibling()
        return self._tool_redactors[call]

    def _arguments(self, call: int, fragment: str) -> bytes:
        return self._chunk(b'{"tool_calls":[{"index":%d,"function":{"arguments":%s}}]}'
                           % (call, jsonwire.dumps(fragment)))

    def _emit_content(self, text: str, out: list[bytes]) -> None:
        self._start(out)
        out.append(self._chunk(b'{"content":%s}' % jsonwire.dumps(text)))

    def _end(self, out: list[bytes]) -> None:
        if self._include_usage:
            out.append(b"".join((self._head, b'[],"usage":', jsonwire.dumps(openai_usage(self.usage)), b"}\n\n")))
        out.append(_DONE)
        self._ended = True
        self.complete = True

    def _fail(self, out: list[bytes], error: GatewayError) -> None:
        _status, _headers, body = error.render(Api.OPENAI)
        out.append(b"data: " + jsonwire.dumps(json.loads(body)) + b"\n\n")
        self._ended = True
        self.error = error.code or CORRUPT
        self._held_text.clear()


_HANDLERS = {
    "messageStart": ConverseStreamToChunks._message_start,
    "contentBlockStart": ConverseStreamToChunks._block_start,
    "contentBlockDelta": ConverseStreamToChunks._block_delta,
    "messageStop": ConverseStreamToChunks._message_stop,
    "metadata": ConverseStreamToChunks._metadata,
}
