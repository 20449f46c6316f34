"""boto3 (bedrock-runtime and bedrock) through the gateway: Bedrock's own API, re-signed and metered."""

from __future__ import annotations

import json

import anthropic
import boto3
import botocore.config
import httpx
import pytest
from botocore.exceptions import ClientError, EventStreamError

from devstack import EMULATOR_ACCESS_KEY_ID, Stack
from tests.integration.conftest import Emulator, Keys, record_of

HAIKU = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
HAIKU_BASE = "anthropic.claude-haiku-4-5-20251001-v1:0"
# boto3 signs with whatever credentials it has; the gateway drops that signature.
CLIENT_CREDENTIALS = {"aws_access_key_id": "AKIDCLIENTSIDE000000", "aws_secret_access_key": "client/side/secret"}


def runtime(stack: Stack, key: str, prefix: str = "") -> object:
    client = boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=stack.url + prefix,
                          config=botocore.config.Config(retries={"total_max_attempts": 1}), **CLIENT_CREDENTIALS)

    def add_key(request, **_: object) -> None:  # type: ignore[no-untyped-def]
        request.headers["x-api-key"] = key

    client.meta.events.register("before-send.bedrock-runtime.*", add_key)
    return client


def record_for(stack: Stack, answer: dict) -> dict:
    """The request record of a boto3 answer, found by the x-request-id the gateway returns."""
    return record_of(stack, answer["ResponseMetadata"]["HTTPHeaders"]["x-request-id"])


def signed_by_gateway(emulator: Emulator) -> dict:
    (seen,) = emulator.requests()
    assert seen["signature_valid"] is True
    assert seen["access_key_id"] == EMULATOR_ACCESS_KEY_ID  # the gateway's credentials, not the client's
    assert "x-api-key" not in seen["headers"]
    return seen


INVOKE_BODY = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64,
               "messages": [{"role": "user", "content": "Hello from boto3"}]}


@pytest.mark.parametrize("prefix", ["", "/bedrock"])
def test_invoke_model(stack: Stack, emulator: Emulator, keys: Keys, prefix: str) -> None:
    answer = runtime(stack, keys.alpha, prefix).invoke_model(modelId=HAIKU, body=json.dumps(INVOKE_BODY))
    message = json.loads(answer["body"].read())
    assert "Hello from boto3" in message["content"][0]["text"]
    seen = signed_by_gateway(emulator)
    assert seen["path"] == "/model/us.anthropic.claude-haiku-4-5-20251001-v1%3A0/invoke"
    record = record_for(stack, answer)
    assert record["route"] == "bedrock_invoke"
    assert record["tokens"]["input"] == message["usage"]["input_tokens"]
    assert record["tokens"]["output"] == message["usage"]["output_tokens"]


def test_invoke_model_with_response_stream_is_relayed_byte_for_byte(
    stack: Stack, emulator: Emulator, keys: Keys
) -> None:
    answer = runtime(stack, keys.alpha).invoke_model_with_response_stream(
        modelId=HAIKU, body=json.dumps(INVOKE_BODY | {"messages": [{"role": "user", "content": "stream [[emulator:cache=300,40]]"}]}))
    events = [json.loads(e["chunk"]["bytes"]) for e in answer["body"]]
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
    metrics = events[-1]["amazon-bedrock-invocationMetrics"]  # untouched on the native route
    seen = signed_by_gateway(emulator)
    assert seen["path"].endswith("/invoke-with-response-stream")
    record = record_for(stack, answer)
    assert record["route"] == "bedrock_invoke_with_response_stream"
    assert record["tokens"] == {"input": metrics["inputTokenCount"], "output": metrics["outputTokenCount"],
                                "cache_read": 300, "cache_write": 40}
    assert record["partial"] is False

    with httpx.stream("POST", f"{stack.url}/model/{HAIKU}/invoke-with-response-stream",
                      headers={"x-api-key": keys.alpha}, json=INVOKE_BODY) as response:
        assert response.headers["content-type"] == "application/vnd.amazon.eventstream"


