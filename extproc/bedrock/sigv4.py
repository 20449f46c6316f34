"""SigV4 for Bedrock Runtime: our own signer, because it is on every request.

Why not botocore's signer
    Every request the gateway forwards is signed on the ext_proc request path,
    whose whole budget is about 300 µs. botocore's ``SigV4Auth.add_auth`` took
    about 200 µs a request here: its ``AWSRequest`` headers are an
    ``email.message`` (slow to build and to query), and it derives the
    four-HMAC signing key anew for every request (still about 130 µs when fed
    a lean request object). This module signs the gateway's typical request
    (1.1 KB body, two headers, a session token) in about 16 µs: the signing key
    is derived once per secret, day, region and service; the canonical path
    and query once per URL; HMAC-SHA256 runs from that key's precomputed inner and
    outer hash states; the timestamp is formatted once per second.

What botocore still does
    Credentials. ``extproc/bedrock/credentials.py`` resolves and refreshes
    them with botocore's default chain and hands us frozen
    ``ReadOnlyCredentials``.

How we know it is right
    It is written from the SigV4 specification and canonicalises exactly as
    botocore does (the signer every AWS SDK user's Bedrock calls go through):
    dot segments and empty segments removed from the path, which is then
    URI-encoded once more (``%3A`` on the wire is ``%253A`` in the canonical
    request); the query taken as sent, its pairs sorted; header values trimmed
    with inner runs of whitespace collapsed, repeated names joined with ``,``;
    the payload always hashed. Three checks hold it there:

    - ``tests/unit/test_sigv4_suite.py``: every applicable case of AWS's SigV4
      test suite (canonical request, string to sign, signature, Authorization);
    - ``tests/unit/test_sigv4_botocore.py``: property tests that, for generated
      requests, the headers are byte for byte those botocore's ``add_auth``
      gives (botocore is the oracle, in tests only);
    - the Bedrock emulator checks every signature with its own verifier,
      written apart from this one, from the specification (``tests/emulator``,
      ``tests/integration``).

What to sign is the caller's choice: the gateway signs only ``host``,
``content-type``, ``x-amz-date``, the session token and Bedrock API headers;
forwarded and hop-by-hop headers are left out because Envoy may add or change
them after we sign.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import time
from collections.abc import Iterable
from datetime import datetime
from email.utils import formatdate
from functools import lru_cache
from urllib.parse import quote, urlsplit

from botocore.credentials import ReadOnlyCredentials

SERVICE = "bedrock"
ALGORITHM = "AWS4-HMAC-SHA256"

# Never signed, though sent if given: hop-by-hop headers and ones that tracing
# or proxies add or rewrite after signing. The same set botocore leaves out
# (a test holds the two equal), so that we sign what botocore would.
UNSIGNED_HEADERS = frozenset({
    "baggage", "connection", "expect", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "traceparent", "tracestate", "trailer", "transfer-encoding", "upgrade", "user-agent", "x-amzn-trace-id",
})

# Header names with a role in signing (see ``sign``); any other is just signed.
_SIGNING_HEADERS = frozenset({"authorization", "date", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


class SignedHeaders(dict[str, str]):
    """The headers to send, name -> value; also what their signature covers, for tests and debugging."""

    __slots__ = ("canonical_request", "string_to_sign")
    canonical_request: str
    string_to_sign: str


def sign(
    *,
    method: str,
    url: str,
    body: bytes,
    headers: Iterable[tuple[str, str]],
    credentials: ReadOnlyCredentials,
    region: str,
    service: str = SERVICE,
    now: datetime | None = None,
) -> SignedHeaders:
    """Sign a request; return the headers to send (the given ones plus auth), names lowercase.

    ``url`` must be exactly what goes on the wire (scheme, host, encoded path,
    query; never a tab, CR or LF); ``headers`` are the (name, value) pairs to
    be signed, ``host`` included (else it is taken from ``url``); a name may
    repeat, as HTTP allows, and is then returned once, its values joined with
    ``,`` (as signed). Added: ``x-amz-date``, ``x-amz-security-token`` when
    the credentials have a token (it is signed), and ``authorization``. A
    given ``authorization`` or ``x-amz-date`` is replaced; a given ``date`` is
    re-stamped with the signing time and then stands in for ``x-amz-date``, as
    SigV4 allows. ``now`` (naive means UTC) is for tests; the default is the
    system clock.
    """
    second = int(time.time()) if now is None else calendar.timegm(now.utctimetuple())
    amz_date = _amz_date(second)
    token = credentials.token

    sent = SignedHeaders()  # name -> value as given (repeats joined as signed)
    canonical: dict[str, str] = {}  # name -> canonical value
    content_sha256: str | None = None
    restamp_date = False
    for name, value in headers:
        lname = name.lower()
        if lname in _SIGNING_HEADERS:
            if lname == "x-amz-content-sha256":
                if content_sha256 is None:
                    content_sha256 = value  # the caller's payload hash stands for the body's
            elif lname == "date":
                restamp_date = True
                continue
            elif lname != "x-amz-security-token" or token:
                continue  # ours to set
        trimmed = " ".join(value.split())
        previous = canonical.get(lname)
        if previous is None:
            canonical[lname] = trimmed
            sent[lname] = value
        else:
            canonical[lname] = sent[lname] = f"{previous},{trimmed}"
    if restamp_date:
        sent["date"] = canonical["date"] = formatdate(second)
    else:
        sent["x-amz-date"] = canonical["x-amz-date"] = amz_date
    if token:
        sent["x-amz-security-token"] = token
        canonical["x-amz-security-token"] = _trimmed_token(token)
    if "host" not in canonical:
        canonical["host"] = _host_of(url)

    names = sorted([name for name in canonical if name not in UNSIGNED_HEADERS])
    signed_headers = ";".join(names)
    canonical_request = "\n".join((
        method.upper(),
        *_canonical_target(url),
        "".join([f"{name}:{canonical[name]}\n" for name in names]),
        signed_headers,
        content_sha256 if content_sha256 is not None else hashlib.sha256(body).hexdigest(),
    ))
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    string_to_sign = (
        f"{ALGORITHM}\n{amz_date}\n{scope}\n{hashlib.sha256(canonical_request.encode()).hexdigest()}"
    )
    inner, outer = _signing_key(credentials.secret_key, amz_date[:8], region, service)
    digest = inner.copy()
    digest.update(string_to_sign.encode())
    signature = outer.copy()
    signature.update(digest.digest())
    sent["authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key}/{scope}, SignedHeaders={signed_headers}, "
        f"Signature={signature.hexdigest()}"
    )
    sent.canonical_request = canonical_request
    sent.string_to_sign = string_to_sign
    return sent


@lru_cache(maxsize=4)
def _amz_date(second: int) -> str:
    """ISO 8601 basic UTC time (``20150830T123600Z``); cached, as many requests share a second."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))


