"""The gateway's decisions, one method per ext_proc phase.

Each method takes plain values (headers as a dict, body as bytes) and returns
a :class:`Forward` (go on, with these changes) or a :class:`Reply` (answer
the client now). ``server.py`` turns those into ext_proc protobufs; nothing
here knows about gRPC, which keeps every decision testable without Envoy.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import os
import time
import uuid
from dataclasses import dataclass, field, replace
from functools import lru_cache
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import quote

from . import metrics
from .bedrock import errors as bedrock_errors
from .bedrock.catalogue import Catalogue, Model
from .bedrock.credentials import CredentialSource
from .bedrock.endpoint import ROUTING_HEADER, Endpoint
from .bedrock.sigv4 import sign
from .config import ConfigError, Limits, Policy, Settings, config_source
from . import jsonwire
from .errors import Api, GatewayError, Kind, invalid
from .guardrails.enforce import Guard, Outcome, StreamRedactor
from .keys import KeyRing, load_settings_and_keys
from .limits.enforce import Limiter, open_store
from .metering import Meter
from .routes import Operation, Route, classify
from .translate import anthropic_invoke, bedrock_native, inference_profiles, models_list, openai_converse
from .translate.anthropic_stream import InvokeStreamToSSE
from .translate.bedrock_native import EventStreamMeter
from .translate.openai_converse_stream import ConverseStreamToChunks
from .usage import Usage

log = logging.getLogger("extproc.request")

EVENT_STREAM = "application/vnd.amazon.eventstream"
BEDROCK_PARAMETER_HEADER = "x-amzn-bedrock-"
_GUARDRAIL_HEADERS = frozenset({"x-amzn-bedrock-guardrailidentifier", "x-amzn-bedrock-guardrailversion"})
MAX_UPSTREAM_BODY = 32 * 1024 * 1024
"""Envoy's upstream buffer (envoy.yaml); a translation that grows past it is a clear 413, not Envoy's."""


class StreamTranslator(Protocol):
    """Turns an event-stream body, chunk by chunk, into the client's stream."""

    complete: bool
    error: str | None
    relays: bool
    """True: the client gets the upstream bytes unchanged and ``feed`` only meters."""

    @property
    def usage(self) -> Usage: ...
    def feed(self, chunk: bytes) -> bytes: ...
    def finish(self) -> bytes: ...

# Client headers that may travel on to Bedrock. Everything else is removed
# (API keys, cookies, client SigV4 and x-amz-* headers, custom headers that
# might carry a credential): an allowlist cannot miss a new credential header.
# x-forwarded-proto stays: Envoy's route match needs it after the route cache is cleared.
FORWARDED_HEADERS = frozenset({"user-agent", "x-request-id", "x-forwarded-proto"})


@dataclass(slots=True)
class Forward:
    """Let the request or response continue, with these changes."""

    set_headers: list[tuple[str, str]] = field(default_factory=list)
    remove_headers: list[str] = field(default_factory=list)
    body: bytes | None = None
    clear_route_cache: bool = False
    stream_response: bool = False
    """Switch Envoy to STREAMED for this response's body (only on response headers)."""
    metadata: dict[str, str] | None = None
    """Envoy dynamic metadata for the access log (consumer, route, model)."""

    @property
    def is_noop(self) -> bool:
        """Nothing to change: the message goes on as it came."""
        return not (self.set_headers or self.remove_headers or self.body is not None or self.clear_route_cache
                    or self.stream_response or self.metadata)


@dataclass(slots=True)
class Reply:
    """Answer the client now; nothing (more) goes upstream."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    metadata: dict[str, str] | None = None


_LIMITED = frozenset({Operation.ANTHROPIC_MESSAGES, Operation.OPENAI_CHAT, Operation.BEDROCK})
"""Routes that reach a model (count-tokens calls, which cost nothing, are left out)."""


@dataclass(frozen=True, slots=True)
class Reloaded:
    ok: bool
    message: str
    consumers: int
    keys: int
    source: str


NO_ROUTE = classify("", "/")
"""A request's route until its headers are read (routes are immutable: one value serves every request)."""