def test_converse_and_converse_stream(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    client = runtime(stack, keys.alpha, "/bedrock")
    messages = [{"role": "user", "content": [{"text": "Converse through the gateway"}]}]
    answer = client.converse(modelId="us.amazon.nova-lite-v1:0", messages=messages)
    assert "Converse through the gateway" in answer["output"]["message"]["content"][0]["text"]
    assert record_for(stack, answer)["tokens"]["output"] == answer["usage"]["outputTokens"]
    emulator.clear()
    stream = client.converse_stream(modelId=HAIKU, messages=messages)
    events = list(stream["stream"])
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert "Converse through the gateway" in text
    usage = next(e["metadata"]["usage"] for e in events if "metadata" in e)
    record = record_for(stack, stream)
    assert (record["tokens"]["input"], record["tokens"]["output"]) == (usage["inputTokens"], usage["outputTokens"])
    signed_by_gateway(emulator)


def test_count_tokens_maps_a_profile_to_its_base_model(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    answer = runtime(stack, keys.alpha).count_tokens(
        modelId=HAIKU, input={"invokeModel": {"body": json.dumps(INVOKE_BODY).encode()}})
    assert answer["inputTokens"] > 0
    seen = signed_by_gateway(emulator)
    assert seen["path"] == f"/model/{HAIKU_BASE.replace(':', '%3A')}/count-tokens"
    record = record_for(stack, answer)
    assert record["route"] == "bedrock_count_tokens"
    assert record["tokens"]["input"] == 0, "counting consumes no tokens"


def test_both_path_encodings_are_accepted(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    for model_path in (HAIKU, HAIKU.replace(":", "%3A")):
        response = httpx.post(f"{stack.url}/bedrock/model/{model_path}/invoke", headers={
            "authorization": f"Bearer {keys.alpha}"}, json=INVOKE_BODY)
        assert response.status_code == 200, response.text
    assert [r["path"] for r in emulator.requests()] == [
        "/model/us.anthropic.claude-haiku-4-5-20251001-v1%3A0/invoke"] * 2


def test_client_sigv4_is_dropped_and_the_key_is_required(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    with pytest.raises(ClientError) as info:
        runtime(stack, "gwk_wrong").invoke_model(modelId=HAIKU, body=json.dumps(INVOKE_BODY))
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 401
    client = boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=stack.url, **CLIENT_CREDENTIALS)
    with pytest.raises(ClientError) as info:  # SigV4 alone is not a gateway key
        client.invoke_model(modelId=HAIKU, body=json.dumps(INVOKE_BODY))
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 401
    assert emulator.requests() == []


def test_model_access_rules_apply_to_the_model_in_the_path(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    with pytest.raises(ClientError) as info:
        runtime(stack, keys.haiku_only).invoke_model(
            modelId="us.anthropic.claude-opus-4-5-20251101-v1:0", body=json.dumps(INVOKE_BODY))
    assert info.value.response["Error"]["Code"] == "AccessDeniedException"
    with pytest.raises(ClientError) as info:
        runtime(stack, keys.alpha).invoke_model(modelId="meta.llama9-v1:0", body=json.dumps(INVOKE_BODY))
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert emulator.requests() == []
    runtime(stack, keys.haiku_only).invoke_model(modelId=HAIKU, body=json.dumps(INVOKE_BODY))


def test_bedrock_errors_reach_boto3_as_bedrock_sent_them(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    client = runtime(stack, keys.alpha)
    body = INVOKE_BODY | {"messages": [{"role": "user", "content": "x [[emulator:error=ThrottlingException]]"}]}
    with pytest.raises(ClientError) as info:
        client.invoke_model(modelId=HAIKU, body=json.dumps(body))
    assert info.value.response["Error"]["Code"] == "ThrottlingException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    body = INVOKE_BODY | {"messages": [{"role": "user", "content": "x [[emulator:stream-exception=ThrottlingException]]"}]}
    with pytest.raises(EventStreamError) as stream_info:
        for _ in client.invoke_model_with_response_stream(modelId=HAIKU, body=json.dumps(body))["body"]:
            pass
    assert stream_info.value.response["Error"]["Code"] == "throttlingException"


def test_claude_code_quirks_on_the_bedrock_route(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    body = INVOKE_BODY | {
        "anthropic_beta": ["claude-code-20250219", "interleaved-thinking-2025-05-14"],
        "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
                   {"type": "text", "text": "Second block."}],
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                     {"role": "system", "content": "Mid-conversation instruction."},
                     {"role": "user", "content": "go on"}],
    }
    headers = {"authorization": f"Bearer {keys.alpha}", "x-claude-code-session-id": "session-1234"}
    response = httpx.post(f"{stack.url}/bedrock/model/{HAIKU}/invoke", json=body, headers=headers)
    assert response.status_code == 200, response.text
    sent = json.loads(signed_by_gateway(emulator)["body"])
    assert sent["anthropic_beta"] == ["interleaved-thinking-2025-05-14"]
    assert "context_management" not in sent
    assert [b["text"] for b in sent["system"]] == ["You are Claude Code.", "Second block.",
                                                  "Mid-conversation instruction."]
    assert sent["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    record = record_of(stack, response.headers["x-request-id"])
    assert record["session_id"] == "session-1234"
    assert record["dropped_betas"] == ["claude-code-20250219"]
    assert record["dropped_fields"] == ["context_management"]

    emulator.clear()
    large = body | {"messages": [{"role": "user", "content": "x" * 150_000}]}
    response = httpx.post(f"{stack.url}/bedrock/model/{HAIKU}/invoke", json=large, headers=headers)
    assert response.status_code == 200, response.text
    assert signed_by_gateway(emulator)["body_size"] > 150_000


def test_inference_profiles_from_the_catalogue(stack: Stack, keys: Keys) -> None:
    control = boto3.client("bedrock", region_name="us-east-1", endpoint_url=f"{stack.url}/bedrock",
                           **CLIENT_CREDENTIALS)
    control.meta.events.register("before-send.bedrock.*",
                                 lambda request, **_: request.headers.__setitem__("x-api-key", keys.haiku_only))
    listed = control.list_inference_profiles(typeEquals="SYSTEM_DEFINED")["inferenceProfileSummaries"]
    assert [p["inferenceProfileId"] for p in listed] == [HAIKU]
    profile = control.get_inference_profile(inferenceProfileIdentifier=HAIKU)
    assert profile["status"] == "ACTIVE" and profile["models"][0]["modelArn"].endswith(HAIKU_BASE)
    with pytest.raises(ClientError) as info:
        control.get_inference_profile(inferenceProfileIdentifier="us.anthropic.claude-opus-4-5-20251101-v1:0")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_anthropic_count_tokens_and_hello(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    counted = anthropic.Anthropic(base_url=stack.url, auth_token=keys.alpha).messages.count_tokens(
        model="claude-haiku-4-5", messages=[{"role": "user", "content": "How many tokens is this?"}])
    assert counted.input_tokens > 0
    (seen,) = emulator.requests()
    assert seen["path"] == f"/model/{HAIKU_BASE.replace(':', '%3A')}/count-tokens"
    assert httpx.head(f"{stack.url}/api/hello").status_code == 200
    response = httpx.post(f"{stack.url}/v1/messages?beta=true", headers={"x-api-key": keys.alpha}, json={
        "model": "haiku", "max_tokens": 10, "messages": [{"role": "user", "content": "beta query ignored"}]})
    assert response.status_code == 200


def test_beta_flags_allowlist_by_default_and_pass_through_when_configured(
    stack: Stack, emulator: Emulator, keys: Keys, make_stack
) -> None:
    def ask(target: Stack) -> httpx.Response:
        return httpx.post(f"{target.url}/v1/messages", json={
            "model": "haiku", "max_tokens": 10, "messages": [{"role": "user", "content": "betas"}]}, headers={
            "x-api-key": keys.alpha, "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14"})

    assert ask(stack).status_code == 200  # the flag Bedrock refuses was dropped
    assert json.loads(emulator.requests()[0]["body"])["anthropic_beta"] == ["interleaved-thinking-2025-05-14"]

    passthrough = make_stack(config={"anthropic": {"beta_allowlist": None}})
    refused = ask(passthrough)
    assert refused.status_code == 400  # what Bedrock says to a flag it does not know, in Anthropic's shape
    assert "invalid beta flag" in refused.json()["error"]["message"]
