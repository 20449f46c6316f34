"""The gateway's phase decisions, without Envoy: what is forwarded, removed, signed, refused."""

from __future__ import annotations

import asyncio
import json
import os

import botocore.session
import pytest

from extproc.bedrock.credentials import CredentialSource
from extproc.config import load_settings, parse_config
from extproc.gateway import Forward, Gateway, Reply, RequestState
from extproc.keys import KeyRing, hash_key

KEY = "gwk_unit_test_key_0123456789abcdef"
HAIKU_KEY = "gwk_unit_test_key_haiku_only_000000"


@pytest.fixture
def gateway() -> Gateway:
    settings = load_settings({"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": "http://127.0.0.1:8090", "AWS_REGION": "us-west-2"})
    config = parse_config(
        "policies:\n  default: {}\n  haiku-only: {models: [haiku]}\n"
        f"consumers:\n  team:\n    key_sha256: {hash_key(KEY)}\n"
        f"  small:\n    policy: haiku-only\n    key_sha256: {hash_key(HAIKU_KEY)}\n"
    )
    settings = settings.model_copy(update={"config": config})
    session = botocore.session.Session()
    session.set_credentials("AKIDUNITTEST0000", "unit/secret", "unit-session-token")
    credentials = CredentialSource(session=session)
    asyncio.run(credentials.refresh())
    return Gateway(settings, KeyRing.build(config, None), credentials)


def _headers(**extra: str) -> dict[str, str]:
    return {":method": "POST", ":path": "/v1/messages", ":authority": "gw", "content-type": "application/json",
            "x-request-id": "rid-1", **extra}


