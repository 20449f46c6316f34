"""Bedrock's error answers, read back into :class:`GatewayError`.

Bedrock names the error in ``x-amzn-ErrorType`` (sometimes with a ``:…``
suffix) and puts ``{"message": …}`` in the body. The status class is kept, so
a client's retry logic sees what Bedrock meant; Bedrock's message is kept
verbatim because it is what the user needs to read (for example the Opus
"use case details have not been submitted" 404). The one exception is a
rejection of the *gateway's own* AWS credentials: that is the platform team's
problem, not the client's, so it becomes a 502 that says so.
"""

from __future__ import annotations

import json

from ..errors import GatewayError, Kind

RETRY_AFTER_SECONDS = "1"

_KINDS: dict[str, Kind] = {
    "ValidationException": Kind.INVALID_REQUEST,
    "ServiceQuotaExceededException": Kind.INVALID_REQUEST,
    "AccessDeniedException": Kind.PERMISSION,
    "ResourceNotFoundException": Kind.NOT_FOUND,
    "ModelTimeoutException": Kind.TIMEOUT,
    "ThrottlingException": Kind.RATE_LIMIT,
    "ModelNotReadyException": Kind.RATE_LIMIT,
    "ServiceUnavailableException": Kind.OVERLOADED,
}

GATEWAY_CREDENTIAL_ERRORS = frozenset(
    {
        "InvalidSignatureException",
        "UnrecognizedClientException",
        "MissingAuthenticationTokenException",
        "ExpiredTokenException",
        "IncompleteSignatureException",
    }
)

_KIND_BY_STATUS: dict[int, Kind] = {
    504: Kind.TIMEOUT,
    400: Kind.INVALID_REQUEST,
    403: Kind.PERMISSION,
    404: Kind.NOT_FOUND,
    408: Kind.TIMEOUT,
    413: Kind.TOO_LARGE,
    429: Kind.RATE_LIMIT,
    503: Kind.OVERLOADED,
}


def error_type(headers: dict[str, str], body: bytes) -> str:
    """Bedrock's error name from the header, else from a ``__type`` body field."""
    raw = headers.get("x-amzn-errortype", "")
    if not raw:
        try:
            raw = str(json.loads(body).get("__type", ""))
        except (ValueError, AttributeError):
            raw = ""
    return raw.split(":", 1)[0].rsplit("#", 1)[-1]


def from_upstream(status: int, headers: dict[str, str], body: bytes) -> GatewayError:
    """Turn a non-2xx Bedrock answer into a GatewayError the client can read."""
    name = error_type(headers, body)
    try:
        decoded = json.loads(body)
        message = str(decoded.get("message") or decoded.get("Message") or "") if isinstance(decoded, dict) else ""
    except (ValueError, RecursionError):
        message = ""
    if not message:
        text = body.decode("utf-8", "replace").strip()[:300]
        message = text or f"Bedrock answered HTTP {status}"
    if not name and "x-amzn-requestid" not in headers:
        # Not Bedrock's answer but Envoy's (connection refused, timeout, reset).
        message = f"the gateway could not get an answer from Bedrock: {message}"
    if name in GATEWAY_CREDENTIAL_ERRORS:
        return GatewayError(
            502,
            Kind.UPSTREAM,
            f"Bedrock rejected the gateway's AWS credentials ({name}); the gateway operator must fix them",
            code=name,
        )
    kind = _KINDS.get(name) or _KIND_BY_STATUS.get(status, Kind.UPSTREAM)
    if status < 400:
        status = 502
    prefix = f"{name}: " if name else ""
    # Bedrock sends no retry-after; SDKs read it (integer seconds) to pace retries.
    headers_out = (("retry-after", RETRY_AFTER_SECONDS),) if kind is Kind.RATE_LIMIT else ()
    return GatewayError(status, kind, prefix + message, code=name or None, headers=headers_out)


def from_stream_exception(exception_type: str, message: str) -> GatewayError:
    """An exception frame met after a stream started (``:exception-type: throttlingException``).

    The frame names the error in camelCase; it maps like the same error
    before the stream, but the HTTP status is long gone (200 was sent), so
    only the kind and message reach the client, in an error event.
    """
    name = exception_type[:1].upper() + exception_type[1:]
    kind = _KINDS.get(name, Kind.UPSTREAM)
    return GatewayError(502, kind, f"{name}: {message}", code=name)
