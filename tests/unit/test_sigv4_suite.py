"""Our signer (botocore's SigV4Auth, as we call it) over the AWS SigV4 test suite.

Every case for a normalizing signer must give the expected canonical request,
string to sign, signature and Authorization header. The suite is read from
../shared/testdata, where it keeps its upstream licence.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path
from unittest import mock
from urllib.parse import quote

import pytest
from botocore.credentials import ReadOnlyCredentials

from extproc.bedrock import sigv4
from tests.sigv4_suite import normalizing_cases, parse_request

# Cases that describe a signer we deliberately are not:
NOT_APPLICABLE = frozenset({
    # The session token is added *after* signing, i.e. left unsigned. We always
    # sign x-amz-security-token, which Bedrock requires (wire-formats §6).
    "post-sts-header-after",
})


def test_suite_is_present_and_mostly_applicable() -> None:
    assert len(normalizing_cases(NOT_APPLICABLE)) >= 25


@pytest.mark.parametrize("case", normalizing_cases(NOT_APPLICABLE), ids=lambda p: p.name)
def test_signature_matches_suite(case: Path) -> None:
    context = json.loads((case / "context.json").read_text())
    method, target, headers, body = parse_request((case / "request.txt").read_text())
    host = next(v for k, v in headers if k.lower() == "host")
    # On the wire a query is percent-encoded (the suite writes one case raw).
    path, sep, query = target.partition("?")
    target = path + sep + quote(query, safe="=&%")
    if context.get("sign_body"):
        # "sign_body" cases expect the payload hash sent (and so signed) as a header.
        headers.append(("X-Amz-Content-SHA256", hashlib.sha256(body).hexdigest()))
    creds = context["credentials"]
    credentials = ReadOnlyCredentials(creds["access_key_id"], creds["secret_access_key"], creds.get("token"))
    when = datetime.datetime.strptime(context["timestamp"], "%Y-%m-%dT%H:%M:%SZ")

    captured: dict[str, str] = {}
    real_string_to_sign = sigv4.SigV4Auth.string_to_sign

    def spy(self, request, canonical_request):  # type: ignore[no-untyped-def]
        captured["canonical"] = canonical_request
        captured["sts"] = real_string_to_sign(self, request, canonical_request)
        return captured["sts"]

    with mock.patch("botocore.auth.get_current_datetime", return_value=when), mock.patch.object(
        sigv4.SigV4Auth, "string_to_sign", spy
    ):
        signed = sigv4.sign(
            method=method,
            url=f"https://{host}{target}",
            body=body,
            headers=headers,
            credentials=credentials,
            region=context["region"],
            service=context["service"],
        )

    assert captured["canonical"] == (case / "header-canonical-request.txt").read_text()
    assert captured["sts"] == (case / "header-string-to-sign.txt").read_text()
    expected_signature = (case / "header-signature.txt").read_text().strip()
    assert signed["authorization"].endswith(f"Signature={expected_signature}")
    expected_auth = next(
        line.split(":", 1)[1]
        for line in (case / "header-signed-request.txt").read_text().splitlines()
        if line.lower().startswith("authorization:")
    )
    assert signed["authorization"] == expected_auth


def test_bedrock_path_is_encoded_once_more_in_the_canonical_request() -> None:
    """``%3A`` on the wire is ``%253A`` in the canonical request (wire-formats §6)."""
    captured: dict[str, str] = {}
    real = sigv4.SigV4Auth.canonical_request

    def spy(self, request):  # type: ignore[no-untyped-def]
        captured["canonical"] = real(self, request)
        return captured["canonical"]

    with mock.patch.object(sigv4.SigV4Auth, "canonical_request", spy):
        sigv4.sign(
            method="POST",
            url="https://bedrock-runtime.us-east-1.amazonaws.com/model/us.anthropic.claude-haiku-4-5-20251001-v1%3A0/invoke",
            body=b"{}",
            headers=[("host", "bedrock-runtime.us-east-1.amazonaws.com"), ("content-type", "application/json")],
            credentials=ReadOnlyCredentials("AKIDEXAMPLE", "secret", "token"),
            region="us-east-1",
        )
    lines = captured["canonical"].split("\n")
    assert lines[1] == "/model/us.anthropic.claude-haiku-4-5-20251001-v1%253A0/invoke"
    assert "x-amz-security-token:token" in lines
    assert lines[-2] == "content-type;host;x-amz-date;x-amz-security-token"
