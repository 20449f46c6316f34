"""The aiohttp application: Bedrock Runtime's routes behind an AWS-like front door.

Every request on Bedrock's paths goes through :func:`front_door`, which plays
the part of AWS's edge: it records the request, checks the SigV4 signature
before anything else, turns every failure into Bedrock's error shape and logs
one line. The handlers then do what the model would: validate the body,
honour fault markers, and answer in JSON or as an event stream written frame
by frame.

Nothing blocks the event loop: bodies of a megabyte or more are hashed and
parsed in a worker thread, and delays are ``asyncio.sleep``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

from aiohttp import web

from . import anthropic_input, converse_input, markers, models, replies, streams
from .errors import CORAL_NAMESPACE, DEFAULT_MESSAGES, BedrockError, error_response, validation
from .eventstream import exception_frame
from .markers import Markers
from .prompt import Prompt
from .recorder import Recorder
from .sigv4_verify import SignatureError, Verifier, WireRequest

log = logging.getLogger("bedrock_emulator")

MAX_BODY_BYTES = 64 * 1024 * 1024
OFFLOAD_BYTES = 1024 * 1024  # bodies this large are hashed and parsed off the event loop
FAULT_AFTER_FRAMES = 3  # stream-exception and drop markers strike after this many frames
INSPECTION_PREFIX = "/_emulator/"
EVENTSTREAM = "application/vnd.amazon.eventstream"

# The exception members of each stream union (botocore's service model).
_STREAM_EXCEPTIONS = {
    "InvokeModelWithResponseStream": frozenset(
        {
            "internalServerException",
            "modelStreamErrorException",
            "validationException",
            "throttlingException",
            "modelTimeoutException",
            "serviceUnavailableException",
        }
    ),
    "ConverseStream": frozenset(
        {
            "internalServerException",
            "modelStreamErrorException",
            "validationException",
            "throttlingException",
            "serviceUnavailableException",
        }
    ),
}

VERIFIER = web.AppKey("verifier", Verifier)
RECORDER = web.AppKey("recorder", Recorder)
_BODY = "bedrock_emulator.body"
_REQUEST_ID = "bedrock_emulator.request_id"
_CLOCK = "bedrock_emulator.clock"
_RECORD = "bedrock_emulator.record"

T = TypeVar("T")


class _Dropped(Exception):
    """The connection was aborted on purpose (the ``drop`` marker)."""


async def offload(size: int, function: Callable[..., T], *args: Any) -> T:
    """Run CPU-bound work on a thread when the input is large, inline otherwise."""
    if size >= OFFLOAD_BYTES:
        return await asyncio.to_thread(function, *args)
    return function(*args)


def _sha256_hex(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _wire_headers(request: web.Request) -> list[tuple[str, str]]:
    return [
        (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
        for name, value in request.raw_headers
    ]


# -- the front door -------------------------------------------------------------------------------


async def _authenticate(request: web.Request, record: dict[str, Any]) -> bytes:
    """The verified body, or :class:`SignatureError` / :class:`BedrockError`."""
    headers = _wire_headers(request)
    if not any(name.lower() == "authorization" for name, _ in headers):
        raise SignatureError("MissingAuthenticationTokenException", "Missing Authentication Token")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BedrockError(
            "ValidationException",
            f"The request body is larger than the emulator's limit of {MAX_BODY_BYTES} bytes.",
            413,
        ) from None
    body_sha256 = await offload(len(body), _sha256_hex, body)
    request.app[RECORDER].note_body(record, body, body_sha256)
    wire = WireRequest(request.method, request.raw_path, headers, body_sha256)
    record["access_key_id"] = request.app[VERIFIER].verify(wire, datetime.now(UTC))
    record["signature_valid"] = True
    return body


@web.middleware
async def front_door(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if request.path.startswith(INSPECTION_PREFIX):
        return await handler(request)
    started = time.monotonic()
    request_id = str(uuid.uuid4())
    request[_REQUEST_ID] = request_id
    request[_CLOCK] = streams.Clock()
    record = request.app[RECORDER].start(request_id, request.method, request.raw_path, _wire_headers(request))
    request[_RECORD] = record
    route = request.match_info.route
    record["operation"] = route.name
    record["model_id"] = request.match_info.get("model_id")
    status: int | str = "aborted"
    try:
        try:
            request[_BODY] = await _authenticate(request, record)
            if request.match_info.http_exception is not None:
                raise BedrockError(
                    "UnknownOperationException", "The requested operation is not recognized.", 404, CORAL_NAMESPACE
                )
            response = await handler(request)
        except SignatureError as exc:
            record["access_key_id"] = exc.access_key_id
            raise BedrockError(exc.code, exc.message, 403, CORAL_NAMESPACE) from None
        status = response.status
        return response
    except BedrockError as exc:
        record["error_type"] = exc.code
        status = exc.status
        return error_response(exc, request_id)
    except _Dropped:
        return web.Response()  # never sent: the connection is gone
    except Exception:
        log.exception("unexpected error answering %s %s", request.method, request.path)
        record["error_type"] = "InternalServerException"
        status = 500
        error = BedrockError("InternalServerException", DEFAULT_MESSAGES["InternalServerException"])
        return error_response(error, request_id)
    finally:
        record["status"] = status if isinstance(status, int) else None
        log.info(
            "%s %s %s key=%s%s %dms",
            request.method,
            request.raw_path,
            status,
            record["access_key_id"] or "-",
            f" error={record['error_type']}" if record["error_type"] else "",
            (time.monotonic() - started) * 1000,
        )


# -- shared steps ---------------------------------------------------------------------------------


def _inference_model(model_id: str) -> models.Resolved:
    resolved = models.resolve(model_id)
    if resolved is None:
        raise validation("The provided model identifier is invalid.")
    if not resolved.is_profile and not resolved.model.on_demand:
        raise validation(
            f"Invocation of model ID {model_id} with on-demand throughput isn\u2019t supported. Retry your request "
            "with the ID or ARN of an inference profile that contains this model."
        )
    return resolved


def _invoke_model(model_id: str) -> models.Resolved:
    resolved = _inference_model(model_id)
    if not resolved.model.is_anthropic:
        raise validation(
            f"The emulator answers InvokeModel only in the Anthropic Messages format; {model_id} "
            "is not a Claude model, use Converse for it."
        )
    return resolved


def _abort(request: web.Request) -> NoReturn:
    """Reset the TCP connection mid-answer, as a failing upstream or network would."""
    request[_RECORD]["error_type"] = "ConnectionAborted"
    transport = request.transport
    if transport is not None:
        transport.abort()
    raise _Dropped()


async def _before_answer(request: web.Request, found: Markers, streaming: bool) -> None:
    """The faults that strike before the first byte: delay, error, and a drop without an answer."""
    if found.slow_ms:
        await asyncio.sleep(found.slow_ms / 1000)
    if found.error:
        raise BedrockError(found.error, DEFAULT_MESSAGES[found.error])
    if found.drop and not streaming:
        _abort(request)


def _check_stream_exception(found: Markers, operation: str) -> None:
    if found.stream_exception and markers.stream_member(found.stream_exception) not in _STREAM_EXCEPTIONS[operation]:
        raise validation(
            f"Emulator marker [[emulator:stream-exception={found.stream_exception}]]: {operation} streams cannot carry "
            f"that exception; they carry {', '.join(sorted(_STREAM_EXCEPTIONS[operation]))}."
        )


async def _write_stream(
    request: web.Request, frames: Iterator[bytes], found: Markers, headers: dict[str, str], reported: streams.Reported
) -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers={"x-amzn-RequestId": request[_REQUEST_ID], **headers})
    response.content_type = EVENTSTREAM
    response.enable_chunked_encoding()
    await response.prepare(request)
    sent = 0
    try:
        while True:
            if sent and found.slow_ms:
                await asyncio.sleep(found.slow_ms / 1000)
            if sent == FAULT_AFTER_FRAMES and found.stream_exception:
                member = markers.stream_member(found.stream_exception)
                request[_RECORD]["error_type"] = member
                await response.write(exception_frame(member, DEFAULT_MESSAGES[found.stream_exception]))
                break
            if sent == FAULT_AFTER_FRAMES and found.drop:
                _abort(request)
            frame = next(frames, None)
            if frame is None:
                break
            await response.write(frame)
            reported.sent()
            request[_RECORD]["usage"] = dict(reported.usage)
            sent += 1
        await response.write_eof()
    except _Dropped:
        pass
    except ConnectionResetError:
        log.info("client went away during the stream of %s after %d frames", request.path, sent)
    return response


def _note_usage(request: web.Request, reply: replies.Reply) -> None:
    """The usage a whole (non-streamed) answer reports, for ``/_emulator/requests``."""
    request[_RECORD]["usage"] = {"input": reply.input_tokens, "output": reply.output_tokens,
                                 "cache_read": reply.cache_read_tokens, "cache_write": reply.cache_write_tokens}


def _json(payload: dict[str, Any], request: web.Request, extra: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(payload, separators=(",", ":")).encode("utf-8"),
        content_type="application/json",
        headers={"x-amzn-RequestId": request[_REQUEST_ID], **(extra or {})},
    )


# -- InvokeModel and InvokeModelWithResponseStream ------------------------------------------------


def _plan_invoke(body: bytes, resolved: models.Resolved) -> tuple[replies.Reply, Markers]:
    prompt = anthropic_input.parse(anthropic_input.load_body(body), resolved.model)
    found = markers.scan(prompt.all_text())
    return replies.compose(prompt, resolved.model.base_id, found), found


async def invoke(request: web.Request) -> web.StreamResponse:
    resolved = _invoke_model(request.match_info["model_id"])
    body: bytes = request[_BODY]
    reply, found = await offload(len(body), _plan_invoke, body, resolved)
    await _before_answer(request, found, streaming=False)
    headers = {
        "X-Amzn-Bedrock-Input-Token-Count": str(reply.input_tokens),
        "X-Amzn-Bedrock-Output-Token-Count": str(reply.output_tokens),
        "X-Amzn-Bedrock-Invocation-Latency": str(request[_CLOCK].elapsed_ms()),
    }
    _note_usage(request, reply)
    return _json(replies.anthropic_message(reply, str(resolved.model.anthropic_name)), request, headers)


async def invoke_stream(request: web.Request) -> web.StreamResponse:
    resolved = _invoke_model(request.match_info["model_id"])
    body: bytes = request[_BODY]
    reply, found = await offload(len(body), _plan_invoke, body, resolved)
    _check_stream_exception(found, "InvokeModelWithResponseStream")
    await _before_answer(request, found, streaming=True)
    reported = streams.Reported()
    frames = streams.anthropic_frames(reply, str(resolved.model.anthropic_name), request[_CLOCK], reported)
    return await _write_stream(request, frames, found, {"X-Amzn-Bedrock-Content-Type": "application/json"}, reported)


# -- Converse and ConverseStream ------------------------------------------------------------------


def _plan_converse(body: bytes, resolved: models.Resolved) -> tuple[replies.Reply, Markers]:
    prompt = converse_input.parse(converse_input.load_body(body), resolved.model)
    found = markers.scan(prompt.all_text())
    return replies.compose(prompt, resolved.model.base_id, found), found


async def converse(request: web.Request) -> web.StreamResponse:
    resolved = _inference_model(request.match_info["model_id"])
    body: bytes = request[_BODY]
    reply, found = await offload(len(body), _plan_converse, body, resolved)
    await _before_answer(request, found, streaming=False)
    _note_usage(request, reply)
    return _json(replies.converse_response(reply, request[_CLOCK].elapsed_ms()), request)


async def converse_stream(request: web.Request) -> web.StreamResponse:
    resolved = _inference_model(request.match_info["model_id"])
    body: bytes = request[_BODY]
    reply, found = await offload(len(body), _plan_converse, body, resolved)
    _check_stream_exception(found, "ConverseStream")
    await _before_answer(request, found, streaming=True)
    reported = streams.Reported()
    return await _write_stream(request, streams.converse_frames(reply, request[_CLOCK], reported), found, {}, reported)


# -- CountTokens ----------------------------------------------------------------------------------


def _invoke_body_for_count(encoded: Any) -> bytes:
    """CountTokens' ``invokeModel.body`` is a blob: base64 on the wire (what SDKs send).

    A raw JSON string is accepted too, since hand-written clients send that.
    """
    if not isinstance(encoded, str):
        raise validation(
            "1 validation error detected: Value null at 'input.invokeModel.body' failed to satisfy constraint: "
            "Member must not be null"
        )
    if encoded.lstrip().startswith("{"):
        return encoded.encode("utf-8")
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise validation("Unable to parse 'input.invokeModel.body': it is neither base64 nor a JSON object.") from None


def _plan_count(body: bytes, resolved: models.Resolved) -> tuple[Prompt, Markers]:
    data = converse_input.load_body(body)
    given = data.get("input")
    if not isinstance(given, dict) or len(given) != 1 or next(iter(given)) not in ("invokeModel", "converse"):
        raise validation("The input must set exactly one of 'invokeModel' or 'converse'.")
    if "invokeModel" in given:
        invoke_body = given["invokeModel"].get("body") if isinstance(given["invokeModel"], dict) else None
        data = anthropic_input.load_body(_invoke_body_for_count(invoke_body))
        prompt = anthropic_input.parse(data, resolved.model)
    else:
        if not isinstance(given["converse"], dict):
            raise validation("Unable to parse 'input.converse': expected an object.")
        prompt = converse_input.parse(given["converse"], resolved.model)
    return prompt, markers.scan(prompt.all_text())


async def count_tokens(request: web.Request) -> web.StreamResponse:
    model_id = request.match_info["model_id"]
    resolved = models.resolve(model_id)
    # CountTokens takes a foundation model's own ID; inference profiles are not accepted.
    if resolved is None or resolved.is_profile:
        raise validation("The provided model identifier is invalid.")
    if not resolved.model.is_anthropic:
        raise validation("The provided model doesn't support counting tokens.")
    body: bytes = request[_BODY]
    prompt, found = await offload(len(body), _plan_count, body, resolved)
    await _before_answer(request, found, streaming=False)
    return _json({"inputTokens": prompt.input_tokens()}, request)


# -- inspection, outside Bedrock's path space -----------------------------------------------------


async def list_requests(request: web.Request) -> web.Response:
    return web.json_response(request.app[RECORDER].snapshot())


async def clear_requests(request: web.Request) -> web.Response:
    request.app[RECORDER].clear()
    return web.json_response({"cleared": True})


def create_app(verifier: Verifier) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[front_door])
    app[VERIFIER] = verifier
    app[RECORDER] = Recorder()
    app.router.add_post("/model/{model_id}/invoke", invoke, name="InvokeModel")
    app.router.add_post(
        "/model/{model_id}/invoke-with-response-stream", invoke_stream, name="InvokeModelWithResponseStream"
    )
    app.router.add_post("/model/{model_id}/converse", converse, name="Converse")
    app.router.add_post("/model/{model_id}/converse-stream", converse_stream, name="ConverseStream")
    app.router.add_post("/model/{model_id}/count-tokens", count_tokens, name="CountTokens")
    app.router.add_get("/_emulator/requests", list_requests)
    app.router.add_delete("/_emulator/requests", clear_requests)
    return app
