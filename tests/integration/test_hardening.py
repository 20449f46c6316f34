"""Edge cases found in review: headers that must not leak, inputs that must not be 500s, endings recorded right."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError

from devstack import Stack
from tests.integration.conftest import Emulator, Keys, wait_for_records

HAIKU = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
MESSAGE = {"model": "haiku", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


def test_no_envoy_or_routing_header_reaches_bedrock(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    response = httpx.post(f"{stack.url}/v1/messages", json=MESSAGE, headers={
        "x-api-key": keys.alpha, "x-envoy-secret-token": "SECRET-ENVOY", "x-gateway-upstream": "tls",
        "x-my-company-token": "SECRET-CUSTOM"})
    assert response.status_code == 200
    (seen,) = emulator.requests()
    leaked = [name for name in seen["headers"] if name.startswith(("x-envoy", "x-gateway", "x-my-company"))]
    assert leaked == []
    assert "SECRET" not in json.dumps(seen["headers"])


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/messages", b'{"model":"haiku","max_tokens":5,"messages":[{"role":"user","content":"\\ud800"}]}'),
        ("/v1/messages", b'{"model":"haiku","max_tokens":5,"messages":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        ("/v1/chat/completions", b'{"messages":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        ("/v1/messages", b'{"model":"haiku","max_tokens":5,"system":5,"messages":[{"role":"system","content":"x"}]}'),
        (f"/model/{HAIKU}/invoke", b'{"anthropic_version":"bedrock-2023-05-31","max_tokens":5,"anthropic_beta":[{}],'
                                   b'"messages":[{"role":"user","content":"x"}]}'),
        ("/v1/messages", b'{"model":"haiku","max_tokens":5,"messages":[{"role":"user","content":"x"}],"t":NaN}'),
    ],
    ids=["lone-surrogate", "deep-nesting", "deep-nesting-openai", "system-not-a-list", "beta-not-a-string", "nan"],
)
def test_hostile_json_is_a_400_or_a_clean_answer_never_a_500(
    stack: Stack, emulator: Emulator, keys: Keys, path: str, body: bytes
) -> None:
    response = httpx.post(stack.url + path, content=body, headers={"x-api-key": keys.alpha}, timeout=30)
    assert response.status_code in (200, 400), response.text
    assert "internal gateway error" not in response.text


def test_bedrock_parameter_headers_travel_signed_on_native_routes(
    stack: Stack, emulator: Emulator, keys: Keys
) -> None:
    client = boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=stack.url,
                          aws_access_key_id="AKIDCLIENT0000000000", aws_secret_access_key="client")
    client.meta.events.register("before-send.bedrock-runtime.*",
                                lambda request, **_: request.headers.__setitem__("x-api-key", keys.alpha))
    client.invoke_model(modelId=HAIKU, guardrailIdentifier="gr-123", guardrailVersion="1", trace="ENABLED",
                        body=json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 8,
                                         "messages": [{"role": "user", "content": "guarded"}]}))
    (seen,) = emulator.requests()
    assert seen["signature_valid"] is True
    assert seen["headers"]["x-amzn-bedrock-guardrailidentifier"] == "gr-123"
    assert seen["headers"]["x-amzn-bedrock-trace"] == "ENABLED"
    assert "x-amzn-bedrock-guardrailidentifier" in seen["headers"]["authorization"]  # signed with the rest


def test_a_client_leaving_a_non_streaming_request_is_recorded_as_partial(
    stack: Stack, emulator: Emulator, keys: Keys
) -> None:
    with pytest.raises(httpx.ReadTimeout):
        with httpx.Client(timeout=httpx.Timeout(5, read=0.5)) as client:
            with client.stream("POST", f"{stack.url}/v1/messages", headers={"x-api-key": keys.alpha}, json={
                **MESSAGE, "messages": [{"role": "user", "content": "slow [[emulator:slow=2000]]"}]}) as response:
                response.read()
    mine = wait_for_records(stack, lambda r: r["error"] == "client_disconnected")
    assert mine[-1]["partial"] is True and mine[-1]["consumer"] == "alpha"


def test_unreachable_bedrock_is_an_error_in_each_shape(make_stack: Callable[..., Stack], keys: Keys) -> None:
    stack = make_stack()
    stack.processes.pop("emulator").stop()
    anthropic_answer = httpx.post(f"{stack.url}/v1/messages", json=MESSAGE, headers={"x-api-key": keys.alpha})
    assert anthropic_answer.status_code == 503
    assert "could not get an answer from Bedrock" in anthropic_answer.json()["error"]["message"]
    client = boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=stack.url,
                          aws_access_key_id="AKIDCLIENT0000000000", aws_secret_access_key="client",
                          config=__import__("botocore.config").config.Config(retries={"total_max_attempts": 1}))
    client.meta.events.register("before-send.bedrock-runtime.*",
                                lambda request, **_: request.headers.__setitem__("x-api-key", keys.alpha))
    with pytest.raises(ClientError) as info:
        client.converse(modelId=HAIKU, messages=[{"role": "user", "content": [{"text": "hi"}]}])
    assert info.value.response["Error"]["Code"] == "ServiceUnavailableException"


def test_a_large_body_does_not_starve_other_requests(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    big = {"model": "haiku", "messages": [{"role": "user", "content": "lorem ipsum " * 1_500_000}]}
    failures: list[int] = []

    def send_big() -> None:
        status = httpx.post(f"{stack.url}/v1/chat/completions", json=big, timeout=60,
                            headers={"authorization": f"Bearer {keys.alpha}"}).status_code
        if status != 200:
            failures.append(status)

    threads = [threading.Thread(target=send_big) for _ in range(2)]
    for thread in threads:
        thread.start()
    small = [httpx.post(f"{stack.url}/v1/messages", json=MESSAGE, headers={"x-api-key": keys.alpha}, timeout=30)
             for _ in range(5)]
    health = [httpx.get(f"{stack.url}/health").status_code for _ in range(5)]
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert [r.status_code for r in small] == [200] * 5
    assert health == [200] * 5
