"""An AWS Signature Version 4 verifier, written from the specification.

The gateway signs with its own signer (extproc/bedrock/sigv4.py, held to
botocore's output by tests); this verifier deliberately shares no code with
it, so a request the emulator accepts has been checked by a second,
independent reading of the spec (and against AWS's published test vectors, see
the tests). It rebuilds the canonical request from what actually arrived on
the wire:

- the path exactly as received, normalised (dot segments and empty segments
  removed) and URI-encoded once more, as every service but S3 does: ``%3A``
  on the wire is ``%253A`` in the canonical path, a raw ``:`` is ``%3A``;
- the query parameters decoded, strictly re-encoded and sorted;
- the signed headers' values, trimmed with inner runs of spaces collapsed,
  repeated headers joined with ``,``;
- the SHA-256 of the body as received.

Rejections use AWS's error codes and wording, all with status 403.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

from .credentials import Credential

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = timedelta(minutes=15)
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"


class SignatureError(Exception):
    """A rejected request: ``code`` is the AWS error name, ``message`` its text."""

    def __init__(self, code: str, message: str, access_key_id: str | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.access_key_id = access_key_id


@dataclass(frozen=True)
class Authorization:
    access_key_id: str
    date: str
    region: str
    service: str
    terminator: str
    signed_headers: tuple[str, ...]
    signature: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{self.terminator}"


@dataclass(frozen=True)
class WireRequest:
    """A request as it arrived: the raw target (path and query) and raw headers."""

    method: str
    target: str
    headers: Sequence[tuple[str, str]]
    body_sha256: str

    def header_values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name]


def uri_encode(text: str, keep_slash: bool = False) -> str:
    out = []
    for byte in text.encode("utf-8", "surrogateescape"):
        if byte in _UNRESERVED or (keep_slash and byte == 0x2F):
            out.append(chr(byte))
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def canonical_uri(path: str) -> str:
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    trailing = "/" if path.endswith("/") and segments else ""
    return uri_encode("/" + "/".join(segments) + trailing, keep_slash=True)


def canonical_query(query: str) -> str:
    pairs = []
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append((uri_encode(unquote(name)), uri_encode(unquote(value))))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def canonical_headers(request: WireRequest, signed_headers: Iterable[str]) -> str:
    lines = []
    for name in signed_headers:
        values = (" ".join(value.split()) for value in request.header_values(name))
        lines.append(f"{name}:{','.join(values)}\n")
    return "".join(lines)


def canonical_request(request: WireRequest, signed_headers: Sequence[str]) -> str:
    path, _, query = request.target.partition("?")
    return "\n".join(
        [
            request.method.upper(),
            canonical_uri(path),
            canonical_query(query),
            canonical_headers(request, signed_headers),
            ";".join(signed_headers),
            request.body_sha256,
        ]
    )


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode("utf-8")
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def signature(secret: str, auth: Authorization, amz_date: str, canonical: str) -> str:
    key = signing_key(secret, auth.date, auth.region, auth.service)
    return hmac.new(key, string_to_sign(amz_date, auth.scope, canonical).encode("utf-8"), hashlib.sha256).hexdigest()


def parse_authorization(value: str) -> Authorization:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise SignatureError("IncompleteSignatureException", f"Unsupported AWS 'algorithm': '{algorithm}'.")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, _, field = part.strip().partition("=")
        fields[name] = field
    missing = [name for name in ("Credential", "Signature", "SignedHeaders") if not fields.get(name)]
    if missing:
        raise SignatureError(
            "IncompleteSignatureException",
            " ".join(f"Authorization header requires '{name}' parameter." for name in missing),
        )
    credential = fields["Credential"].split("/")
    if len(credential) != 5:
        raise SignatureError(
            "IncompleteSignatureException",
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term,"
            f" got '{fields['Credential']}'",
        )
    key_id, date, region, service, terminator = credential
    signed_headers = tuple(fields["SignedHeaders"].split(";"))
    return Authorization(key_id, date, region, service, terminator, signed_headers, fields["Signature"])


class Verifier:
    def __init__(self, credentials: Iterable[Credential], region: str, service: str = "bedrock"):
        self._by_key = {credential.access_key_id: credential for credential in credentials}
        self.region = region
        self.service = service

    def verify(self, request: WireRequest, now: datetime) -> str:
        """The access key ID of a correctly signed request; :class:`SignatureError` otherwise."""
        headers = request.header_values("authorization")
        if not headers:
            raise SignatureError("MissingAuthenticationTokenException", "Missing Authentication Token")
        auth = parse_authorization(headers[0])
        key_id = auth.access_key_id

        def reject(code: str, message: str) -> SignatureError:
            return SignatureError(code, message, key_id)

        amz_date = next(iter(request.header_values("x-amz-date")), "").strip()
        if not amz_date:
            raise reject(
                "IncompleteSignatureException",
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
            )
        try:
            signed_at = datetime.strptime(amz_date, _AMZ_DATE_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            raise reject(
                "IncompleteSignatureException",
                f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'. See http://en.wikipedia.org/wiki/ISO_8601",
            ) from None
        for required, label in (("host", "Host"), ("x-amz-date", "X-Amz-Date")):
            if required not in auth.signed_headers:
                raise reject(
                    "InvalidSignatureException", f"'{label}' must be a 'SignedHeader' in the AWS Authorization."
                )
        if auth.date != amz_date[:8]:
            raise reject(
                "InvalidSignatureException",
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
                f"'{auth.date}' != '{amz_date[:8]}', from '{amz_date}'.",
            )
        if auth.region != self.region:
            raise reject(
                "InvalidSignatureException", f"Credential should be scoped to a valid region, not '{auth.region}'."
            )
        if auth.service != self.service:
            raise reject(
                "InvalidSignatureException", f"Credential should be scoped to correct service: '{self.service}'."
            )
        if auth.terminator != "aws4_request":
            raise reject(
                "InvalidSignatureException",
                f"Credential should be scoped with a valid terminator: 'aws4_request', not '{auth.terminator}'.",
            )

        credential = self._by_key.get(key_id)
        tokens = request.header_values("x-amz-security-token")
        if credential is None or (credential.session_token or None) != (tokens[0].strip() if tokens else None):
            raise reject("UnrecognizedClientException", "The security token included in the request is invalid.")
        if credential.session_token and "x-amz-security-token" not in auth.signed_headers:
            raise reject(
                "InvalidSignatureException", "'X-Amz-Security-Token' must be a 'SignedHeader' in the AWS Authorization."
            )

        now_text = now.strftime(_AMZ_DATE_FORMAT)
        if signed_at < now - MAX_SKEW:
            earliest = (now - MAX_SKEW).strftime(_AMZ_DATE_FORMAT)
            raise reject(
                "InvalidSignatureException",
                f"Signature expired: {amz_date} is now earlier than {earliest} ({now_text} - 15 min.)",
            )
        if signed_at > now + MAX_SKEW:
            latest = (now + MAX_SKEW).strftime(_AMZ_DATE_FORMAT)
            raise reject(
                "InvalidSignatureException",
                f"Signature not yet current: {amz_date} is still later than {latest} ({now_text} + 15 min.)",
            )

        declared = request.header_values("x-amz-content-sha256")
        if "x-amz-content-sha256" in auth.signed_headers and declared and declared[0].strip() != request.body_sha256:
            raise reject(
                "InvalidSignatureException",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            )

        expected = signature(
            credential.secret_access_key, auth, amz_date, canonical_request(request, auth.signed_headers)
        )
        if not hmac.compare_digest(expected.encode("ascii"), auth.signature.encode("ascii", "replace")):
            raise reject(
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. Check your AWS "
                "Secret Access Key and signing method. Consult the service documentation for details.",
            )
        return key_id
