"""Streamed answers as a client sees them: time to the first token, and events counted.

wrk cannot see events inside a response, so streaming is measured with this
small asyncio client: plain HTTP/1.1 over keep-alive connections, the
request bytes built once per run, the chunked body decoded as it arrives and
fed to an event reader. Its own parsing never counts in a latency: time to
first token is the moment of the socket read that completed the first content
delta, taken before that read is parsed.

What a client receives differs by set-up, so each has its reader:

* (c) gets server-sent events: Anthropic's (the first token is the first
  ``content_block_delta``) or OpenAI's (the first chunk whose
  ``delta.content`` is not empty). Events are SSE events, ``[DONE]`` included.
* (a) and (b) relay Bedrock's event stream: frames are decoded with
  :class:`extproc.bedrock.eventstream.Decoder`; the first token is the first
  ``chunk`` frame holding a ``content_block_delta`` (InvokeModel) or the first
  ``contentBlockDelta`` frame with text (Converse). Events are frames.

Every response is checked: status 200, a first token, no error event or
exception frame, and a complete stream (``message_stop``, ``[DONE]``,
``metadata``); a run with a bad response fails instead of measuring it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from extproc.bedrock.eventstream import Decoder, EventStreamError, Frame, chunk_event, exception_message

from .payload import MESSAGES, HttpRequest

READ_BYTES = 65536
TIMEOUT_S = 30.0


class StreamError(RuntimeError):
    """A response that is not a whole, well-formed stream."""


# -- event readers -----------------------------------------------------------------------------


class Events(Protocol):
    events: int
    first_delta: bool
    complete: bool
    error: str | None

    def feed(self, data: bytes) -> None: ...
    def close(self) -> None: ...


class _Sse:
    """Server-sent events split on blank lines; subclasses look at each event."""

    def __init__(self) -> None:
        self.events = 0
        self.first_delta = False
        self.complete = False
        self.error: str | None = None
        self._tail = b""

    def feed(self, data: bytes) -> None:
        if self._tail:
            data = self._tail + data
        blocks = data.split(b"\n\n")
        self._tail = blocks.pop()
        self.events += len(blocks)
        for block in blocks:
            self._event(block)

    def _event(self, block: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self._tail.strip() and self.error is None:
            self.error = f"the stream ended inside an event: {self._tail[:200]!r}"
        if not self.complete and self.error is None:
            self.error = "the stream ended before its last event"


class AnthropicSse(_Sse):
    def _event(self, block: bytes) -> None:
        if block.startswith(b"event: content_block_delta"):
            self.first_delta = True
        elif block.startswith(b"event: message_stop"):
            self.complete = True
        elif block.startswith(b"event: error"):
            self.error = block.decode(errors="replace")[:500]


class OpenAiSse(_Sse):
    def _event(self, block: bytes) -> None:
        if block == b"data: [DONE]":
            self.complete = True
        elif block.startswith(b'data: {"error"'):
            self.error = block.decode(errors="replace")[:500]
        elif not self.first_delta and b'"content":' in block:
            chunk = json.loads(block.removeprefix(b"data: "))
            choices = chunk.get("choices") or [{}]
            if (choices[0].get("delta") or {}).get("content"):
                self.first_delta = True


class _Frames:
    """Bedrock's event stream, relayed as it is: one event per frame."""

    def __init__(self) -> None:
        self.events = 0
        self.first_delta = False
        self.complete = False
        self.error: str | None = None
        self._decoder = Decoder()
        self._last: Frame | None = None

    def feed(self, data: bytes) -> None:
        try:
            frames = self._decoder.feed(data)
        except EventStreamError as exc:
            frames, self.error = exc.frames, self.error or f"corrupt event stream: {exc}"
        self.events += len(frames)
        for frame in frames:
            if frame.message_type != "event":
                self.error = self.error or f"{frame.exception_type or frame.message_type}: {exception_message(frame)}"
            elif not self.first_delta:
                self.first_delta = self._is_delta(frame)
        if frames:
            self._last = frames[-1]

    def _is_delta(self, frame: Frame) -> bool:
        raise NotImplementedError

    def _is_last(self, frame: Frame) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        try:
            self._decoder.close()
        except EventStreamError as exc:
            self.error = self.error or str(exc)
        self.complete = self._last is not None and self._is_last(self._last)
        if not self.complete and self.error is None:
            self.error = "the event stream ended before its last event"


