"""The gateway's decisions, one method per ext_proc phase.

Each method takes plain values (headers as a dict, body as bytes) and returns
a :class:`Forward` (go on, with these changes) or a :class:`Reply` (answer
the client now). ``server.py`` turns those into ext_proc protobufs; nothing
here knows about gRPC, which keeps every decision testable without Envoy.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote

from . import metrics
from .bedrock import errors as bedrock_errors
from .bedrock.catalogue import Catalogue, Model
from .bedrock.credentials import CredentialSource
from .bedrock.endpoint import ROUTING_HEADER, Endpoint
from .bedrock.sigv4 import sign
from .config import Policy, Settings
from .errors import GatewayError, Kind, invalid
from .keys import KeyRing
from .routes import Operation, Route, classify
from .translate import anthropic_invoke, models_list, openai_converse
from .translate.anthropic_stream import InvokeStreamToSSE
from .translate.openai_converse_stream import ConverseStreamToChunks
from .usage import Usage

log = logging.getLogger("extproc.request")

EVENT_STREAM = "application/vnd.amazon.eventstream"


class StreamTranslator(Protocol):
    """Turns an event-stream body, chunk by chunk, into the client's stream."""

    complete: bool
    error: str | None

    @property
    def usage(self) -> Usage: ...
    def feed(self, chunk: bytes) -> bytes: ...
    def finish(self) -> bytes: ...

# Client headers that may travel on to Bedrock. Everything else is removed
# (API keys, cookies, client SigV4 and x-amz-* headers, custom headers that
# might carry a credential): an allowlist cannot miss a new credential header.
# x-forwarded-proto stays: Envoy's route match needs it after the route cache is cleared.
_FORWARDED_HEADERS = frozenset({"user-agent", "x-request-id", "x-forwarded-proto"})


@dataclass(slots=True)
class Forward:
    """Let the request or response continue, with these changes."""

    set_headers: list[tuple[str, str]] = field(default_factory=list)
    remove_headers: list[str] = field(default_factory=list)
    body: bytes | None = None
    clear_route_cache: bool = False
    stream_response: bool = False
    """Switch Envoy to STREAMED for this response's body (only on response headers)."""


