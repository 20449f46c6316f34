"""What goes over the wire: raw paths, exact error headers, inspection records and logs."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .emulator_support import (
    DEV_KEY,
    HAIKU,
    HAIKU_BASE,
    REGION,
    STS_KEY,
    Emulator,
    invoke_body,
    user,
)

ENCODED = HAIKU.replace(":", "%3A")
BEDROCK_SUFFIX = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
CORAL_SUFFIX = ":http://internal.amazon.com/coral/com.amazon.coral.service/"


def last_record(emulator: Emulator) -> dict[str, Any]:
    return emulator.requests()[-1]


@pytest.mark.parametrize("model_in_path", [HAIKU, ENCODED], ids=["raw-colon", "percent-3A"])
def test_both_spellings_of_the_model_id_are_signed_and_served(
    emulator: Emulator, signed_post: Callable[..., httpx.Response], model_in_path: str
) -> None:
    path = f"/model/{model_in_path}/invoke"
    response = signed_post(path, invoke_body("colon test"))
    assert response.status_code == 200, response.text
    assert response.json()["content"][0]["text"].startswith("Emulated reply to: colon test")
    record = last_record(emulator)
    assert record["path"] == path  # exactly what was sent, so the test covers what it claims
    assert record["model_id"] == HAIKU and record["signature_valid"] is True


def test_boto3_sends_the_percent_encoded_form(emulator: Emulator, client: Any) -> None:
    client.converse(modelId=HAIKU, messages=user("which form?"))
    assert last_record(emulator)["path"] == f"/model/{ENCODED}/converse"


def test_unsigned_request_is_403_missing_authentication_token(signed_post: Callable[..., httpx.Response]) -> None:
    response = signed_post(f"/model/{ENCODED}/invoke", invoke_body("hi"), sign=False)
    assert response.status_code == 403
    assert response.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException" + CORAL_SUFFIX
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-amzn-RequestId"]
    assert response.json() == {"message": "Missing Authentication Token"}


def test_bedrock_error_headers_and_body_are_exact(signed_post: Callable[..., httpx.Response]) -> None:
    response = signed_post(f"/model/{ENCODED}/converse", {"messages": user("[[emulator:error=ThrottlingException]]")})
    assert response.status_code == 429
    assert response.headers["x-amzn-ErrorType"] == "ThrottlingException" + BEDROCK_SUFFIX
    assert response.json() == {"message": "Too many requests, please wait before trying again."}
    assert response.content == b'{"message":"Too many requests, please wait before trying again."}'


def test_malformed_json_is_a_validation_exception(signed_post: Callable[..., httpx.Response]) -> None:
    for operation in ("invoke", "converse", "count-tokens"):
        model = HAIKU_BASE if operation == "count-tokens" else HAIKU
        response = signed_post(f"/model/{model}/{operation}", b'{"messages": [')
        assert response.status_code == 400, operation
        assert response.headers["x-amzn-ErrorType"] == "ValidationException" + BEDROCK_SUFFIX


def test_a_body_changed_after_signing_is_caught(emulator: Emulator) -> None:
    url = f"{emulator.url}/model/{ENCODED}/invoke"
    signed = AWSRequest(
        method="POST",
        url=url,
        data=json.dumps(invoke_body("original")).encode(),
        headers={"Content-Type": "application/json"},
    )
    SigV4Auth(Credentials(*DEV_KEY), "bedrock", REGION).add_auth(signed)
    response = httpx.post(
        url, content=json.dumps(invoke_body("redacted")).encode(), headers=dict(signed.headers.items())
    )
    assert response.status_code == 403
    assert response.headers["x-amzn-ErrorType"] == "InvalidSignatureException" + CORAL_SUFFIX


def test_unknown_operation_is_404(signed_post: Callable[..., httpx.Response]) -> None:
    response = signed_post(f"/model/{ENCODED}/invoke-please", invoke_body("hi"))
    assert response.status_code == 404
    assert response.headers["x-amzn-ErrorType"].startswith("UnknownOperationException:")


def test_count_tokens_takes_base64_from_sdks_and_raw_json_from_people(
    emulator: Emulator, client: Any, signed_post: Callable[..., httpx.Response]
) -> None:
    body = json.dumps(invoke_body("count these words please"))
    via_sdk = client.count_tokens(modelId=HAIKU_BASE, input={"invokeModel": {"body": body}})["inputTokens"]
    sent = json.loads(last_record(emulator)["body"])
    assert sent["input"]["invokeModel"]["body"].startswith("eyJ")  # botocore sent the blob base64-encoded
    raw = signed_post(f"/model/{HAIKU_BASE}/count-tokens", {"input": {"invokeModel": {"body": body}}})
    assert raw.status_code == 200 and raw.json() == {"inputTokens": via_sdk}


def test_requests_are_recorded_without_secrets(
    emulator: Emulator, make_client: Callable[..., Any], signed_post: Callable[..., httpx.Response]
) -> None:
    emulator.clear()
    assert emulator.requests() == []
    make_client(*STS_KEY).converse(modelId=HAIKU, messages=user("recorded"))
    signed_post(f"/model/{ENCODED}/invoke", invoke_body("bad signature"), secret="wrong secret")
    good, bad = emulator.requests()
    assert good["method"] == "POST" and good["path"] == f"/model/{ENCODED}/converse"
    assert good["operation"] == "Converse" and good["status"] == 200
    assert (good["signature_valid"], good["access_key_id"], good["error_type"]) == (True, STS_KEY[0], None)
    assert good["body_size"] == len(good["body"].encode()) > 0
    assert good["headers"]["x-amz-security-token"] == "<redacted>"
    assert (
        "SignedHeaders=" in good["headers"]["authorization"]
        and "Signature=<redacted>" in good["headers"]["authorization"]
    )
    assert (bad["signature_valid"], bad["access_key_id"], bad["error_type"], bad["status"]) == (
        False,
        DEV_KEY[0],
        "InvalidSignatureException",
        403,
    )
    dumped = json.dumps(emulator.requests())
    for secret in (DEV_KEY[1], STS_KEY[1], STS_KEY[2]):
        assert secret not in dumped


def test_one_log_line_per_request_and_no_secrets(
    emulator: Emulator, make_client: Callable[..., Any], signed_post: Callable[..., httpx.Response]
) -> None:
    before = len(emulator.log_text().splitlines())
    make_client(*STS_KEY).converse(modelId=HAIKU, messages=user("log me"))
    signed_post(f"/model/{ENCODED}/invoke", invoke_body("bad"), secret="wrong secret")
    new_lines = emulator.log_text().splitlines()[before:]
    assert [line.split()[4:8] for line in new_lines] == [
        ["POST", f"/model/{ENCODED}/converse", "200", f"key={STS_KEY[0]}"],
        ["POST", f"/model/{ENCODED}/invoke", "403", f"key={DEV_KEY[0]}"],
    ]
    log = emulator.log_text()
    for secret in (DEV_KEY[1], STS_KEY[1], STS_KEY[2], "Signature="):
        assert secret not in log


def test_a_body_over_the_limit_is_refused(emulator: Emulator) -> None:
    too_big = b"x" * (64 * 1024 * 1024 + 1)
    headers = {
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDEMULATOR00000000/20250101/us-east-1/bedrock/aws4_request, SignedHeaders=host, Signature=00"
    }
    response = httpx.post(f"{emulator.url}/model/{ENCODED}/invoke", content=too_big, headers=headers, timeout=10)
    assert response.status_code == 413
    assert response.headers["x-amzn-ErrorType"] == "ValidationException" + BEDROCK_SUFFIX


def test_dropped_stream_is_a_protocol_error_for_botocore(make_client: Callable[..., Any]) -> None:
    with pytest.raises(urllib3.exceptions.ProtocolError, match="ended prematurely"):
        for _ in make_client().invoke_model_with_response_stream(
            modelId=HAIKU, body=json.dumps(invoke_body("[[emulator:drop]]"))
        )["body"]:
            pass