class InvokeFrames(_Frames):
    """InvokeModelWithResponseStream: ``chunk`` frames, each an Anthropic stream event in base64."""

    @staticmethod
    def _type(frame: Frame) -> str | None:
        if frame.event_type != "chunk":
            return None
        return json.loads(chunk_event(frame)).get("type")

    def _is_delta(self, frame: Frame) -> bool:
        return self._type(frame) == "content_block_delta"

    def _is_last(self, frame: Frame) -> bool:
        return self._type(frame) == "message_stop"


class ConverseFrames(_Frames):
    """ConverseStream: ``messageStart``, ``contentBlockDelta``… ``metadata`` frames."""

    def _is_delta(self, frame: Frame) -> bool:
        if frame.event_type != "contentBlockDelta":
            return False
        return bool((json.loads(frame.payload).get("delta") or {}).get("text"))

    def _is_last(self, frame: Frame) -> bool:
        return frame.event_type == "metadata"


def reader_for(setup_key: str, api: str) -> Callable[[], Events]:
    """The event reader for what set-up ``setup_key``'s client receives on ``api``."""
    if setup_key in ("c", "d"):  # the gateway, with or without guardrails
        return AnthropicSse if api == MESSAGES else OpenAiSse
    return InvokeFrames if api == MESSAGES else ConverseFrames


def read_all(body: bytes, reader: Callable[[], Events]) -> Events:
    """A whole streamed body, read at once (for the checks before measuring)."""
    events = reader()
    events.feed(body)
    events.close()
    return events


# -- HTTP/1.1 ---------------------------------------------------------------------------------


