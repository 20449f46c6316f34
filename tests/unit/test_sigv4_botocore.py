"""Our signer against botocore's, the oracle, on inputs hypothesis makes up.

For every generated request ``sign`` must return byte for byte the headers
botocore's ``SigV4Auth.add_auth`` sets at the same instant. A name sent more
than once is returned once, its values joined with "," as SigV4 signs them
(a dict holds one value a name; HTTP folds repeats the same way), so the
oracle's repeats are folded alike before comparing. Also: the signing-key
cache never hands out a key for another secret, day, region or service; the
emulator's independent verifier accepts what we sign; secrets stay out of
errors and logs.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from unittest import mock
from urllib.parse import quote, urlsplit

import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import ReadOnlyCredentials
from hypothesis import given, settings
from hypothesis import strategies as st

from bedrock_emulator.credentials import Credential
from bedrock_emulator.sigv4_verify import Verifier, WireRequest
from extproc.bedrock import sigv4

MODELS = (
    "us.anthropic.claude-haiku-4-5-20251001-v1:0",
    "anthropic.claude-sonnet-4-20250514-v1:0",
    "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
    "anthropic.claude-sonnet-4-6",
    "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-opus-4-5-20251101-v1:0",
    "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/a1b2c3d4e5f6",
)
ACTIONS = ("invoke", "invoke-with-response-stream", "converse", "converse-stream", "count-tokens")
HOST = "bedrock-runtime.us-east-1.amazonaws.com"
SIGNING_HEADERS = ("Authorization", "X-Amz-Date", "Date", "X-Amz-Security-Token", "X-Amz-Content-SHA256", "Host")
UNSIGNED = tuple(sorted(sigv4.UNSIGNED_HEADERS))
INVOKE: dict[str, Any] = {"method": "POST", "url": f"https://{HOST}/model/m/invoke", "body": b"{}"}


def botocore_signing(
    *,
    method: str,
    url: str,
    body: bytes,
    headers: list[tuple[str, str]],
    credentials: ReadOnlyCredentials,
    region: str,
    service: str = sigv4.SERVICE,
    now: datetime,
) -> tuple[dict[str, str], str]:
    """botocore's headers (repeats folded as ``sign`` folds them) and canonical request, signed at ``now``."""
    canonical: list[str] = []

    class Recording(SigV4Auth):
        def canonical_request(self, request: AWSRequest) -> str:
            canonical.append(super().canonical_request(request))
            return canonical[-1]

    pairs = HTTPHeaders()
    for name, value in headers:
        pairs[name] = value  # appends: repeats are kept, in order
    request = AWSRequest(method=method, url=url, data=body, headers=pairs)
    naive_utc = now.astimezone(UTC).replace(tzinfo=None) if now.tzinfo else now
    with mock.patch("botocore.auth.get_current_datetime", return_value=naive_utc):
        Recording(credentials, service, region).add_auth(request)
    grouped: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        grouped.setdefault(name.lower(), []).append(value)
    folded = {
        name: values[0] if len(values) == 1 else ",".join(" ".join(v.split()) for v in values)
        for name, values in grouped.items()
    }
    return folded, canonical[0]


def assert_same_as_botocore(**request: Any) -> sigv4.SignedHeaders:
    """``sign(**request)``, checked against botocore's signer given the same request at the same instant."""
    ours = sigv4.sign(**request)
    theirs, theirs_canonical = botocore_signing(**request)
    assert ours.canonical_request == theirs_canonical
    assert ours == theirs
    return ours


# -- strategies -----------------------------------------------------------------------------------

