"""Errors in each client's own API shape.

A rejection is raised anywhere as a :class:`GatewayError` carrying a status
and a *kind*; it is rendered once, at the edge, in the shape of the API the
client speaks, so that the official SDKs raise their usual exception classes
(``anthropic.AuthenticationError``, ``openai.NotFoundError``, botocore's
``ClientError`` with the right code) and show the message to the user.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field


class Api(enum.Enum):
    """The API dialect a route speaks, which decides the error shape."""

    ANTHROPIC = "anthropic"
    OPENAI = "openai"
    BEDROCK = "bedrock"


class Kind(enum.Enum):
    INVALID_REQUEST = "invalid_request"
    AUTHENTICATION = "authentication"
    PERMISSION = "permission"
    NOT_FOUND = "not_found"
    TOO_LARGE = "too_large"
    RATE_LIMIT = "rate_limit"
    TIMEOUT = "timeout"
    OVERLOADED = "overloaded"
    UPSTREAM = "upstream"


# kind → (Anthropic error.type, OpenAI error.type, Bedrock x-amzn-ErrorType)
_NAMES: dict[Kind, tuple[str, str, str]] = {
    Kind.INVALID_REQUEST: ("invalid_request_error", "invalid_request_error", "ValidationException"),
    Kind.AUTHENTICATION: ("authentication_error", "invalid_request_error", "UnrecognizedClientException"),
    Kind.PERMISSION: ("permission_error", "permission_error", "AccessDeniedException"),
    Kind.NOT_FOUND: ("not_found_error", "invalid_request_error", "ResourceNotFoundException"),
    Kind.TOO_LARGE: ("request_too_large", "invalid_request_error", "ValidationException"),
    Kind.RATE_LIMIT: ("rate_limit_error", "rate_limit_error", "ThrottlingException"),
    Kind.TIMEOUT: ("timeout_error", "timeout_error", "ModelTimeoutException"),
    Kind.OVERLOADED: ("overloaded_error", "server_error", "ServiceUnavailableException"),
    Kind.UPSTREAM: ("api_error", "server_error", "InternalServerException"),
}


@dataclass(frozen=True)
class GatewayError(Exception):
    """A request the gateway answers itself, with an error."""

    status: int
    kind: Kind
    message: str
    param: str | None = None
    code: str | None = None
    headers: tuple[tuple[str, str], ...] = field(default=())

    def __str__(self) -> str:
        return f"{self.status} {self.kind.value}: {self.message}"

    def render(self, api: Api) -> tuple[int, list[tuple[str, str]], bytes]:
        """Status, headers and JSON body of this error in ``api``'s shape."""
        anthropic_type, openai_type, bedrock_type = _NAMES[self.kind]
        headers = [("content-type", "application/json"), *self.headers]
        if api is Api.ANTHROPIC:
            body = {"type": "error", "error": {"type": anthropic_type, "message": self.message}}
        elif api is Api.OPENAI:
            body = {"error": {"message": self.message, "type": openai_type, "param": self.param, "code": self.code}}
        else:
            headers.append(("x-amzn-errortype", bedrock_type))
            body = {"message": self.message}
        return self.status, headers, json.dumps(body).encode()


def invalid(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(400, Kind.INVALID_REQUEST, message, param=param)