@lru_cache(maxsize=4)  # a key a day per secret: a few cover rotation and the turn of the day
def _signing_key(secret: str, day: str, region: str, service: str) -> tuple[hashlib._Hash, hashlib._Hash]:
    """The SigV4 signing key, as HMAC-SHA256's inner and outer hash states ready to copy.

    HMAC(K, m) = H((K ^ opad) || H((K ^ ipad) || m)) (RFC 2104): hashing the
    two padded keys once leaves two copies and one update per signature.
    Errors never quote the secret, nor chain an exception that holds it.
    """
    if not isinstance(secret, str) or not secret:
        raise ValueError("the AWS credentials have no secret access key")
    try:
        key = f"AWS4{secret}".encode()
    except UnicodeEncodeError:  # its .object would be the secret: raise outside this block, unchained
        key = b""
    if not key:
        raise ValueError("the AWS secret access key is not valid text")
    for part in (day, region, service, "aws4_request"):
        key = hmac.digest(key, part.encode(), "sha256")
    block = key.ljust(hashlib.sha256().block_size, b"\0")  # a 32-byte key needs no hashing first
    return (
        hashlib.sha256(bytes(b ^ 0x36 for b in block)),
        hashlib.sha256(bytes(b ^ 0x5C for b in block)),
    )


@lru_cache(maxsize=4)  # one token per credentials snapshot
def _trimmed_token(token: str) -> str:
    """The session token's canonical value (a real token has no spaces: this is the token)."""
    return " ".join(token.split())


@lru_cache(maxsize=1024)  # the gateway's URLs are few: one per model and action
def _canonical_target(url: str) -> tuple[str, str]:
    """The canonical path and canonical query of a wire URL."""
    path, query = _path_and_query(url)
    return _canonical_path(path), _canonical_query(query) if query else ""


def _path_and_query(url: str) -> tuple[str, str]:
    """The path and query of an absolute URL, split as ``urlsplit`` would, without its cost."""
    authority = url.find("://")
    if authority < 0:
        raise ValueError("the URL to sign must be absolute (scheme://host/path)")
    end = url.find("#")
    if end < 0:
        end = len(url)
    question = url.find("?", 0, end)
    path_end = end if question < 0 else question
    slash = url.find("/", authority + 3, path_end)
    return (url[slash:path_end] if slash >= 0 else "", url[question + 1:end] if question >= 0 else "")


def _canonical_path(path: str) -> str:
    """The path with empty, ``.`` and ``..`` segments resolved (RFC 3986 §5.2.4), URI-encoded once more."""
    if not path:
        return "/"
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    trailing = "/" if segments and path.endswith("/") else ""
    return quote("/" + "/".join(segments) + trailing, safe="/~")


def _canonical_query(query: str) -> str:
    """The query's pairs sorted by name then value; taken as sent, not re-encoded."""
    pairs = sorted(pair.partition("=")[::2] for pair in query.split("&"))
    return "&".join([f"{name}={value}" for name, value in pairs])


def _host_of(url: str) -> str:
    """The host header a client would send for ``url``: lowercase, default port left out."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        raise ValueError("the URL to sign has no host")
    if ":" in host:
        host = f"[{host}]"  # IPv6
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host