# Anything but the URL's own delimiters and what urlsplit silently deletes (tab, CR, LF): a wire URL
# never holds those (sign's contract), and botocore would sign a different URL than the one sent.
raw_text = st.text(st.characters(codec="utf-8", exclude_characters="/?#\t\r\n"), min_size=1, max_size=10)
segment = st.one_of(
    st.text(st.sampled_from("abcXYZ019-._~"), min_size=1, max_size=8),  # unreserved
    st.text(st.sampled_from(":@!$&'()*+,;=[] %"), min_size=1, max_size=4),  # reserved, space, lone %
    raw_text.map(lambda s: quote(s, safe="")),  # percent-encoded, UTF-8 included
    raw_text,  # raw, unicode included
    st.sampled_from([".", "..", ""]),  # dot segments; "" makes "//"
)
generic_path = st.builds(
    lambda segments, trailing: "/" + "/".join(segments) + trailing,
    st.lists(segment, max_size=6),
    st.sampled_from(["", "/"]),
)
bedrock_path = st.builds(
    lambda model, action, raw_colon: f"/model/{quote(model, safe=':' if raw_colon else '')}/{action}",
    st.sampled_from(MODELS),
    st.sampled_from(ACTIONS),
    st.booleans(),
)
query_part = st.text(st.characters(codec="utf-8", exclude_characters="#&=\t\r\n"), max_size=6)
query_pair = st.one_of(
    st.builds(lambda k, v: f"{quote(k, safe='')}={quote(v, safe='')}", query_part, query_part),  # encoded
    st.builds(lambda k, v: f"{k}={v}", query_part, query_part),  # as some clients send it
    query_part,  # a name alone
)
query = st.one_of(st.just(""), st.lists(query_pair, min_size=1, max_size=4).map(lambda pairs: "?" + "&".join(pairs)))
authority = st.sampled_from([
    HOST, "127.0.0.1:8090", "localhost", "Example.COM", "example.com:443", "example.com:80", "[::1]:8443", "[::1]",
])
header_name = st.one_of(
    st.sampled_from(["content-type", "Content-Type", "x-amzn-bedrock-guardrailidentifier", "X-Custom", "x-custom"]),
    st.sampled_from(SIGNING_HEADERS).flatmap(lambda name: st.sampled_from([name, name.lower(), name.upper()])),
    st.sampled_from(UNSIGNED),
    st.from_regex(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}", fullmatch=True),  # any HTTP token
)
header_value = st.one_of(
    st.text(st.sampled_from("ab ,;=/\t"), max_size=12),  # runs of spaces and tabs, inside and around
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12),  # any text, all whitespace
)
secret = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40)
credentials = st.builds(
    ReadOnlyCredentials,
    st.from_regex(r"(AKIA|ASIA)[A-Z0-9]{16}", fullmatch=True),
    secret,
    st.one_of(st.none(), st.just(""), st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)),
)
instant = st.builds(
    lambda moment, zone: moment.replace(tzinfo=zone) if zone else moment,
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2999, 12, 31)),
    st.sampled_from([None, UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]),
)
region = st.one_of(st.sampled_from(["us-east-1", "eu-west-1", "ap-northeast-1"]),
                   st.from_regex(r"[a-z0-9-]{1,16}", fullmatch=True))
service = st.one_of(st.sampled_from(["bedrock", "bedrock-runtime", "service"]),
                    st.from_regex(r"[a-z0-9-]{1,16}", fullmatch=True))


@settings(max_examples=200, deadline=None)
@given(
    method=st.sampled_from(["POST", "GET", "PUT", "DELETE", "HEAD", "post", "Patch"]),
    scheme=st.sampled_from(["https", "http"]),
    host=authority,
    path=st.one_of(bedrock_path, generic_path),
    query=query,
    fragment=st.sampled_from(["", "#frag", "#a?b"]),
    send_host=st.booleans(),
    headers=st.lists(st.tuples(header_name, header_value), max_size=6),
    body=st.one_of(st.just(b""), st.binary(max_size=2048)),
    credentials=credentials,
    when=instant,
    region=region,
    service=service,
)
def test_sign_is_botocore_byte_for_byte(
    method: str, scheme: str, host: str, path: str, query: str, fragment: str, send_host: bool,
    headers: list[tuple[str, str]], body: bytes, credentials: ReadOnlyCredentials, when: datetime, region: str,
    service: str,
) -> None:
    if not send_host:  # the URL's host is signed then, and host must not come in by chance either
        headers = [(n, v) for n, v in headers if n.lower() != "host"]
    else:
        headers = [("host", host), *headers]
    assert_same_as_botocore(method=method, url=f"{scheme}://{host}{path}{query}{fragment}", body=body,
                            headers=headers, credentials=credentials, region=region, service=service, now=when)


