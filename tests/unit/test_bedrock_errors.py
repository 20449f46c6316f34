"""Bedrock's errors read back into the client's shape with the same status class."""

from __future__ import annotations

import json

import pytest

from extproc.bedrock.errors import from_upstream
from extproc.errors import Api

SUFFIX = ":http://internal.amazon.com/coral/com.amazon.bedrock/"


@pytest.mark.parametrize(
    ("name", "status", "anthropic_type"),
    [
        ("ValidationException", 400, "invalid_request_error"),
        ("ServiceQuotaExceededException", 400, "invalid_request_error"),
        ("AccessDeniedException", 403, "permission_error"),
        ("ResourceNotFoundException", 404, "not_found_error"),
        ("ModelTimeoutException", 408, "timeout_error"),
        ("ThrottlingException", 429, "rate_limit_error"),
        ("ModelNotReadyException", 429, "rate_limit_error"),
        ("ModelErrorException", 424, "api_error"),
        ("InternalServerException", 500, "api_error"),
        ("ServiceUnavailableException", 503, "overloaded_error"),
    ],
)
def test_each_bedrock_error_keeps_status_and_message(name: str, status: int, anthropic_type: str) -> None:
    error = from_upstream(status, {"x-amzn-errortype": name + SUFFIX}, json.dumps({"message": "why"}).encode())
    code, headers, body = error.render(Api.ANTHROPIC)
    assert code == status
    assert json.loads(body) == {"type": "error", "error": {"type": anthropic_type, "message": f"{name}: why"}}
    assert ("content-type", "application/json") in headers


def test_use_case_details_message_stays_readable() -> None:
    message = ("Model use case details have not been submitted for this account. Fill out the Anthropic use case "
               "details form before using the model.")
    error = from_upstream(404, {"x-amzn-errortype": "ResourceNotFoundException"}, json.dumps({"message": message}).encode())
    assert message in json.loads(error.render(Api.ANTHROPIC)[2])["error"]["message"]


@pytest.mark.parametrize("name", ["InvalidSignatureException", "UnrecognizedClientException", "ExpiredTokenException"])
def test_rejection_of_gateway_credentials_is_a_502_that_says_so(name: str) -> None:
    error = from_upstream(403, {"x-amzn-errortype": name}, b'{"message":"The request signature we calculated..."}')
    status, _, body = error.render(Api.ANTHROPIC)
    assert status == 502
    assert "gateway's AWS credentials" in json.loads(body)["error"]["message"]


def test_non_json_answer_from_the_path_to_bedrock() -> None:
    error = from_upstream(503, {"content-type": "text/plain"}, b"upstream connect error or disconnect/reset")
    status, _, body = error.render(Api.OPENAI)
    assert status == 503
    assert json.loads(body)["error"]["message"] == (
        "the gateway could not get an answer from Bedrock: upstream connect error or disconnect/reset")


def test_shapes_for_each_api() -> None:
    error = from_upstream(429, {"x-amzn-errortype": "ThrottlingException"}, b'{"message":"slow down"}')
    _, _, openai_body = error.render(Api.OPENAI)
    assert json.loads(openai_body)["error"] == {
        "message": "ThrottlingException: slow down", "type": "rate_limit_error", "param": None,
        "code": "ThrottlingException",
    }
    _, headers, bedrock_body = error.render(Api.BEDROCK)
    assert ("retry-after", "1") in headers
    assert ("x-amzn-errortype", "ThrottlingException") in headers
    assert json.loads(bedrock_body) == {"message": "ThrottlingException: slow down"}