def raw_request(request: HttpRequest, url: str) -> bytes:
    """``request`` on the wire, ``Host`` from ``url`` unless the request names its own."""
    lines = [f"{request.method} {request.path} HTTP/1.1"]
    if not any(name.lower() == "host" for name, _ in request.headers):
        lines.append(f"Host: {urlsplit(url).netloc}")
    lines += [f"{name}: {value}" for name, value in request.headers]
    lines.append(f"Content-Length: {len(request.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + request.body


class _Dechunk:
    """``Transfer-Encoding: chunked``, decoded incrementally (no trailers expected)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._left = 0  # data bytes left in the current chunk
        self._crlf = False  # a CRLF must come next (after a chunk's data, or after the last chunk)
        self._last = False
        self.done = False

    def feed(self, data: bytes) -> bytes:
        buf = self._buf
        buf += data
        out = bytearray()
        while not self.done:
            if self._left:
                take = min(self._left, len(buf))
                if not take:
                    break
                out += buf[:take]
                del buf[:take]
                self._left -= take
                if self._left:
                    break
                self._crlf = True
            if self._crlf:
                if len(buf) < 2:
                    break
                if buf[:2] != b"\r\n":
                    raise StreamError(f"bad chunked encoding: {bytes(buf[:40])!r}")
                del buf[:2]
                self._crlf = False
                self.done = self._last
                continue
            end = buf.find(b"\r\n")
            if end < 0:
                break
            size = int(bytes(buf[:end]).split(b";")[0], 16)
            del buf[: end + 2]
            if size:
                self._left = size
            else:
                self._last = self._crlf = True
        return bytes(out)


@dataclass(frozen=True)
class Exchange:
    ttft_s: float
    """From writing the request to the read that completed the first content delta."""
    total_s: float
    """From writing the request to the end of the response."""
    events: int


class Connection:
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        sock = self._writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except OSError:
                pass
            self._reader = self._writer = None

    async def _read(self) -> bytes:
        assert self._reader is not None
        data = await self._reader.read(READ_BYTES)
        if not data:
            raise StreamError("the connection closed mid-response")
        return data

    async def exchange(self, raw: bytes, events: Events) -> Exchange:
        """Send ``raw``, read the streamed answer into ``events``; raise :class:`StreamError` if it is not whole."""
        if self._writer is None:
            await self.open()
        assert self._writer is not None
        started = time.perf_counter()
        self._writer.write(raw)
        buf = bytearray()
        while (end := buf.find(b"\r\n\r\n")) < 0:
            buf += await self._read()
            read_at = time.perf_counter()
        head = bytes(buf[:end]).decode("latin-1").split("\r\n")
        rest = bytes(buf[end + 4 :])
        status = int(head[0].split(" ", 2)[1])
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = int(headers.get("content-length", "0")) if not chunked else 0
        if not chunked and "content-length" not in headers:
            raise StreamError(f"status {status}, a body with neither chunked encoding nor length")
        dechunk = _Dechunk() if chunked else None
        body = bytearray() if status != 200 else None
        ttft: float | None = None
        received = 0
        data = rest
        while True:
            payload = dechunk.feed(data) if dechunk else data
            received += len(payload)
            if body is not None:
                body += payload
            elif payload:
                events.feed(payload)
                if ttft is None and events.first_delta:
                    ttft = read_at - started
            if (dechunk.done if dechunk else received >= length):
                break
            data = await self._read()
            read_at = time.perf_counter()
        total = read_at - started
        if "close" in headers.get("connection", "").lower():
            await self.close()
        if body is not None:
            raise StreamError(f"status {status}: {bytes(body[:1000]).decode(errors='replace')}")
        events.close()
        if events.error is not None:
            raise StreamError(events.error)
        if ttft is None:
            raise StreamError(f"no content delta in {events.events} events")
        return Exchange(ttft, total, events.events)


# -- runs -------------------------------------------------------------------------------------


async def _connections(url: str, raw: bytes, reader: Callable[[], Events], concurrency: int) -> list[Connection]:
    """``concurrency`` connections, each warmed up by one unmeasured request ``raw``."""
    connections = [Connection(url) for _ in range(concurrency)]
    await asyncio.gather(*(c.open() for c in connections))
    await asyncio.gather(*(c.exchange(raw, reader()) for c in connections))
    return connections


async def _ttft(url: str, raw: bytes, reader: Callable[[], Events], requests: int, concurrency: int) -> list[Exchange]:
    connections = await _connections(url, raw, reader, concurrency)
    left = requests
    out: list[Exchange] = []

    async def work(connection: Connection) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            out.append(await connection.exchange(raw, reader()))

    try:
        await asyncio.wait_for(asyncio.gather(*(work(c) for c in connections)), TIMEOUT_S + requests)
    finally:
        await asyncio.gather(*(c.close() for c in connections))
    return out


def ttft_run(url: str, request: HttpRequest, reader: Callable[[], Events], requests: int,
             concurrency: int) -> list[Exchange]:
    """``requests`` streamed requests over ``concurrency`` connections (each already warmed up by one)."""
    return asyncio.run(_ttft(url, raw_request(request, url), reader, requests, concurrency))


@dataclass(frozen=True)
class LoadResult:
    seconds: float
    responses: int
    events: int
    before: dict[str, float]
    after: dict[str, float]
    client_cpu_s: float


async def _load(url: str, raw: bytes, warm: bytes, reader: Callable[[], Events], concurrency: int, seconds: float,
                snapshot: Callable[[], dict[str, float]]) -> LoadResult:
    connections = await _connections(url, warm, reader, concurrency)
    responses = events = 0

    async def work(connection: Connection) -> None:
        nonlocal responses, events
        while time.perf_counter() < deadline:
            exchange = await connection.exchange(raw, reader())
            responses += 1
            events += exchange.events

    try:
        # Everything is idle here (every warm-up answered) and again after the gather: nothing
        # the processes spend between the two snapshots belongs to another request.
        before = snapshot()
        client_before = time.process_time()
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.wait_for(asyncio.gather(*(work(c) for c in connections)), seconds + TIMEOUT_S)
        elapsed = time.perf_counter() - started
        client_cpu = time.process_time() - client_before
        after = snapshot()
    finally:
        await asyncio.gather(*(c.close() for c in connections))
    return LoadResult(elapsed, responses, events, before, after, client_cpu)


def load_run(url: str, request: HttpRequest, warm: HttpRequest, reader: Callable[[], Events], concurrency: int,
             seconds: float, snapshot: Callable[[], dict[str, float]]) -> LoadResult:
    """``request`` streamed back to back on ``concurrency`` connections for ``seconds``, every event counted.

    Each connection is first opened and warmed up by one ``warm`` request (a
    short stream of the same API: the same code paths, a fraction of the
    time). ``snapshot()`` (CPU times, counters) is taken with every connection
    idle just before the first measured request and after the last answer;
    requests still running at the deadline are finished, so each one counted
    is whole on both sides.
    """
    return asyncio.run(_load(url, raw_request(request, url), raw_request(warm, url), reader, concurrency, seconds,
                             snapshot))