@settings(max_examples=200, deadline=None)
@given(
    path=bedrock_path,
    extra=st.lists(st.tuples(st.sampled_from(["x-amzn-bedrock-guardrailidentifier", "x-amzn-bedrock-trace",
                                              "x-amzn-bedrock-performanceconfig-latency"]), header_value), max_size=3),
    body=st.binary(min_size=0, max_size=4096),
    credentials=credentials,
    when=instant,
)
def test_the_gateways_own_requests(
    path: str, extra: list[tuple[str, str]], body: bytes, credentials: ReadOnlyCredentials, when: datetime
) -> None:
    """What ``gateway._to_bedrock`` passes: host, content-type, the client's Bedrock headers."""
    headers = [("host", HOST), ("content-type", "application/json"), *extra]
    signed = assert_same_as_botocore(method="POST", url=f"https://{HOST}{path}", body=body, headers=headers,
                                     credentials=credentials, region="us-east-1", now=when)
    assert signed["x-amz-date"] == (when.astimezone(UTC) if when.tzinfo else when).strftime("%Y%m%dT%H%M%SZ")
    assert ("x-amz-security-token" in signed) == bool(credentials.token)


@pytest.mark.parametrize("token", [None, "the-token"])
@pytest.mark.parametrize(
    "given",
    [
        [("Date", "Wed, 01 Jan 2020 00:00:00 GMT")],  # re-stamped, and stands in for x-amz-date
        [("Date", "x"), ("X-Amz-Date", "20200101T000000Z")],
        [("X-Amz-Date", "20200101T000000Z"), ("x-amz-date", "again")],  # replaced
        [("Authorization", "AWS4-HMAC-SHA256 old")],  # replaced
        [("X-Amz-Security-Token", "given")],  # replaced with a token; else sent and signed as given
        [("X-Amz-Content-SHA256", "  first "), ("x-amz-content-sha256", "second")],  # the first, raw, is the hash
        [("User-Agent", "sdk"), ("x-amzn-trace-id", "Root=1"), ("Connection", "close")],  # sent, unsigned
    ],
)
def test_headers_with_a_role_in_signing(given: list[tuple[str, str]], token: str | None) -> None:
    assert_same_as_botocore(**INVOKE, headers=[("host", HOST), *given], region="us-east-1",
                            credentials=ReadOnlyCredentials("AKIDEXAMPLE", "secret", token),
                            now=datetime(2025, 1, 1, 8, 30))


def test_host_comes_from_the_url_when_not_given() -> None:
    for url, host in [("https://Example.COM:443/", "example.com"), ("http://example.com:443/", "example.com:443"),
                      ("http://user@[::1]:8080/x", "[::1]:8080"), ("https://h", "h")]:
        signed = assert_same_as_botocore(method="GET", url=url, body=b"", headers=[], region="us-east-1",
                                         credentials=ReadOnlyCredentials("AKIDEXAMPLE", "s", None),
                                         service="service", now=datetime(2025, 1, 1))
        assert "host" not in signed  # signed, not sent: the HTTP client sends it
        assert f"\nhost:{host}\n" in signed.canonical_request


def test_unsigned_headers_are_botocores() -> None:
    assert sigv4.UNSIGNED_HEADERS == frozenset(botocore.auth.SIGNED_HEADERS_BLACKLIST)


def test_repeated_headers_are_sent_as_they_are_signed() -> None:
    signed = assert_same_as_botocore(
        **INVOKE, credentials=ReadOnlyCredentials("AKIDEXAMPLE", "secret", None), region="us-east-1",
        now=datetime(2025, 1, 1),
        headers=[("host", HOST), ("X-Tag", "  a   b "), ("x-tag", "c"), ("Content-Type", "application/json")],
    )
    assert signed["x-tag"] == "a b,c"
    assert signed["content-type"] == "application/json"


