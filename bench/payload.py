"""The one request the benchmark sends, in its two forms.

Set-up (c) receives the Anthropic Messages request and the gateway turns it
into a signed InvokeModel call. Set-ups (a) and (b) have nothing that
translates or signs, so their client sends what the gateway would have sent:
same path, same body bytes, signed the same way (botocore's ``SigV4Auth`` with
the emulator's development credentials, ``host`` and ``content-type`` signed).
That keeps the emulator's work identical in all three; :mod:`bench.__main__`
checks it against what the emulator recorded before measuring anything.

A signature is valid for 15 minutes, so :func:`signed_invoke` is called right
before each run rather than once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import quote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import ReadOnlyCredentials

from devstack import EMULATOR_ACCESS_KEY_ID, EMULATOR_SECRET_ACCESS_KEY

MODEL = "claude-haiku-4-5"
BEDROCK_MODEL_ID = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
"""What the gateway's default catalogue maps :data:`MODEL` to."""
INVOKE_PATH = f"/model/{quote(BEDROCK_MODEL_ID, safe='')}/invoke"
REGION = "us-east-1"
MAX_TOKENS = 64
PROMPT_BYTES = 1024

_NOTES = (
    "Meeting notes, platform team, week 42. The gateway now authenticates every request with an API key "
    "and forwards it to Bedrock signed with the service's own credentials. Latency budgets were discussed: "
    "the proxy must stay well below the model's own time to first token, and its cost should be close to "
    "that of an ext_proc service that does nothing at all. Action items: measure at concurrency one and "
    "sixteen, keep the emulator identical across set-ups, and report medians over interleaved rounds "
    "because the build machines are shared and noisy. "
)


@dataclass(frozen=True)
class HttpRequest:
    """One HTTP request as wrk will send it (``Host`` included when it must differ from the URL's)."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


def prompt(size: int = PROMPT_BYTES) -> str:
    """A deterministic English prompt of ``size`` ASCII characters, with no emulator markers in it."""
    text = "Summarise these notes in one sentence. " + _NOTES * (size // len(_NOTES) + 1)
    return text[:size]


def anthropic_body() -> bytes:
    """The client's Anthropic Messages request body."""
    request = {"model": MODEL, "max_tokens": MAX_TOKENS, "messages": [{"role": "user", "content": prompt()}]}
    return json.dumps(request, separators=(",", ":")).encode()


def invoke_body() -> bytes:
    """The InvokeModel body the gateway makes of :func:`anthropic_body`: no ``model``, Bedrock's version last."""
    body = {k: v for k, v in json.loads(anthropic_body()).items() if k != "model"}
    body["anthropic_version"] = "bedrock-2023-05-31"
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def anthropic_request(api_key: str) -> HttpRequest:
    """Set-up (c): what an Anthropic SDK would send to the gateway."""
    headers = (("Content-Type", "application/json"), ("anthropic-version", "2023-06-01"), ("x-api-key", api_key))
    return HttpRequest("POST", "/v1/messages", headers, anthropic_body())


def signed_invoke(emulator_authority: str) -> HttpRequest:
    """Set-ups (a) and (b): InvokeModel for the emulator at ``emulator_authority``, signed now.

    ``x-gateway-upstream: plain`` picks the same Envoy route (and cluster) the
    gateway picks for an ``http://`` endpoint.
    """
    body = invoke_body()
    to_sign = HTTPHeaders()
    to_sign["host"] = emulator_authority
    to_sign["content-type"] = "application/json"
    signed = AWSRequest(method="POST", url=f"http://{emulator_authority}{INVOKE_PATH}", data=body, headers=to_sign)
    credentials = ReadOnlyCredentials(EMULATOR_ACCESS_KEY_ID, EMULATOR_SECRET_ACCESS_KEY, None)
    SigV4Auth(credentials, "bedrock", REGION).add_auth(signed)
    headers = [("Host" if name.lower() == "host" else name, value) for name, value in signed.headers.items()]
    headers += [("accept", "application/json"), ("x-gateway-upstream", "plain")]
    return HttpRequest("POST", INVOKE_PATH, tuple(headers), body)
