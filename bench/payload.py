"""The requests the benchmark sends, each in its two forms.

A :class:`Workload` is one client request: the API (Anthropic ``/v1/messages``
or OpenAI ``/v1/chat/completions``), streamed or not, and which prompt. Set-up
(c) receives the client's request and the gateway turns it into a signed
Bedrock call (InvokeModel, InvokeModelWithResponseStream, Converse or
ConverseStream). Set-ups (a) and (b) have nothing that translates or signs, so
their client sends what the gateway would have sent: same path, same body
bytes, signed the same way (botocore's ``SigV4Auth`` with the emulator's
development credentials, ``host`` and ``content-type`` signed). That keeps the
emulator's work identical in all three; :mod:`bench.__main__` checks it
against what the emulator recorded before measuring anything.

A signature is valid for 15 minutes, so :meth:`Workload.signed` is called
right before each run rather than once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import ReadOnlyCredentials

from devstack import EMULATOR_ACCESS_KEY_ID, EMULATOR_SECRET_ACCESS_KEY

MODEL = "claude-haiku-4-5"
BEDROCK_MODEL_ID = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
"""What the gateway's default catalogue maps :data:`MODEL` to."""
REGION = "us-east-1"
MAX_TOKENS = 64
PROMPT_BYTES = 1024

MESSAGES = "messages"
"""Anthropic ``/v1/messages`` → InvokeModel (``invoke`` / ``invoke-with-response-stream``)."""
CHAT = "chat"
"""OpenAI ``/v1/chat/completions`` → Converse (``converse`` / ``converse-stream``)."""
APIS = (MESSAGES, CHAT)

_NOTES = (
    "Meeting notes, platform team, week 42. The gateway now authenticates every request with an API key "
    "and forwards it to Bedrock signed with the service's own credentials. Latency budgets were discussed: "
    "the proxy must stay well below the model's own time to first token, and its cost should be close to "
    "that of an ext_proc service that does nothing at all. Action items: measure at concurrency one and "
    "sixteen, keep the emulator identical across set-ups, and report medians over interleaved rounds "
    "because the build machines are shared and noisy. "
)

LONG_ANSWER_WORDS = 1500
"""``[[emulator:words=N]]``: N more words in the answer, streamed three words a delta (about 500 deltas)."""
LONG_ANSWER_MAX_TOKENS = 4096
"""Room for the long answer (about 3,100 tokens at the emulator's four characters a token)."""
PACE_MS = 1
"""``[[emulator:slow=MS]]``: the emulator waits this long between stream frames, so that each frame reaches
Envoy on its own, as a model's tokens do, and becomes its own ext_proc message (sent back to back, many
frames would reach Envoy in one read and share one message)."""
_LONG_MARKERS = f" [[emulator:words={LONG_ANSWER_WORDS}]] [[emulator:slow={PACE_MS}]]"


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


