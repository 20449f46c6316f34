"""Bedrock's error answers, byte for byte where clients look.

A REST-JSON AWS service names the error in ``x-amzn-ErrorType`` as
``<Name>:<namespace URL>``; botocore keeps the part before ``:`` as
``Error.Code``. Bedrock's own errors carry the ``com.amazon.bedrock``
namespace, while the authentication front door (signature, unknown key)
answers with the generic ``com.amazon.coral.service`` one. The body is
``{"message": ...}``. Every answer carries ``x-amzn-RequestId``.
"""

from __future__ import annotations

import json

from aiohttp import web

BEDROCK_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.bedrock/"
CORAL_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.coral.service/"

# HTTP status of each Bedrock Runtime error, from the service model.
BEDROCK_STATUS: dict[str, int] = {
    "ValidationException": 400,
    "ServiceQuotaExceededException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ModelTimeoutException": 408,
    "ModelErrorException": 424,
    "ModelStreamErrorException": 424,
    "ThrottlingException": 429,
    "ModelNotReadyException": 429,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
}

# What Bedrock says for each error when a marker asks for it.
DEFAULT_MESSAGES: dict[str, str] = {
    "ValidationException": "Input is too long for requested model.",
    "ServiceQuotaExceededException": (
        "Your request exceeds the service quota for your account. You can view your "
        "service quotas in the AWS Service Quotas console."
    ),
    "AccessDeniedException": "You don't have access to the model with the specified model ID.",
    "ResourceNotFoundException": (
        "Model use case details have not been submitted for this account. Fill out the "
        "Anthropic use case details form before using the model. If you have already "
        "filled out the form, try again in 15 minutes."
    ),
    "ModelTimeoutException": "Model has timed out in processing the request. Try your request again.",
    "ModelErrorException": "The model returned an unexpected error while processing the request.",
    "ModelStreamErrorException": "The model stream was interrupted by an unexpected error. Try your request again.",
    "ThrottlingException": "Too many requests, please wait before trying again.",
    "ModelNotReadyException": "Model is not ready to serve inference requests. Try your request again later.",
    "InternalServerException": "The system encountered an unexpected error during processing. Try your request again.",
    "ServiceUnavailableException": "Bedrock is unable to process your request.",
}


class BedrockError(Exception):
    """An error answer: raise it anywhere in a handler, the app renders it."""

    def __init__(self, code: str, message: str, status: int | None = None, namespace: str = BEDROCK_NAMESPACE):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status if status is not None else BEDROCK_STATUS[code]
        self.namespace = namespace


def validation(message: str) -> BedrockError:
    return BedrockError("ValidationException", message)


def error_response(error: BedrockError, request_id: str) -> web.Response:
    return web.Response(
        status=error.status,
        body=json.dumps({"message": error.message}, separators=(",", ":")).encode(),
        content_type="application/json",
        headers={
            "x-amzn-RequestId": request_id,
            "x-amzn-ErrorType": f"{error.code}:{error.namespace}",
        },
    )