def test_the_signing_key_cache_never_serves_another_key() -> None:
    """Days, secrets, regions and services, revisited in turn (more than the cache holds)."""
    days = [datetime(2025, 1, 1, 23, 59, 59), datetime(2025, 1, 2, 0, 0, 0), datetime(2025, 1, 2, 12, 0)]
    secrets = ["secret-one", "secret-two", "secret-two "]
    places = [("us-east-1", "bedrock"), ("eu-west-1", "bedrock"), ("us-east-1", "bedrock-runtime")]
    headers = [("host", HOST), ("content-type", "application/json")]
    seen: set[str] = set()
    for _ in range(2):
        for when in days:
            for secret_key in secrets:
                for region_name, service_name in places:
                    signed = assert_same_as_botocore(
                        **INVOKE, headers=headers, credentials=ReadOnlyCredentials("AKIDEXAMPLE", secret_key, "token"),
                        region=region_name, service=service_name, now=when,
                    )
                    seen.add(signed["authorization"])
    assert len(seen) == len(days) * len(secrets) * len(places)


def test_the_clock_is_read_when_no_time_is_given() -> None:
    with mock.patch("extproc.bedrock.sigv4.time.time", return_value=1440938160.9):  # 2015-08-30T12:36:00.9Z
        signed = sigv4.sign(
            method="POST", url=f"https://{HOST}/model/m/invoke", body=b"{}", headers=[("host", HOST)],
            credentials=ReadOnlyCredentials("AKIDEXAMPLE", "secret", None), region="us-east-1",
        )
    assert signed["x-amz-date"] == "20150830T123600Z"
    assert "/20150830/us-east-1/bedrock/aws4_request," in signed["authorization"]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("token", [None, "the-session-token"])
def test_the_emulators_verifier_accepts_what_we_sign(model: str, token: str | None) -> None:
    """An independent check: the emulator's verifier was written from the spec, apart from this signer."""
    path = f"/model/{quote(model, safe='')}/invoke"
    url = f"http://127.0.0.1:8090{path}"
    body = b'{"anthropic_version":"bedrock-2023-05-31","max_tokens":10,"messages":[]}'
    key = Credential("AKIDEMULATOR00000000", "emulator/secret+key", token)
    signed = sigv4.sign(
        method="POST", url=url, body=body,
        headers=[("host", "127.0.0.1:8090"), ("content-type", "application/json")],
        credentials=ReadOnlyCredentials(key.access_key_id, key.secret_access_key, token), region="us-east-1",
    )
    wire = WireRequest("POST", urlsplit(url).path, list(signed.items()), hashlib.sha256(body).hexdigest())
    assert Verifier([key], "us-east-1").verify(wire, datetime.now(UTC)) == key.access_key_id


@pytest.mark.parametrize("bad_secret", ["bad\udc80secret-do-not-leak", None, ""])
def test_errors_never_quote_the_secret(bad_secret: str | None) -> None:
    with pytest.raises(ValueError) as caught:
        sigv4.sign(
            method="POST", url=f"https://{HOST}/model/m/invoke", body=b"{}", headers=[("host", HOST)],
            credentials=ReadOnlyCredentials("AKIDEXAMPLE", bad_secret, None),  # type: ignore[arg-type]
            region="us-east-1",
        )
    error = caught.value
    assert error.__cause__ is None and error.__context__ is None
    for text in (str(error), repr(error), *map(repr, error.args)):
        assert "do-not-leak" not in text


def test_nothing_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """botocore logs the canonical request (session token included) at DEBUG; we log nothing."""
    with caplog.at_level(logging.DEBUG):
        sigv4.sign(
            method="POST", url=f"https://{HOST}/model/m/invoke", body=b"{}", headers=[("host", HOST)],
            credentials=ReadOnlyCredentials("AKIDEXAMPLE", "secret-do-not-log", "token-do-not-log"),
            region="us-east-1",
        )
    assert caplog.records == []
