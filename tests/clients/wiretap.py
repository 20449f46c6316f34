"""What a real client puts on the wire, seen from the client's side of the gateway.

The gateway strips every client header before Bedrock, so the emulator cannot
tell which beta flags or session headers a client sent. :class:`Relay` sits
between the client and the gateway, passes every byte through unchanged
(streams chunk by chunk, as they arrive) and keeps a record of each exchange.
:class:`Tripwire` is the client's HTTP(S) proxy: anything that tries to leave
localhost arrives there, is refused, and is remembered, so a test can show that
a run was hermetic instead of hoping so.
"""

from __future__ import annotations

import asyncio
import json
import socket
import socketserver
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web

_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "content-length",
})
_SECRET_HEADERS = frozenset({"x-api-key", "authorization", "proxy-authorization", "cookie"})


def redact(name: str, value: str) -> str:
    """Keep the scheme of a credential (``Bearer``, ``AWS4-HMAC-SHA256``), never the secret."""
    if name in _SECRET_HEADERS:
        scheme = value.split(" ", 1)[0] if " " in value else ""
        return f"{scheme} <redacted>".strip()
    return value


@dataclass
class Exchange:
    method: str
    path: str
    """Path with its query string, exactly as the client sent it."""
    headers: dict[str, str]
    """Lower-cased names; credentials redacted (see :func:`redact`)."""
    body_size: int
    body: Any
    """The JSON body, parsed (None when empty or not JSON)."""
    credential: str | None = None
    """The raw value of ``x-api-key`` or the ``Authorization`` token, for comparisons in tests only."""
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_head: bytes = b""
    """The first bytes of the response body, for error messages."""

    @property
    def request_id(self) -> str | None:
        return self.response_headers.get("x-request-id")

    def summary(self) -> dict[str, Any]:
        """What a gateway author needs to know about this request."""
        out: dict[str, Any] = {"request": f"{self.method} {self.path}", "status": self.status,
                               "response_content_type": self.response_headers.get("content-type"),
                               "headers": self.headers, "body_size": self.body_size}
        if isinstance(self.body, dict):
            out["body_fields"] = sorted(self.body)
            out["body"] = {k: v for k, v in self.body.items() if k not in ("messages", "system", "tools", "metadata")}
            if isinstance(self.body.get("tools"), list):
                out["tool_names"] = [t.get("name") for t in self.body["tools"] if isinstance(t, dict)]
        if self.status is None or self.status >= 400:
            out["response_head"] = self.response_head[:500].decode("utf-8", "replace")
        return out


class Relay:
    """A recording pass-through to ``upstream`` on a free localhost port (an aiohttp server in a thread)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.exchanges: list[Exchange] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="relay", daemon=True)
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None

    def start(self) -> Relay:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def clear(self) -> None:
        self.exchanges.clear()

    def summary(self) -> list[dict[str, Any]]:
        return [exchange.summary() for exchange in self.exchanges]

    def describe(self) -> str:
        return json.dumps(self.summary(), indent=1, default=str)

    async def _start(self) -> None:
        self._session = ClientSession(timeout=ClientTimeout(total=120), auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        credential = request.headers.get("x-api-key") or request.headers.get("authorization", "").split(" ", 1)[-1]
        exchange = Exchange(
            method=request.method, path=request.raw_path,
            headers={k.lower(): redact(k.lower(), v) for k, v in request.headers.items()},
            body_size=len(body), body=parsed, credential=credential or None)
        self.exchanges.append(exchange)
        forward = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP]
        async with self._session.request(
            request.method, self.upstream + request.raw_path, headers=forward, data=body or None,
            allow_redirects=False, skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        ) as upstream:
            exchange.status = upstream.status
            exchange.response_headers = {k.lower(): v for k, v in upstream.headers.items()}
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    response.headers.add(name, value)
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                if len(exchange.response_head) < 4096:
                    exchange.response_head += chunk[: 4096 - len(exchange.response_head)]
                await response.write(chunk)
            await response.write_eof()
            return response


class _TripwireHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        line = self.rfile.readline(8192).decode("latin-1").strip()
        self.server.seen.append(line)  # type: ignore[attr-defined]
        self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


class Tripwire(socketserver.ThreadingTCPServer):
    """An HTTP proxy that refuses everything and remembers each request line (``CONNECT host:443 …``)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _TripwireHandler)
        self.seen: list[str] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, name="tripwire", daemon=True).start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