BODY = json.dumps({"model": "claude-haiku-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]})


def test_missing_and_wrong_key_are_401_in_anthropic_shape(gateway: Gateway) -> None:
    for headers in (_headers(), _headers(**{"x-api-key": "wrong"}), _headers(authorization="Basic abc")):
        result = gateway.request_headers(RequestState(), headers, end_of_stream=False)
        assert isinstance(result, Reply)
        assert result.status == 401
        assert json.loads(result.body)["error"]["type"] == "authentication_error"


def test_bearer_and_x_api_key_both_authenticate(gateway: Gateway) -> None:
    for headers in (_headers(**{"x-api-key": KEY}), _headers(authorization=f"Bearer {KEY}")):
        state = RequestState()
        assert isinstance(gateway.request_headers(state, headers, end_of_stream=False), Forward)
        assert state.consumer == "team"


def test_forwarded_request_is_signed_and_carries_no_client_credential(gateway: Gateway) -> None:
    state = RequestState()
    headers = _headers(**{
        "x-api-key": KEY, "authorization": "AWS4-HMAC-SHA256 Credential=CLIENT", "x-amz-security-token": "client",
        "x-amz-date": "20200101T000000Z", "cookie": "session=1", "anthropic-beta": "context-1m-2025-08-07", "x-custom-token": "t",
        "user-agent": "sdk/1",
    })
    gateway.request_headers(state, headers, end_of_stream=False)
    result = gateway.request_body(state, BODY.encode())
    assert isinstance(result, Forward)
    set_headers = dict(result.set_headers)
    assert set_headers[":path"] == "/model/us.anthropic.claude-haiku-4-5-20251001-v1%3A0/invoke"
    assert set_headers[":authority"] == "127.0.0.1:8090"
    assert set_headers["x-gateway-upstream"] == "plain"
    assert set_headers["content-length"] == str(len(result.body or b""))
    assert set_headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDUNITTEST0000/")
    assert "/us-west-2/bedrock/aws4_request" in set_headers["authorization"]
    assert "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token," in set_headers["authorization"]
    assert set_headers["x-amz-security-token"] == "unit-session-token"
    assert result.clear_route_cache
    removed = set(result.remove_headers)
    assert {"x-api-key", "cookie", "anthropic-beta", "x-custom-token"} <= removed
    assert "user-agent" not in removed
    # Replaced headers are overwritten, never left with the client's value.
    for name in ("authorization", "x-amz-security-token", "x-amz-date"):
        assert name in set_headers
    body = json.loads(result.body or b"")
    assert body["anthropic_beta"] == ["context-1m-2025-08-07"]
    assert "model" not in body


def test_unknown_model_is_404_and_forbidden_model_403(gateway: Gateway) -> None:
    state = RequestState()
    gateway.request_headers(state, _headers(**{"x-api-key": KEY}), end_of_stream=False)
    result = gateway.request_body(state, BODY.replace("claude-haiku-4-5", "gpt-4o").encode())
    assert isinstance(result, Reply) and result.status == 404
    assert "gpt-4o" in json.loads(result.body)["error"]["message"]

    state = RequestState()
    gateway.request_headers(state, _headers(**{"x-api-key": HAIKU_KEY}), end_of_stream=False)
    result = gateway.request_body(state, BODY.replace("claude-haiku-4-5", "opus").encode())
    assert isinstance(result, Reply) and result.status == 403
    assert json.loads(result.body)["error"]["type"] == "permission_error"
    state = RequestState()
    gateway.request_headers(state, _headers(**{"x-api-key": HAIKU_KEY}), end_of_stream=False)
    assert isinstance(gateway.request_body(state, BODY.encode()), Forward)


def test_upstream_error_becomes_client_shape_and_success_passes_untouched(gateway: Gateway) -> None:
    state = RequestState()
    gateway.request_headers(state, _headers(**{"x-api-key": KEY}), end_of_stream=False)
    gateway.request_body(state, BODY.encode())
    gateway.response_headers(state, {":status": "429", "x-amzn-errortype": "ThrottlingException"}, False)
    result = gateway.response_body(state, b'{"message":"Too many requests"}')
    assert isinstance(result, Reply) and result.status == 429
    assert json.loads(result.body)["error"]["type"] == "rate_limit_error"

    state = RequestState()
    gateway.request_headers(state, _headers(**{"x-api-key": KEY}), end_of_stream=False)
    gateway.request_body(state, BODY.encode())
    gateway.response_headers(state, {":status": "200", "content-type": "application/json"}, False)
    result = gateway.response_body(state, b'{"type":"message","usage":{"input_tokens":3,"output_tokens":2}}')
    assert isinstance(result, Forward) and result.body is None
    assert state.usage.input == 3 and state.usage.output == 2


def test_envoy_local_replies_pass_through(gateway: Gateway) -> None:
    state = RequestState()
    gateway.request_headers(state, _headers(**{"x-api-key": KEY}), end_of_stream=False)
    assert gateway.response_headers(state, {":status": "413"}, False) == Forward()
    assert gateway.response_body(state, b'{"error": "too large"}') == Forward()


def test_a_translation_that_outgrows_the_upstream_limit_is_a_clear_413(gateway: Gateway) -> None:
    state = RequestState()
    gateway.request_headers(state, _headers(**{"x-api-key": KEY, ":path": "/v1/messages/count_tokens"}), False)
    text = "x" * (25 * 1024 * 1024)  # base64 in CountTokens makes this ~33 MiB
    result = gateway.request_body(state, json.dumps({"model": "haiku", "messages": [
        {"role": "user", "content": text}]}).encode())
    assert isinstance(result, Reply) and result.status == 413
    assert "32 MiB" in json.loads(result.body)["error"]["message"]


def test_a_repeated_request_id_does_not_share_a_concurrency_lease() -> None:
    """Behind a proxy that keeps the client's x-request-id, a client could send one id on every request;
    leases belong to the gateway's own id for each request, so the limit still holds."""
    settings = load_settings({"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": "http://127.0.0.1:8090"})
    config = parse_config("usage_records: {stdout: false}\npolicies:\n  default: {limits: {concurrent_requests: 2}}\n"
                          f"consumers:\n  team:\n    key_sha256: {hash_key(KEY)}\n")
    gateway = Gateway(settings.model_copy(update={"config": config}), KeyRing.build(config, None),
                      CredentialSource(session=botocore.session.Session()))

    async def three_at_once() -> list[object]:
        results = []
        for _ in range(3):
            state = RequestState()
            assert isinstance(gateway.request_headers(state, _headers(**{"x-api-key": KEY}), False), Forward)
            results.append(await gateway.admit(state))
        return results

    first, second, third = asyncio.run(three_at_once())  # all with x-request-id rid-1
    assert first is None and second is None
    assert isinstance(third, Reply) and third.status == 429


def test_a_policy_guardrail_replaces_one_the_client_names_on_a_native_route() -> None:
    """boto3's guardrailIdentifier travels as x-amzn-bedrock-* headers: with a policy that attaches its own
    Bedrock guardrail, the client's is dropped and the policy's is sent once, signed as sent."""
    settings = load_settings({"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": "http://127.0.0.1:8090", "AWS_REGION": "us-east-1"})
    config = parse_config(
        "guardrail_policies:\n  guarded:\n    bedrock_guardrail: {identifier: gr-policy, version: '3'}\n"
        "policies:\n  default: {guardrails: guarded}\n"
        f"consumers:\n  team:\n    key_sha256: {hash_key(KEY)}\n"
    )
    session = botocore.session.Session()
    session.set_credentials("AKIDUNITTEST0000", "unit/secret")
    credentials = CredentialSource(session=session)
    asyncio.run(credentials.refresh())
    gateway = Gateway(settings.model_copy(update={"config": config}), KeyRing.build(config, None), credentials)
    state = RequestState()
    headers = {":method": "POST", ":path": "/model/us.anthropic.claude-haiku-4-5-20251001-v1%3A0/invoke",
               ":authority": "gw", "content-type": "application/json", "x-api-key": KEY,
               "x-amzn-bedrock-guardrailidentifier": "gr-client", "x-amzn-bedrock-guardrailversion": "DRAFT",
               "x-amzn-bedrock-trace": "ENABLED"}
    assert isinstance(gateway.request_headers(state, headers, end_of_stream=False), Forward)
    body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 8,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    result = gateway.request_body(state, body)
    assert isinstance(result, Forward)
    sent = [(name, value) for name, value in result.set_headers if name.startswith("x-amzn-bedrock-")]
    assert sorted(sent) == [("x-amzn-bedrock-guardrailidentifier", "gr-policy"),
                            ("x-amzn-bedrock-guardrailversion", "3"), ("x-amzn-bedrock-trace", "ENABLED")]


def test_a_reload_mid_request_keeps_the_request_on_the_guardrail_policy_it_started_with(gateway: Gateway) -> None:
    """The reload renames the guardrail policy: the request in flight keeps its own, its answer and record too."""
    config = parse_config(
        "guardrail_policies:\n  strict: {detectors: {card: block}}\n"
        "policies:\n  default: {guardrails: strict}\n"
        f"consumers:\n  team:\n    key_sha256: {hash_key(KEY)}\n"
    )
    gateway._apply(gateway.settings.model_copy(update={"config": config}), KeyRing.build(config, None))
    state = RequestState()
    assert isinstance(gateway.request_headers(state, _headers(**{"x-api-key": KEY}), end_of_stream=False), Forward)
    renamed = parse_config(
        "guardrail_policies:\n  renamed: {detectors: {card: block}}\n"
        "policies:\n  default: {guardrails: renamed}\n"
        f"consumers:\n  team:\n    key_sha256: {hash_key(KEY)}\n"
    )
    gateway._apply(gateway.settings.model_copy(update={"config": renamed}), KeyRing.build(renamed, None))
    card = json.dumps({"model": "claude-haiku-4-5", "max_tokens": 16,
                       "messages": [{"role": "user", "content": "card 4692 7925 1656 5972"}]}).encode()
    refused = gateway.request_body(state, card)
    assert isinstance(refused, Reply) and refused.status == 400 and b"guardrail_card" in refused.body
    gateway.finish(state)  # metered and recorded against the policy it started with, without an error
    assert state.finished


def test_limit_ids_are_unique_and_a_forked_child_draws_its_own_prefix() -> None:
    first, second = RequestState().limit_id, RequestState().limit_id
    assert first != second and first[:20] == second[:20]
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: report one id and leave at once
        os.write(write, RequestState().limit_id.encode())
        os._exit(0)
    os.waitpid(child, 0)
    in_child = os.read(read, 100).decode()
    os.close(read)
    os.close(write)
    assert in_child[:20] != first[:20]
