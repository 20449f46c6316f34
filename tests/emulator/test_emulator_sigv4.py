"""The SigV4 verifier against AWS's published test vectors, botocore's signer, and AWS's rules."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from bedrock_emulator.credentials import Credential
from bedrock_emulator.sigv4_verify import (
    SignatureError,
    Verifier,
    WireRequest,
    canonical_request,
    parse_authorization,
    signature,
    string_to_sign,
)

from tests.sigv4_suite import normalizing_cases, parse_request


@pytest.mark.parametrize("case", normalizing_cases(), ids=lambda p: p.name)
def test_aws_sigv4_test_suite(case: Path) -> None:
    context = json.loads((case / "context.json").read_text())
    method, target, headers, body = parse_request((case / "header-signed-request.txt").read_text())
    wire = WireRequest(method, target, headers, hashlib.sha256(body).hexdigest())
    auth = parse_authorization(wire.header_values("authorization")[0])
    amz_date = wire.header_values("x-amz-date")[0]
    secret = context["credentials"]["secret_access_key"]

    canonical = canonical_request(wire, auth.signed_headers)
    assert canonical == (case / "header-canonical-request.txt").read_text()
    assert string_to_sign(amz_date, auth.scope, canonical) == (case / "header-string-to-sign.txt").read_text()
    assert signature(secret, auth, amz_date, canonical) == (case / "header-signature.txt").read_text().strip()

    creds = context["credentials"]
    verifier = Verifier(
        [Credential(creds["access_key_id"], secret, creds.get("token"))], context["region"], context["service"]
    )
    now = datetime.strptime(context["timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    if context.get("omit_session_token"):
        # AWS accepts a session token left out of the signature; the emulator insists it be signed.
        with pytest.raises(SignatureError, match="X-Amz-Security-Token"):
            verifier.verify(wire, now)
    else:
        assert verifier.verify(wire, now) == creds["access_key_id"]


def test_the_suite_is_really_there() -> None:
    assert len(normalizing_cases()) >= 25


# -- against botocore's signer, on inputs hypothesis makes up --------------------------------------

KEY = Credential("AKIDTEST", "test/secret/key", None)

segment = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="/?#\x00\r\n"), min_size=1, max_size=12)


def botocore_signed(url: str, body: bytes, extra_headers: dict[str, str]) -> WireRequest:
    """Sign with botocore (at the current time) and describe what would go on the wire."""
    request = AWSRequest(
        method="POST", url=url, data=body, headers={"Content-Type": "application/json", **extra_headers}
    )
    SigV4Auth(Credentials(KEY.access_key_id, KEY.secret_access_key), "bedrock", "us-east-1").add_auth(request)
    parts = urlsplit(request.url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = [("Host", parts.netloc), *request.headers.items()]
    return WireRequest("POST", target, headers, hashlib.sha256(body).hexdigest())


def now() -> datetime:
    return datetime.now(UTC)


@settings(max_examples=150, deadline=None)
@given(
    segments=st.lists(segment, min_size=1, max_size=4),
    raw_colon=st.booleans(),
    query=st.dictionaries(st.text(min_size=1, max_size=6), st.text(max_size=6), max_size=3),
    body=st.binary(max_size=512),
    header_value=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20),
)
def test_whatever_botocore_signs_verifies_and_any_change_does_not(
    segments: list[str], raw_colon: bool, query: dict[str, str], body: bytes, header_value: str
) -> None:
    safe = ":" if raw_colon else ""
    path = "/model/" + "/".join(quote(s, safe=safe) for s in segments) + "/invoke"
    query_string = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query.items())
    url = f"http://127.0.0.1:8090{path}" + (f"?{query_string}" if query_string else "")
    wire = botocore_signed(url, body, {"X-Custom": header_value})
    verifier = Verifier([KEY], "us-east-1")
    assert verifier.verify(wire, now()) == KEY.access_key_id

    tampered_body = WireRequest(wire.method, wire.target, wire.headers, hashlib.sha256(body + b"x").hexdigest())
    tampered_path = WireRequest(
        wire.method, wire.target.replace("/invoke", "/converse"), wire.headers, wire.body_sha256
    )
    tampered_host = WireRequest(
        wire.method,
        wire.target,
        [(n, "127.0.0.1:9999" if n == "Host" else v) for n, v in wire.headers],
        wire.body_sha256,
    )
    for tampered in (tampered_body, tampered_path, tampered_host):
        with pytest.raises(SignatureError) as caught:
            verifier.verify(tampered, now())
        assert caught.value.code == "InvalidSignatureException"


# -- AWS's rejections, one rule at a time ------------------------------------------------------------

URL = "http://127.0.0.1:8090/model/us.anthropic.claude-haiku-4-5-20251001-v1%3A0/invoke"


def with_header(wire: WireRequest, name: str, value: str | None) -> WireRequest:
    headers = [(n, v) for n, v in wire.headers if n.lower() != name.lower()]
    if value is not None:
        headers.append((name, value))
    return WireRequest(wire.method, wire.target, headers, wire.body_sha256)


def rejection(verifier: Verifier, wire: WireRequest, at: datetime | None = None) -> SignatureError:
    with pytest.raises(SignatureError) as caught:
        verifier.verify(wire, at or now())
    return caught.value


def test_clock_skew_of_more_than_15_minutes_is_rejected_both_ways() -> None:
    wire = botocore_signed(URL, b"{}", {})
    verifier = Verifier([KEY], "us-east-1")
    assert verifier.verify(wire, now() + timedelta(minutes=14)) == KEY.access_key_id
    late = rejection(verifier, wire, now() + timedelta(minutes=16))
    assert (late.code, late.message.split(":")[0]) == ("InvalidSignatureException", "Signature expired")
    early = rejection(verifier, wire, now() - timedelta(minutes=16))
    assert (early.code, early.message.split(":")[0]) == ("InvalidSignatureException", "Signature not yet current")


def test_scope_must_name_our_region_and_bedrock() -> None:
    wire = botocore_signed(URL, b"{}", {})
    assert "valid region" in rejection(Verifier([KEY], "eu-west-1"), wire).message
    assert (
        "correct service: 'bedrock-runtime'" in rejection(Verifier([KEY], "us-east-1", "bedrock-runtime"), wire).message
    )


def test_unknown_key_and_wrong_secret() -> None:
    wire = botocore_signed(URL, b"{}", {})
    unknown = rejection(Verifier([Credential("AKIDOTHER", "x")], "us-east-1"), wire)
    assert (unknown.code, unknown.message) == (
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    )
    assert unknown.access_key_id == KEY.access_key_id
    wrong = rejection(Verifier([Credential(KEY.access_key_id, "another secret")], "us-east-1"), wire)
    assert wrong.code == "InvalidSignatureException"
    assert wrong.message.startswith("The request signature we calculated does not match the signature you provided.")


def test_session_token_must_match_and_be_signed() -> None:
    temporary = Credential(KEY.access_key_id, KEY.secret_access_key, "the-token")
    verifier = Verifier([temporary], "us-east-1")
    request = AWSRequest(method="POST", url=URL, data=b"{}", headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(KEY.access_key_id, KEY.secret_access_key, "the-token"), "bedrock", "us-east-1").add_auth(
        request
    )
    wire = WireRequest(
        "POST",
        urlsplit(URL).path,
        [("Host", "127.0.0.1:8090"), *request.headers.items()],
        hashlib.sha256(b"{}").hexdigest(),
    )
    assert verifier.verify(wire, now()) == KEY.access_key_id
    assert rejection(verifier, with_header(wire, "X-Amz-Security-Token", "other")).code == "UnrecognizedClientException"
    assert rejection(verifier, with_header(wire, "X-Amz-Security-Token", None)).code == "UnrecognizedClientException"
    unsigned = with_header(botocore_signed(URL, b"{}", {}), "X-Amz-Security-Token", "the-token")  # sent, not signed
    assert "X-Amz-Security-Token" in rejection(verifier, unsigned).message
    # A long-term key must not come with a token at all.
    assert rejection(Verifier([KEY], "us-east-1"), wire).code == "UnrecognizedClientException"


def test_host_and_date_must_be_signed() -> None:
    wire = botocore_signed(URL, b"{}", {})
    authorization = wire.header_values("authorization")[0]
    for signed in ("content-type;x-amz-date", "content-type;host"):
        changed = with_header(wire, "Authorization", authorization.replace("content-type;host;x-amz-date", signed))
        assert rejection(Verifier([KEY], "us-east-1"), changed).message.endswith(
            "must be a 'SignedHeader' in the AWS Authorization."
        )


def test_content_sha256_header_must_describe_the_body() -> None:
    good = botocore_signed(URL, b"{}", {"X-Amz-Content-SHA256": hashlib.sha256(b"{}").hexdigest()})
    assert Verifier([KEY], "us-east-1").verify(good, now()) == KEY.access_key_id
    lying = botocore_signed(URL, b"{}", {"X-Amz-Content-SHA256": hashlib.sha256(b"[]").hexdigest()})
    assert "x-amz-content-sha256" in rejection(Verifier([KEY], "us-east-1"), lying).message


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "MissingAuthenticationTokenException"),
        ("Bearer abc", "IncompleteSignatureException"),
        (
            "AWS4-HMAC-SHA256 Credential=AKIDTEST/20250101/us-east-1/bedrock/aws4_request",
            "IncompleteSignatureException",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIDTEST/us-east-1, SignedHeaders=host;x-amz-date, Signature=00",
            "IncompleteSignatureException",
        ),
    ],
)
def test_malformed_authorization(authorization: str | None, code: str) -> None:
    wire = with_header(botocore_signed(URL, b"{}", {}), "Authorization", authorization)
    assert rejection(Verifier([KEY], "us-east-1"), wire).code == code


def test_missing_or_malformed_date() -> None:
    wire = botocore_signed(URL, b"{}", {})
    assert "X-Amz-Date" in rejection(Verifier([KEY], "us-east-1"), with_header(wire, "X-Amz-Date", None)).message
    assert "ISO-8601" in rejection(Verifier([KEY], "us-east-1"), with_header(wire, "X-Amz-Date", "2025-01-01")).message
