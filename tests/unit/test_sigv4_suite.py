"""Our signer over the AWS SigV4 test suite.

Every case for a normalizing signer must give the expected canonical request,
string to sign, signature and Authorization header. The suite is read from
../shared/testdata, where it keeps its upstream licence.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import quote

import pytest
from botocore.credentials import ReadOnlyCredentials

from extproc.bedrock import sigv4
from tests.sigv4_suite import context, expected, normalizing_cases, parse_request, signing_time

# Cases that describe a signer we deliberately are not:
NOT_APPLICABLE = frozenset({
    # The session token is added *after* signing, i.e. left unsigned. We always
    # sign x-amz-security-token, which Bedrock requires (wire-formats §6).
    "post-sts-header-after",
})
CASES = normalizing_cases(NOT_APPLICABLE)


def test_suite_is_present_and_mostly_applicable() -> None:
    assert len(CASES) >= 25


def sign_case(case: Path) -> sigv4.SignedHeaders:
    settings = context(case)
    method, target, headers, body = parse_request((case / "request.txt").read_text())
    host = next(v for k, v in headers if k.lower() == "host")
    # On the wire a query is percent-encoded (the suite writes one case raw).
    path, sep, query = target.partition("?")
    target = path + sep + quote(query, safe="=&%")
    if settings.get("sign_body"):
        # "sign_body" cases expect the payload hash sent (and so signed) as a header.
        headers.append(("X-Amz-Content-SHA256", hashlib.sha256(body).hexdigest()))
    creds = settings["credentials"]
    return sigv4.sign(
        method=method,
        url=f"https://{host}{target}",
        body=body,
        headers=headers,
        credentials=ReadOnlyCredentials(creds["access_key_id"], creds["secret_access_key"], creds.get("token")),
        region=settings["region"],
        service=settings["service"],
        now=signing_time(case),
    )


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_signature_matches_suite(case: Path) -> None:
    signed = sign_case(case)
    want = expected(case)
    assert signed.canonical_request == want.canonical_request
    assert signed.string_to_sign == want.string_to_sign
    assert signed["authorization"].rpartition("Signature=")[2] == want.signature
    assert signed["authorization"] == want.authorization


def test_the_signed_headers_are_a_plain_mapping_to_send() -> None:
    case = next(c for c in CASES if c.name == "post-sts-header-before")
    signed = sign_case(case)
    token = context(case)["credentials"]["token"]
    assert dict(signed) == {
        "host": "example.amazonaws.com",
        "x-amz-date": "20150830T123600Z",
        "x-amz-security-token": token,
        "authorization": expected(case).authorization,
    }


def test_bedrock_path_is_encoded_once_more_in_the_canonical_request() -> None:
    """``%3A`` on the wire is ``%253A`` in the canonical request (wire-formats §6)."""
    signed = sigv4.sign(
        method="POST",
        url="https://bedrock-runtime.us-east-1.amazonaws.com/model/us.anthropic.claude-haiku-4-5-20251001-v1%3A0/invoke",
        body=b"{}",
        headers=[("host", "bedrock-runtime.us-east-1.amazonaws.com"), ("content-type", "application/json")],
        credentials=ReadOnlyCredentials("AKIDEXAMPLE", "secret", "token"),
        region="us-east-1",
    )
    lines = signed.canonical_request.split("\n")
    assert lines[1] == "/model/us.anthropic.claude-haiku-4-5-20251001-v1%253A0/invoke"
    assert "x-amz-security-token:token" in lines
    assert lines[-2] == "content-type;host;x-amz-date;x-amz-security-token"
    assert lines[-1] == hashlib.sha256(b"{}").hexdigest()