@dataclass(slots=True)
class Reply:
    """Answer the client now; nothing (more) goes upstream."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(slots=True)
class RequestState:
    """Everything known about one HTTP request; lives as long as its ext_proc stream."""

    started: float = field(default_factory=time.monotonic)
    request_id: str = ""
    method: str = ""
    path: str = ""
    route: Route = field(default_factory=lambda: classify("", "/"))
    consumer: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    model: Model | None = None
    upstream_started: float | None = None
    first_byte: float | None = None
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    chat_request: openai_converse.ChatRequest | None = None
    stream: StreamTranslator | None = None
    """Translates an event-stream answer chunk by chunk, when the answer is a stream."""
    response_model: str = ""
    """The model name the client sees in an OpenAI answer."""
    error: str | None = None
    finished: bool = False


def client_key(headers: dict[str, str]) -> str | None:
    """The gateway key from ``x-api-key`` or ``Authorization: Bearer``."""
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


class Gateway:
    def __init__(self, settings: Settings, keys: KeyRing, credentials: CredentialSource) -> None:
        self.settings = settings
        self.keys = keys
        self.credentials = credentials
        self.catalogue = Catalogue(settings.config.models)
        self.endpoint = Endpoint.from_url(settings.endpoint_url)

    # -- phase 1 -------------------------------------------------------------
    def request_headers(self, state: RequestState, headers: dict[str, str], end_of_stream: bool) -> Forward | Reply:
        state.headers = headers
        state.method = headers.get(":method", "")
        state.path = headers.get(":path", "")
        state.request_id = headers.get("x-request-id") or uuid.uuid4().hex
        state.route = classify(state.method, state.path)
        try:
            key = client_key(headers)
            consumer = self.keys.consumer_for(key) if key else None
            if consumer is None:
                metrics.AUTH_FAILURES.labels(state.route.label, "missing" if key is None else "invalid").inc()
                raise GatewayError(
                    401,
                    Kind.AUTHENTICATION,
                    "missing API key: send it as x-api-key or Authorization: Bearer"
                    if key is None
                    else "invalid API key",
                    code="invalid_api_key",
                )
            state.consumer = consumer
            if state.route.operation is None:
                raise GatewayError(404, Kind.NOT_FOUND, f"no route for {state.method} {state.path.split('?', 1)[0]}")
            if state.route.operation is Operation.MODELS:
                return self.answer(state, 200, models_list.render(self._visible_models(state), headers))
            if end_of_stream:
                raise invalid("this route needs a JSON request body")
        except GatewayError as exc:
            return self.reject(state, exc)
        return Forward()

    # -- phase 2 -------------------------------------------------------------
    def request_body(self, state: RequestState, body: bytes) -> Forward | Reply:
        try:
            if state.route.operation is Operation.ANTHROPIC_MESSAGES:
                return self._anthropic_messages(state, body)
            if state.route.operation is Operation.OPENAI_CHAT:
                return self._openai_chat(state, body)
            raise GatewayError(404, Kind.NOT_FOUND, f"no route for {state.method} {state.path}")
        except GatewayError as exc:
            return self.reject(state, exc)

    def _anthropic_messages(self, state: RequestState, body: bytes) -> Forward:
        request = anthropic_invoke.parse_request(body)
        model = self._model_for(state, request.model)
        if not model.is_anthropic:
            raise invalid(f"model {request.model!r} is not a Claude model: call it through /v1/chat/completions",
                          param="model")
        betas = anthropic_invoke.beta_flags(state.headers.get("anthropic-beta"))
        upstream_body = anthropic_invoke.to_invoke_body(request, betas)
        operation = "invoke-with-response-stream" if request.stream else "invoke"
        return self._to_bedrock(state, f"/model/{quote(model.bedrock_id, safe='')}/{operation}", upstream_body)

    def _openai_chat(self, state: RequestState, body: bytes) -> Forward:
        request = openai_converse.parse_request(body)
        # The route's model wins, then the body's, then the configured default.
        name = state.route.model or request.model
        model = self._model_for(state, name) if name else self._model_for(state, self.catalogue.default.alias)
        state.chat_request = request
        state.response_model = state.route.model or request.model or model.alias
        upstream_body = openai_converse.to_converse_body(request, max_temperature=model.entry.max_temperature)
        operation = "converse-stream" if request.stream else "converse"
        return self._to_bedrock(state, f"/model/{quote(model.bedrock_id, safe='')}/{operation}", upstream_body)

    def _policy(self, state: RequestState) -> Policy:
        consumer = self.settings.config.consumers.get(state.consumer or "")
        return self.settings.config.policies[consumer.policy if consumer else "default"]

    def _visible_models(self, state: RequestState) -> list[Model]:
        return self.catalogue.visible_to(self._policy(state))

    def _model_for(self, state: RequestState, name: str) -> Model:
        model = self.catalogue.resolve(name)
        if model is None:
            raise GatewayError(404, Kind.NOT_FOUND, f"model {name!r} is not available on this gateway", param="model",
                               code="model_not_found")
        policy = self._policy(state)
        if not self.catalogue.allowed(policy, model):
            raise GatewayError(403, Kind.PERMISSION, f"this API key may not use model {name!r}", param="model")
        state.model = model
        return model

    def _to_bedrock(self, state: RequestState, path: str, body: bytes) -> Forward:
        """Point the request at Bedrock: new path, host and body, signed; client credentials gone."""
        signed = sign(
            method="POST",
            url=self.endpoint.url(path),
            body=body,
            headers=[("host", self.endpoint.authority), ("content-type", "application/json")],
            credentials=self.credentials.current(),
            region=self.settings.region,
        )
        signed.pop("host")
        set_headers = [
            (":path", path),
            (":authority", self.endpoint.authority),
            ("content-length", str(len(body))),
            ("accept", "application/json"),
            (ROUTING_HEADER, self.endpoint.routing),
            *signed.items(),
        ]
        replaced = {name for name, _ in set_headers}
        remove = [
            name
            for name in state.headers
            if not name.startswith(":") and name not in _FORWARDED_HEADERS and name not in replaced
        ]
        state.upstream_started = time.monotonic()
        return Forward(set_headers=set_headers, remove_headers=remove, body=body, clear_route_cache=True)

    # -- phase 3 -------------------------------------------------------------
    def response_headers(self, state: RequestState, headers: dict[str, str], end_of_stream: bool) -> Forward | Reply:
        if state.upstream_started is None:
            return Forward()  # a local reply Envoy made itself (e.g. 413): not Bedrock's answer
        state.status = int(headers.get(":status", "0") or 0)
        state.response_headers = headers
        if end_of_stream:
            return self.response_body(state, b"", end_of_stream=True)
        if state.status == 200 and headers.get("content-type", "").startswith(EVENT_STREAM):
            state.stream = self._stream_translator(state)
            return Forward(
                set_headers=[("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-cache")],
                remove_headers=["content-length"],
                stream_response=True,
            )
        return Forward()

    def _stream_translator(self, state: RequestState) -> StreamTranslator:
        if state.route.operation is Operation.OPENAI_CHAT and state.chat_request is not None:
            return ConverseStreamToChunks(state.chat_request, model=state.response_model,
                                          completion_id=self._completion_id(state), created=int(time.time()))
        return InvokeStreamToSSE()

    @staticmethod
    def _completion_id(state: RequestState) -> str:
        return "chatcmpl-" + state.request_id.replace("-", "")

    # -- phase 4 -------------------------------------------------------------
    def response_body(self, state: RequestState, body: bytes, end_of_stream: bool = True) -> Forward | Reply:
        if state.upstream_started is None:
            return Forward()
        if state.stream is not None:
            return self._stream_chunk(state, state.stream, body, end_of_stream)
        status = state.status or 0
        if not 200 <= status < 300:
            error = bedrock_errors.from_upstream(status, state.response_headers, body)
            return self.reject(state, error, upstream=True)
        result = Forward()
        if state.route.operation is Operation.ANTHROPIC_MESSAGES:
            state.usage = anthropic_invoke.read_response(body)
        elif state.route.operation is Operation.OPENAI_CHAT and state.chat_request is not None:
            try:
                translated, state.usage = openai_converse.from_converse_response(
                    body, request=state.chat_request, model=state.response_model,
                    completion_id=self._completion_id(state), created=int(time.time()),
                )
            except GatewayError as exc:
                return self.reject(state, exc, upstream=True)
            result = Forward(set_headers=[("content-length", str(len(translated))),
                                          ("content-type", "application/json")], body=translated)
        self.finish(state)
        return result

    def _stream_chunk(self, state: RequestState, stream: StreamTranslator, body: bytes, end: bool) -> Forward:
        """One chunk of an event-stream answer, translated; the stream's end closes the record."""
        if state.first_byte is None:
            state.first_byte = time.monotonic()
        out = stream.feed(body)
        if end:
            out += stream.finish()
            self.finish(state)
        return Forward(body=out)

    # -- endings -------------------------------------------------------------
    def answer(self, state: RequestState, status: int, body: bytes) -> Reply:
        """Answer the client from the gateway itself (no upstream call)."""
        state.status = status
        self.finish(state)
        return Reply(status, [("content-type", "application/json")], body)

    def reject(self, state: RequestState, error: GatewayError, upstream: bool = False) -> Reply:
        """Answer ``error`` in the client's API shape and record why."""
        state.status = error.status
        state.error = f"{'upstream ' if upstream else ''}{error.kind.value}: {error.code or ''}".rstrip(": ")
        if error.status >= 500:
            log.warning("request failed", extra={"request_id": state.request_id, "error": str(error)})
        status, headers, body = error.render(state.route.api)
        self.finish(state)
        return Reply(status, headers, body)

    def finish(self, state: RequestState) -> None:
        """Log and count a request exactly once, however it ended."""
        if state.finished or not state.request_id:
            return
        state.finished = True
        partial = False
        if state.stream is not None:
            state.usage = state.stream.usage
            partial = not state.stream.complete
            state.error = state.error or state.stream.error
        status = state.status if state.status is not None else 499
        model = state.model.alias if state.model else ""
        consumer = state.consumer or ""
        metrics.REQUESTS.labels(consumer, state.route.label, model, f"{status // 100}xx").inc()
        for token_type, count in state.usage.as_dict().items():
            if count:
                metrics.TOKENS.labels(consumer, state.route.label, model, token_type).inc(count)
        log.info(
            "request",
            extra={
                "request_id": state.request_id,
                "consumer": consumer,
                "route": state.route.label,
                "model": model,
                "bedrock_model": state.model.bedrock_id if state.model else "",
                "status": status,
                "error": state.error,
                "tokens": state.usage.as_dict(),
                "partial": partial,
                "duration_ms": round((time.monotonic() - state.started) * 1000, 2),
                "upstream_ms": _ms_since(state.upstream_started),
                "first_byte_ms": _ms_since(state.first_byte, state.upstream_started),
                "user_agent": state.headers.get("user-agent", ""),
            },
        )


def _ms_since(start: float | None, origin: float | None = None) -> float | None:
    """Milliseconds from ``start`` to now, or from ``origin`` to ``start`` when given."""
    if start is None:
        return None
    if origin is not None:
        return round((start - origin) * 1000, 2)
    return round((time.monotonic() - start) * 1000, 2)