class _LimitIds:
    """Identifiers for requests in the limits store, unique across processes and replicas sharing it.

    A random prefix per process and a counter: as unique as a UUID per request, without a
    ``getrandom`` system call on every request. A forked child draws a prefix of its own.
    """

    def __init__(self) -> None:
        self._renew()
        os.register_at_fork(after_in_child=self._renew)

    def _renew(self) -> None:
        self._prefix, self._counter = uuid.uuid4().hex[:20], itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter):x}"


_new_limit_id = _LimitIds()


@dataclass(slots=True)
class RequestState:
    """Everything known about one HTTP request; lives as long as its ext_proc stream."""

    started: float = field(default_factory=time.monotonic)
    request_id: str = ""
    method: str = ""
    path: str = ""
    route: Route = NO_ROUTE
    consumer: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    model: Model | None = None
    upstream_started: float | None = None
    first_byte: float | None = None
    """When Bedrock's answer headers arrived."""
    first_token: float | None = None
    """When the first chunk of a streamed answer arrived."""
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    usage: Usage = Usage()
    chat_request: openai_converse.ChatRequest | None = None
    stream: StreamTranslator | None = None
    """Translates an event-stream answer chunk by chunk, when the answer is a stream."""
    response_model: str = ""
    """The model name the client sees in an OpenAI answer."""
    error: str | None = None
    adjustments: anthropic_invoke.Adjustments = anthropic_invoke.Adjustments()
    response_done: bool = False
    """The upstream answer was seen to its end (False when the client went away first)."""
    stream_guardrails: Outcome | None = None
    """What the guardrail policy found in a streamed answer, collected as it streams."""
    guardrails: list[dict[str, object]] = field(default_factory=list)
    """What the guardrail policy found (detector, action, JSON path, offset; never the text)."""
    session_id: str = ""
    """Claude Code's ``x-claude-code-session-id``, for logs."""
    policy: Policy | None = None
    """The consumer's policy (``Gateway._policy``), once it has been looked up."""
    guard: Guard | None = None
    """The guardrail policy the consumer's policy names, looked up with it (one configuration for both)."""
    limits: Limits | None = None
    """The consumer's limits, when this request must pass them before going upstream."""
    limit_id: str = field(default_factory=_new_limit_id)
    """This request in the limits store (its concurrency lease, its charges): ours, never the client's
    ``x-request-id``, which a client may repeat to share one lease among many requests."""
    upstream_error: str | None = None
    """Bedrock's error type (or ``connection``/``timeout`` for Envoy's own), for the upstream-errors metric."""
    audit_prompt: Any = None
    """The request as the model reads it (after redaction), kept only when the consumer is audited."""
    audit_answer: list[bytes] | None = None
    """What the client received, kept only when the consumer is audited."""
    in_flight: bool = False
    """Counted in the in-flight gauge (from its headers until its stream closes)."""
    settled: bool = False
    """Charged to its consumer's limits and usage totals (``Meter.closed`` or ``Meter.finish``)."""
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
    def __init__(self, settings: Settings, keys: KeyRing, credentials: CredentialSource,
                 limiter: Limiter | None = None, meter: Meter | None = None, worker_index: int | None = None) -> None:
        self.credentials = credentials
        self.limiter = limiter or Limiter(open_store(settings), settings.config.limits)
        self.meter = meter or Meter.from_settings(settings, self.limiter, worker_index)
        self._started_with = _restart_only(settings)
        self._apply(settings, keys)

    def _apply(self, settings: Settings, keys: KeyRing) -> None:
        """Swap in a configuration and key ring (start-up and reload).

        Attributes are replaced, never mutated, so a request in flight reads
        either the old or the new value of each and is never dropped.
        """
        self.settings = settings
        self.keys = keys
        self.catalogue = Catalogue(settings.config.models)
        self.guards = {name: Guard(name, policy) for name, policy in settings.config.guardrail_policies.items()}
        self.endpoint = Endpoint.from_url(settings.endpoint_url)

    async def reload(self) -> Reloaded:
        """Re-read GATEWAY_CONFIG and GATEWAY_KEYS_FILE (off the loop) and use them for new requests.

        A bad file changes nothing: the error is returned (and logged) and the
        running configuration stays. The limits backend, the usage-record and
        audit files and the admin address are start-up settings; a reload that
        changes them says so.
        """
        try:
            settings, keys = await asyncio.to_thread(load_settings_and_keys)
        except ConfigError as exc:
            log.error("reload refused", extra={"error": str(exc)})
            return Reloaded(False, str(exc), len(self.settings.config.consumers), len(self.keys), config_source())
        unchanged = ""
        if _restart_only(settings) != self._started_with:
            unchanged = "; limits backend, records, audit and admin settings change only on restart"
        self._apply(settings, keys)
        result = Reloaded(True, "configuration and keys reloaded" + unchanged, len(settings.config.consumers),
                          len(keys), config_source())
        log.info("reloaded", extra={"consumers": result.consumers, "keys": result.keys, "source": result.source})
        return result

    # -- phase 1 -------------------------------------------------------------
    def request_headers(self, state: RequestState, headers: dict[str, str], end_of_stream: bool) -> Forward | Reply:
        state.headers = headers
        state.method = headers.get(":method", "")
        state.path = headers.get(":path", "")
        state.request_id = headers.get("x-request-id") or uuid.uuid4().hex
        state.route = classify(state.method, state.path)
        self.meter.opened(state)
        if state.route.operation is Operation.MODELS and "anthropic-version" in headers:
            state.route = replace(state.route, api=Api.ANTHROPIC)  # the Anthropic SDK lists models too
        state.session_id = headers.get("x-claude-code-session-id", "")
        if state.route.operation is Operation.HELLO:
            return self.answer(state, 200, b"", content_type=None)  # a probe: nothing to protect or forward
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
                return self._models(state, headers)
            if state.route.operation is Operation.INFERENCE_PROFILES:
                return self._inference_profiles(state)
            if end_of_stream:
                raise invalid("this route needs a JSON request body")
        except GatewayError as exc:
            return self.reject(state, exc)
        limits = self._policy(state).limits
        if limits.active and state.route.action != "count-tokens" and state.route.operation in _LIMITED:
            state.limits = limits  # the server awaits admit() next
        return Forward(metadata=_who(state))

    async def admit(self, state: RequestState) -> Reply | None:
        """The consumer's limits, checked before anything goes upstream: None to go on, else the 429."""
        assert state.limits is not None and state.consumer is not None
        error = await self.limiter.admit(state.consumer, state.limit_id, state.limits, state.route.api)
        return None if error is None else self.reject(state, error)

    # -- phase 2 -------------------------------------------------------------
    def request_body(self, state: RequestState, body: bytes) -> Forward | Reply:
        try:
            parsed = jsonwire.load_object(body)  # once: guardrails and translators share it
            changed = self._guard_request(state, parsed)
            if self.meter.audits(self._policy(state)):
                state.audit_prompt, state.audit_answer = parsed, []
            if state.route.operation is Operation.ANTHROPIC_MESSAGES:
                return self._anthropic_messages(state, parsed)
            if state.route.operation is Operation.OPENAI_CHAT:
                return self._openai_chat(state, parsed)
            if state.route.operation is Operation.ANTHROPIC_COUNT_TOKENS:
                return self._anthropic_count_tokens(state, parsed)
            if state.route.operation is Operation.BEDROCK:
                return self._bedrock_native(state, body, parsed, changed)
            raise GatewayError(404, Kind.NOT_FOUND, f"no route for {state.method} {state.path}")
        except GatewayError as exc:
            return self.reject(state, exc)

    def _guard_request(self, state: RequestState, parsed: dict[str, Any]) -> bool:
        """The consumer's guardrail policy on everything the model will read: block, redact or count.

        Works on the parsed body in place, before translation, so a redacted
        body is what gets translated and signed; True when it redacted. A
        CountTokens body wraps an InvokeModel body (base64): that is text sent
        to Bedrock too, so it is inspected inside.
        """
        guard = self._guard(state)
        if not guard.active:
            return False
        wrapped = _counted_invoke_body(parsed) if state.route.action == "count-tokens" else None
        target = jsonwire.load_object(base64.b64decode(wrapped), "input.invokeModel.body") if wrapped else parsed
        outcome = guard.inspect(target, request=True)
        self._note_guardrails(state, guard.name, outcome)
        if outcome.refusal is not None:
            raise outcome.refusal
        if outcome.changed and wrapped:
            parsed["input"]["invokeModel"]["body"] = base64.b64encode(jsonwire.dumps(target)).decode("ascii")
        return outcome.changed

    @staticmethod
    def _note_guardrails(state: RequestState, policy: str, outcome: Outcome, answer: bool = False) -> None:
        """What a guardrail policy did, for the usage record and the metric (detector, action, where; never text).

        A parsed answer's paths (``$.content…``) are named ``answer…``; a streamed
        answer's redactor already names them so.
        """
        for action in outcome.actions:
            path = "answer" + action.path[1:] if answer else action.path
            state.guardrails.append({"detector": action.detector, "action": action.action, "path": path,
                                     "offset": action.offset})
            metrics.bound(metrics.GUARDRAIL_ACTIONS, state.consumer or "", policy, action.detector,
                          action.action).inc()

    def _guard(self, state: RequestState) -> Guard:
        if state.guard is None:
            self._policy(state)
        assert state.guard is not None
        return state.guard

    def _anthropic_messages(self, state: RequestState, body: dict[str, Any]) -> Forward:
        request = anthropic_invoke.parse_request(body)
        model = self._claude_for(state, request.model)
        operation = "invoke-with-response-stream" if request.stream else "invoke"
        return self._to_bedrock(state, model_path(model.bedrock_id, operation), self._invoke_body(state, request))

    def _anthropic_count_tokens(self, state: RequestState, body: dict[str, Any]) -> Forward:
        """Bedrock's CountTokens takes base model IDs, not inference profiles: map them."""
        request = anthropic_invoke.parse_request(body, count_only=True)
        model = self._claude_for(state, request.model)
        upstream = anthropic_invoke.count_tokens_body(self._invoke_body(state, request))
        return self._to_bedrock(state, model_path(model.entry.base_id or model.bedrock_id, "count-tokens"), upstream)

    def _claude_for(self, state: RequestState, name: str) -> Model:
        model = self._model_for(state, name)
        if not model.is_anthropic:
            raise invalid(f"model {name!r} is not a Claude model: call it through /v1/chat/completions", param="model")
        return model

    def _invoke_body(self, state: RequestState, request: anthropic_invoke.MessagesRequest) -> bytes:
        betas = anthropic_invoke.beta_flags(state.headers.get("anthropic-beta"))
        body, state.adjustments = anthropic_invoke.to_invoke_body(request, betas, self.settings.config.anthropic)
        return body

    def _bedrock_native(self, state: RequestState, body: bytes, parsed: dict[str, Any], changed: bool) -> Forward:
        """Bedrock's own API (boto3, Claude Code's Bedrock mode): the body goes on as it came, re-signed.

        Only a Claude InvokeModel body is touched, and only so that Bedrock
        accepts it (beta allowlist, refused fields), or where guardrails
        redacted it (``changed``); the model in the path must be one the
        consumer may use, and count-tokens gets the base ID.
        """
        route = state.route
        model = self._model_for(state, route.model or "")
        target = model.entry.base_id or model.bedrock_id if route.action == "count-tokens" else model.bedrock_id
        if route.action.startswith("invoke") and model.is_anthropic:
            anthropic_invoke.check_invoke_fields(parsed)
            betas = anthropic_invoke.beta_flags(state.headers.get("anthropic-beta"))
            state.adjustments = anthropic_invoke.make_bedrock_ready(parsed, betas, self.settings.config.anthropic)
            changed = changed or bool(state.adjustments.as_log())
        if changed:
            body = jsonwire.dumps(parsed)
        # Bedrock's own request parameters (guardrail, trace, latency, service tier…) travel as headers.
        extra = [(name, value) for name, value in state.headers.items() if name.startswith(BEDROCK_PARAMETER_HEADER)]
        return self._to_bedrock(state, model_path(target, route.action), body, body_changed=changed, extra=extra)

    def _models(self, state: RequestState, headers: dict[str, str]) -> Reply:
        """The list, or one model (any catalogue name finds it), of those this key may use."""
        visible = self._visible_models(state)
        if state.route.model is None:
            return self.answer(state, 200, models_list.render(visible, headers))
        model = self.catalogue.resolve(state.route.model)
        if model is None or model not in visible:
            raise GatewayError(404, Kind.NOT_FOUND, f"model {state.route.model!r} is not available to this key",
                               code="model_not_found")
        return self.answer(state, 200, models_list.render_one(model, headers))

    def _inference_profiles(self, state: RequestState) -> Reply:
        visible = self._visible_models(state)
        if state.route.model is None:
            return self.answer(state, 200, inference_profiles.render_list(visible, self.settings.region))
        model = self.catalogue.resolve(state.route.model)
        if model is None or model not in visible or not inference_profiles.is_profile(model):
            raise GatewayError(404, Kind.NOT_FOUND, f"inference profile {state.route.model!r} is not available")
        return self.answer(state, 200, inference_profiles.render_one(model, self.settings.region))

    def _openai_chat(self, state: RequestState, body: dict[str, Any]) -> Forward:
        request = openai_converse.parse_request(body)
        # The route's model wins, then the body's, then the configured default.
        name = state.route.model or request.model
        model = self._model_for(state, name) if name else self._model_for(state, self.catalogue.default.alias)
        state.response_model = state.route.model or request.model or model.alias
        upstream_body = openai_converse.to_converse_body(request, max_temperature=model.entry.max_temperature)
        state.chat_request = openai_converse.for_answer(request)
        operation = "converse-stream" if request.stream else "converse"
        return self._to_bedrock(state, model_path(model.bedrock_id, operation), upstream_body)

    def _policy(self, state: RequestState) -> Policy:
        """The consumer's policy and its guardrail policy, looked up once per request, together.

        Every phase asks; a reload mid-request then changes neither halfway, and cannot
        leave the request with a policy from one configuration and guards from another
        (a guardrail policy the reload renamed would be missing).
        """
        if state.policy is None:
            config, guards = self.settings.config, self.guards  # one configuration: _apply runs on this loop
            consumer = config.consumers.get(state.consumer or "")
            state.policy = config.policies[consumer.policy if consumer else "default"]
            state.guard = guards[state.policy.guardrails]
        return state.policy

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

    def _to_bedrock(self, state: RequestState, path: str, body: bytes, *, body_changed: bool = True,
                    extra: list[tuple[str, str]] | None = None) -> Forward:
        """Point the request at Bedrock: new path, host and body, signed; client credentials gone.

        ``extra`` are Bedrock API headers the client chose (a native route's
        ``x-amzn-bedrock-*``), signed with the rest. When the body is the
        client's own bytes, it is not sent back to Envoy (``body_changed``).
        """
        attached = self._guard(state).policy.bedrock_guardrail
        action = path.rsplit("/", 1)[1]
        if attached is not None and action.startswith("invoke"):
            # The policy's guardrail, never one the client names beside it (a native route passes on
            # the client's x-amzn-bedrock-* headers).
            extra = [*(header for header in extra or () if header[0] not in _GUARDRAIL_HEADERS),
                     ("x-amzn-bedrock-guardrailidentifier", attached.identifier),
                     ("x-amzn-bedrock-guardrailversion", attached.version)]
        elif attached is not None and action.startswith("converse"):
            converse = jsonwire.load_object(body)
            converse["guardrailConfig"] = {"guardrailIdentifier": attached.identifier,
                                           "guardrailVersion": attached.version}
            body, body_changed = jsonwire.dumps(converse), True
        if len(body) > MAX_UPSTREAM_BODY:
            raise GatewayError(413, Kind.TOO_LARGE, f"the request is {len(body)} bytes once translated for Bedrock; "
                               f"the gateway sends at most {MAX_UPSTREAM_BODY} (32 MiB)")
        streams = path.endswith("-stream")
        signed = sign(
            method="POST",
            url=self.endpoint.url(path),
            body=body,
            headers=[("host", self.endpoint.authority), ("content-type", "application/json"), *(extra or [])],
            credentials=self.credentials.current(),
            region=self.settings.region,
        )
        signed.pop("host")
        set_headers = [
            (":path", path),
            (":authority", self.endpoint.authority),
            ("content-length", str(len(body))),
            ("accept", EVENT_STREAM if streams else "application/json"),
            (ROUTING_HEADER, self.endpoint.routing),
            *signed.items(),
        ]
        replaced = {name for name, _ in set_headers}
        remove = [
            name
            for name in state.headers
            if not name.startswith(":") and name not in FORWARDED_HEADERS and name not in replaced
        ]
        state.upstream_started = time.monotonic()
        return Forward(set_headers=set_headers, remove_headers=remove, body=body if body_changed else None,
                       clear_route_cache=True, metadata={"model": state.model.alias} if state.model else None)

    # -- phase 3 -------------------------------------------------------------
    def response_headers(self, state: RequestState, headers: dict[str, str], end_of_stream: bool) -> Forward | Reply:
        state.status = int(headers.get(":status", "0") or 0)
        if state.upstream_started is None:
            return Forward()  # a local reply Envoy made itself (e.g. 413): not Bedrock's answer
        state.response_headers = headers
        state.first_byte = time.monotonic()
        if end_of_stream:
            return self.response_body(state, b"", end_of_stream=True)
        if state.status == 200 and headers.get("content-type", "").startswith(EVENT_STREAM):
            state.stream = self._stream_translator(state)
            if state.route.operation is Operation.BEDROCK:
                return Forward(stream_response=True)  # Bedrock's own stream, content type and all
            return Forward(
                set_headers=[("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-cache")],
                remove_headers=["content-length"],
                stream_response=True,
            )
        return Forward()

    def _stream_translator(self, state: RequestState) -> StreamTranslator:
        guard = self._guard(state)
        if guard.inspects_text:
            outcome = state.stream_guardrails = Outcome()
            make_redactor: Callable[[], StreamRedactor] | None = lambda: StreamRedactor(guard, outcome, "answer")
        else:
            make_redactor = None
        if state.route.operation is Operation.BEDROCK:
            is_claude = state.model is not None and state.model.is_anthropic
            converse = state.route.action == "converse-stream"
            return EventStreamMeter(state.route.action, make_redactor if (is_claude or converse) else None)
        if state.route.operation is Operation.OPENAI_CHAT and state.chat_request is not None:
            return ConverseStreamToChunks(state.chat_request, model=state.response_model,
                                          completion_id=self._completion_id(state), created=int(time.time()),
                                          redactor=make_redactor() if make_redactor else None)
        return InvokeStreamToSSE(make_redactor)

    @staticmethod
    def _completion_id(state: RequestState) -> str:
        return "chatcmpl-" + state.request_id.replace("-", "")

    # -- phase 4 -------------------------------------------------------------
    def response_body(self, state: RequestState, body: bytes, end_of_stream: bool = True) -> Forward | Reply:
        result = self._response_body(state, body, end_of_stream)
        if state.audit_answer is not None and state.stream is None:
            self.meter.keep_answer(state, body if result.body is None else result.body)
        return result

    def _response_body(self, state: RequestState, body: bytes, end_of_stream: bool) -> Forward | Reply:
        if state.upstream_started is None:
            return Forward()
        if state.stream is not None:
            return self._stream_chunk(state, state.stream, body, end_of_stream)
        status = state.status or 0
        operation = state.route.operation
        state.response_done = True
        if not 200 <= status < 300:
            error = bedrock_errors.from_upstream(status, state.response_headers, body)
            from_bedrock = "x-amzn-requestid" in state.response_headers  # else Envoy's own (connect error, timeout)
            state.upstream_error = (bedrock_errors.error_type(state.response_headers, body) if from_bedrock else
                                    "timeout" if status == 504 else "connection") or f"http_{status}"
            if (operation is Operation.BEDROCK and from_bedrock
                    and error.code not in bedrock_errors.GATEWAY_CREDENTIAL_ERRORS):
                # Already in Bedrock's shape, which boto3 and Claude Code parse: pass it on untouched.
                state.error = f"upstream {error.kind.value}: {error.code or status}"
                return Forward()
            return self.reject(state, error, upstream=True)
        result = Forward()
        # Parsed once: read for usage, then by the guardrail policy (which may redact it in place).
        answer = jsonwire.load_answer(body) if operation in (Operation.ANTHROPIC_MESSAGES, Operation.BEDROCK) else None
        if operation is Operation.BEDROCK:
            is_claude = state.model is not None and state.model.is_anthropic
            state.usage = bedrock_native.answer_usage(state.route.action, is_claude, state.response_headers, answer)
        elif operation is Operation.ANTHROPIC_COUNT_TOKENS:
            try:
                translated = anthropic_invoke.read_count_tokens(body)
            except GatewayError as exc:
                return self.reject(state, exc, upstream=True)
            result = Forward(set_headers=[("content-length", str(len(translated)))], body=translated)
        elif operation is Operation.ANTHROPIC_MESSAGES:
            state.usage = anthropic_invoke.read_response(answer)
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
        guard = self._guard(state)
        counting = operation is Operation.ANTHROPIC_COUNT_TOKENS or state.route.action == "count-tokens"
        if guard.inspects_text and not counting:
            client_answer = answer if result.body is None else jsonwire.load_answer(result.body)
            if isinstance(client_answer, dict):
                return self._guard_answer(state, guard, client_answer, result)
        return result

    def _guard_answer(self, state: RequestState, guard: Guard, parsed: dict[str, Any], result: Forward) -> Forward:
        """The guardrail policy on the model's answer (parsed): redacted before the client sees it."""
        outcome = guard.inspect(parsed, request=False)
        self._note_guardrails(state, guard.name, outcome, answer=True)
        if not outcome.changed:
            return result
        redacted = jsonwire.dumps(parsed)
        return Forward(set_headers=[("content-length", str(len(redacted)))], body=redacted)

    def _stream_chunk(self, state: RequestState, stream: StreamTranslator, body: bytes, end: bool) -> Forward:
        """One chunk of an event-stream answer, translated; the stream's end closes the record."""
        if state.first_token is None:
            state.first_token = time.monotonic()
        out = stream.feed(body)
        if end:
            out += stream.finish()
            state.response_done = True
        if state.audit_answer is not None:
            self.meter.keep_answer(state, body if stream.relays else out)
        return Forward() if stream.relays else Forward(body=out)

    # -- endings -------------------------------------------------------------
    def answer(self, state: RequestState, status: int, body: bytes,
               content_type: str | None = "application/json") -> Reply:
        """Answer the client from the gateway itself (no upstream call)."""
        state.status = status
        return Reply(status, [("content-type", content_type)] if content_type else [], body,
                     metadata=_who(state))

    def reject(self, state: RequestState, error: GatewayError, upstream: bool = False) -> Reply:
        """Answer ``error`` in the client's API shape and record why."""
        state.status = error.status
        state.error = f"{'upstream ' if upstream else ''}{error.kind.value}: {error.code or ''}".rstrip(": ")
        if error.status >= 500:
            log.warning("request failed", extra={"request_id": state.request_id, "error": str(error)})
        status, headers, body = error.render(state.route.api)
        return Reply(status, headers, body, metadata=_who(state))

    def closed(self, state: RequestState) -> None:
        """The request's ext_proc stream closed; :meth:`finish` may follow later (``server.py`` batches it)."""
        self.meter.closed(state, self._policy(state).limits if state.consumer else None)

    def finish(self, state: RequestState) -> None:
        """Meter, record and charge a request exactly once, however it ended.

        The server calls this after the request's ext_proc stream closed (see
        ``server.FINISH_BATCH_SECONDS``), so the record costs the client nothing.
        """
        if state.finished or not state.request_id:
            return
        state.finished = True
        if state.stream_guardrails is not None:
            self._note_guardrails(state, self._guard(state).name, state.stream_guardrails)
        self.meter.finish(state, self._policy(state).limits if state.consumer else None)

    async def close(self) -> None:
        """After the server's drain: every charge and record written."""
        await self.limiter.close()
        self.meter.close()


def _who(state: RequestState) -> dict[str, str]:
    """Consumer and route, as the access log reads them (Envoy dynamic metadata)."""
    return {"consumer": state.consumer or "", "route": state.route.label}


def _restart_only(settings: Settings) -> tuple[object, ...]:
    """What only a restart changes: the limits store, the records and audit files, the admin address."""
    config = settings.config
    return config.limits, settings.redis_url, config.usage_records, config.audit, config.admin


@lru_cache(maxsize=1024)
def model_path(model_id: str, action: str) -> str:
    """``/model/{id}/{action}`` with the ID encoded once (``:`` → ``%3A``), as boto3 sends it."""
    return f"/model/{quote(model_id, safe='')}/{action}"


def _counted_invoke_body(body: dict[str, object]) -> str | None:
    """The base64 InvokeModel body inside a CountTokens request, if that is its form."""
    given = body.get("input")
    invoke = given.get("invokeModel") if isinstance(given, dict) else None
    wrapped = invoke.get("body") if isinstance(invoke, dict) else None
    return wrapped if isinstance(wrapped, str) else None