def long_answer_prompt(size: int = PROMPT_BYTES) -> str:
    """A prompt of ``size`` characters that gets a long streamed answer, its frames paced."""
    return prompt(size - len(_LONG_MARKERS)) + _LONG_MARKERS


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Workload:
    """One kind of client request, and the Bedrock call it becomes."""

    api: str
    """:data:`MESSAGES` or :data:`CHAT`."""
    stream: bool = False
    long_answer: bool = False
    """A long answer, its frames paced (:func:`long_answer_prompt`)."""
    prompt_bytes: int = PROMPT_BYTES

    @property
    def name(self) -> str:
        kind = "stream-long" if self.long_answer else "stream" if self.stream else "plain"
        size = "" if self.prompt_bytes == PROMPT_BYTES else f"/{self.prompt_bytes // 1024}KiB"
        return f"{self.api}/{kind}{size}"

    @property
    def prompt(self) -> str:
        return long_answer_prompt(self.prompt_bytes) if self.long_answer else prompt(self.prompt_bytes)

    @property
    def max_tokens(self) -> int:
        return LONG_ANSWER_MAX_TOKENS if self.long_answer else MAX_TOKENS

    # -- what the client of (c) sends ------------------------------------------------

    @property
    def client_path(self) -> str:
        return "/v1/messages" if self.api == MESSAGES else "/v1/chat/completions"

    def client_body(self) -> bytes:
        request: dict[str, Any] = {"model": MODEL, "max_tokens": self.max_tokens,
                                   "messages": [{"role": "user", "content": self.prompt}]}
        if self.stream:
            request["stream"] = True
        return _json(request)

    def gateway_request(self, api_key: str) -> HttpRequest:
        """Set-up (c): what the Anthropic or OpenAI SDK would send to the gateway."""
        if self.api == MESSAGES:
            headers = (("Content-Type", "application/json"), ("anthropic-version", "2023-06-01"),
                       ("x-api-key", api_key))
        else:
            headers = (("Content-Type", "application/json"), ("Authorization", f"Bearer {api_key}"))
        return HttpRequest("POST", self.client_path, headers, self.client_body())

    # -- what the gateway sends to Bedrock ---------------------------------------------

    @property
    def bedrock_path(self) -> str:
        if self.api == MESSAGES:
            operation = "invoke-with-response-stream" if self.stream else "invoke"
        else:
            operation = "converse-stream" if self.stream else "converse"
        return f"/model/{quote(BEDROCK_MODEL_ID, safe='')}/{operation}"

    def bedrock_body(self) -> bytes:
        """The body the gateway makes of :meth:`client_body` (the same for the streaming operation).

        InvokeModel: the Anthropic body without ``model`` and ``stream``, Bedrock's version last.
        Converse: the user message as one text block, ``max_tokens`` as ``inferenceConfig.maxTokens``.
        """
        if self.api == MESSAGES:
            return _json({"max_tokens": self.max_tokens, "messages": [{"role": "user", "content": self.prompt}],
                          "anthropic_version": "bedrock-2023-05-31"})
        return _json({"messages": [{"role": "user", "content": [{"text": self.prompt}]}],
                      "inferenceConfig": {"maxTokens": self.max_tokens}})

    def signed(self, emulator_authority: str) -> HttpRequest:
        """Set-ups (a) and (b): the Bedrock call for the emulator at ``emulator_authority``, signed now.

        ``x-gateway-upstream: plain`` picks the same Envoy route (and cluster) the
        gateway picks for an ``http://`` endpoint.
        """
        body = self.bedrock_body()
        path = self.bedrock_path
        to_sign = HTTPHeaders()
        to_sign["host"] = emulator_authority
        to_sign["content-type"] = "application/json"
        request = AWSRequest(method="POST", url=f"http://{emulator_authority}{path}", data=body, headers=to_sign)
        credentials = ReadOnlyCredentials(EMULATOR_ACCESS_KEY_ID, EMULATOR_SECRET_ACCESS_KEY, None)
        SigV4Auth(credentials, "bedrock", REGION).add_auth(request)
        headers = [("Host" if name.lower() == "host" else name, value) for name, value in request.headers.items()]
        headers += [("accept", "application/json"), ("x-gateway-upstream", "plain")]
        return HttpRequest("POST", path, tuple(headers), body)


PLAIN = {api: Workload(api) for api in APIS}
"""Non-streaming, measured with wrk."""
STREAM = {api: Workload(api, stream=True) for api in APIS}
"""Streaming, the same prompt as :data:`PLAIN`: time to first token."""
STREAM_LONG = {api: Workload(api, stream=True, long_answer=True) for api in APIS}
"""Streaming, a long answer, frames paced: CPU per event."""
GUARDED_PROMPT_BYTES = (PROMPT_BYTES, 32 * 1024)
GUARDED = {size: Workload(MESSAGES, prompt_bytes=size) for size in GUARDED_PROMPT_BYTES}
"""Non-streaming ``/v1/messages``, a 1 KiB and a 32 KiB prompt: the default guardrail policy's added latency
(gateway (c) against the same gateway with guardrails off, (d)); the prompt has nothing a detector finds."""
