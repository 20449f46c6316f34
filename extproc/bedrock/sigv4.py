"""SigV4 for Bedrock Runtime, done by botocore's own signer.

We do not write our own signing: botocore's ``SigV4Auth`` is what every AWS
SDK user relies on, and its canonicalisation (including the second
URI-encoding of the path that non-S3 services expect: ``%3A`` on the wire is
``%253A`` in the canonical request) is exactly what Bedrock verifies.

What *is* ours is the choice of what to sign: only ``host``,
``content-type``, ``x-amz-date`` and, with temporary credentials,
``x-amz-security-token``. Forwarded and hop-by-hop headers are left out
because Envoy may add or change them after we sign.
"""

from __future__ import annotations

from collections.abc import Iterable

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import ReadOnlyCredentials

SERVICE = "bedrock"


def sign(
    *,
    method: str,
    url: str,
    body: bytes,
    headers: Iterable[tuple[str, str]],
    credentials: ReadOnlyCredentials,
    region: str,
    service: str = SERVICE,
) -> dict[str, str]:
    """Sign a request; return the headers to send (the given ones plus auth).

    ``url`` must be exactly what goes on the wire (scheme, host, encoded path,
    query); ``headers`` are the (name, value) pairs to be signed, ``host``
    included; a name may repeat, as HTTP allows.
    """
    pairs = HTTPHeaders()
    for name, value in headers:
        pairs[name] = value  # HTTPHeaders appends: repeated names are kept in order
    request = AWSRequest(method=method, url=url, data=body, headers=pairs)
    SigV4Auth(credentials, service, region).add_auth(request)
    return {name.lower(): value for name, value in request.headers.items()}
