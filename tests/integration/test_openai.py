"""The official OpenAI SDK through real Envoy → Bedrock Converse (emulated)."""

from __future__ import annotations

import base64
import json

import httpx
import openai
import pytest

from devstack import Stack
from tests.integration.conftest import Emulator, Keys, record_of

HAIKU = "us.anthropic.claude-haiku-4-5-20251001-v1%3A0"
# A 1×1 transparent PNG.
PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)).decode()


def client(stack: Stack, key: str, **kwargs: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=0, **kwargs)  # type: ignore[arg-type]


def only_request(emulator: Emulator) -> dict:
    (seen,) = emulator.requests()
    assert seen["signature_valid"] is True
    assert "x-api-key" not in seen["headers"]
    assert seen["headers"]["authorization"].startswith("AWS4-HMAC-SHA256 ")
    return seen


def test_plain_chat(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    raw = client(stack, keys.alpha).chat.completions.with_raw_response.create(
        model="haiku", user="shopper-42", messages=[{"role": "user", "content": "Hello from OpenAI"}])
    completion = raw.parse()
    assert record_of(stack, raw.headers["x-request-id"])["end_user"] == "shopper-42"  # kept for logs only
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert "Hello from OpenAI" in (completion.choices[0].message.content or "")
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.prompt_tokens > 0
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    seen = only_request(emulator)
    assert seen["path"] == f"/model/{HAIKU}/converse"
    assert keys.alpha not in json.dumps(seen) and "shopper-42" not in json.dumps(seen)


def test_system_developer_and_multi_turn(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    client(stack, keys.alpha).chat.completions.create(model="claude-haiku-4-5", messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": "First answer"},
        {"role": "developer", "content": "Now answer in French."},
        {"role": "user", "content": "Second question"},
    ], max_tokens=50, temperature=0.5, top_p=0.9, stop=["END"])
    body = json.loads(only_request(emulator)["body"])
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert {"text": "Be brief."} in body["system"] and {"text": "Now answer in French."} in body["system"]
    assert body["inferenceConfig"] == {"maxTokens": 50, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]}


def test_tool_call_round_trip(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    c = client(stack, keys.alpha)
    first = c.chat.completions.create(model="haiku", tools=tools, tool_choice="auto", messages=[
        {"role": "user", "content": "Weather in Paris? [[emulator:tool]]"}])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments), dict)
    emulator.clear()

    second = c.chat.completions.create(model="haiku", tools=tools, messages=[
        {"role": "user", "content": "Weather in Paris?"},
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18°C and cloudy"},
    ])
    assert second.choices[0].finish_reason == "stop"
    body = json.loads(only_request(emulator)["body"])
    tool_use = body["messages"][1]["content"][-1]["toolUse"]
    assert tool_use["toolUseId"] == call.id and tool_use["name"] == "get_weather"
    tool_result = body["messages"][2]["content"][0]["toolResult"]
    assert tool_result["toolUseId"] == call.id
    assert tool_result["content"] == [{"text": "18°C and cloudy"}]


def test_image_part_is_sent_as_bytes(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    client(stack, keys.alpha).chat.completions.create(model="haiku", messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]}])
    content = json.loads(only_request(emulator)["body"])["messages"][0]["content"]
    assert content[1] == {"image": {"format": "png", "source": {"bytes": PNG}}}


def test_remote_image_url_is_refused(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client(stack, keys.alpha).chat.completions.create(model="haiku", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest/meta-data"}}]}])
    assert "data:" in info.value.message
    assert emulator.requests() == []


@pytest.mark.parametrize(
    ("path", "bedrock_id"),
    [("/v1/chat/haiku", HAIKU), ("/v1/chat/sonnet", "us.anthropic.claude-sonnet-4-20250514-v1%3A0"),
     ("/v1/chat/opus", "us.anthropic.claude-opus-4-5-20251101-v1%3A0")],
)
def test_model_routes_force_their_model(stack: Stack, emulator: Emulator, keys: Keys, path: str, bedrock_id: str) -> None:
    response = httpx.post(stack.url + path, headers={"authorization": f"Bearer {keys.alpha}"},
                          json={"model": "haiku", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200, response.text
    assert response.json()["object"] == "chat.completion"
    assert only_request(emulator)["path"] == f"/model/{bedrock_id}/converse"


@pytest.mark.parametrize(
    ("model", "bedrock_id"),
    [(None, HAIKU), ("haiku", HAIKU), ("claude-haiku-4-5", HAIKU),
     ("us.anthropic.claude-sonnet-4-20250514-v1:0", "us.anthropic.claude-sonnet-4-20250514-v1%3A0"),
     ("claude-sonnet-4-20250514", "us.anthropic.claude-sonnet-4-20250514-v1%3A0")],
)
def test_model_resolution(stack: Stack, emulator: Emulator, keys: Keys, model: str | None, bedrock_id: str) -> None:
    body: dict[str, object] = {"messages": [{"role": "user", "content": "hi"}]}
    if model:
        body["model"] = model
    response = httpx.post(f"{stack.url}/v1/chat/completions", headers={"authorization": f"Bearer {keys.alpha}"},
                          json=body)
    assert response.status_code == 200, response.text
    assert only_request(emulator)["path"] == f"/model/{bedrock_id}/converse"


def test_unknown_model_404_names_it(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client(stack, keys.alpha).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert "gpt-4o" in info.value.message
    assert info.value.code == "model_not_found"
    response = httpx.post(f"{stack.url}/v1/chat/llama", headers={"authorization": f"Bearer {keys.alpha}"},
                          json={"messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 404 and "llama" in response.json()["error"]["message"]
    assert emulator.requests() == []


def test_forbidden_model_is_403_and_models_list_per_key(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    limited = client(stack, keys.haiku_only)
    with pytest.raises(openai.PermissionDeniedError):
        limited.chat.completions.create(model="sonnet", messages=[{"role": "user", "content": "x"}])
    response = httpx.post(f"{stack.url}/v1/chat/opus", headers={"authorization": f"Bearer {keys.haiku_only}"},
                          json={"messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 403 and response.json()["error"]["type"] == "permission_error"
    assert emulator.requests() == []
    assert [m.id for m in limited.models.list()] == ["haiku"]
    assert [m.id for m in client(stack, keys.alpha).models.list()] == [
        "haiku", "sonnet", "sonnet-4-5", "opus", "nova-lite"]


def test_models_list_in_anthropic_shape(stack: Stack, keys: Keys) -> None:
    import anthropic

    page = anthropic.Anthropic(base_url=stack.url, api_key=keys.haiku_only).models.list()
    assert [m.id for m in page.data] == ["haiku"]
    assert anthropic.Anthropic(base_url=stack.url, api_key=keys.haiku_only).models.retrieve("haiku").id == "haiku"
    with pytest.raises(anthropic.AuthenticationError):  # errors in the Anthropic shape for the Anthropic SDK
        anthropic.Anthropic(base_url=stack.url, api_key="gwk_wrong", max_retries=0).models.list()


def test_models_retrieve(stack: Stack, keys: Keys) -> None:
    assert client(stack, keys.alpha).models.retrieve("claude-sonnet-4-0").id == "sonnet"
    with pytest.raises(openai.NotFoundError):
        client(stack, keys.haiku_only).models.retrieve("opus")
    with pytest.raises(openai.NotFoundError):
        client(stack, keys.alpha).models.retrieve("gpt-4o")


@pytest.mark.parametrize(
    ("error", "exception", "status"),
    [
        ("ValidationException", openai.BadRequestError, 400),
        ("AccessDeniedException", openai.PermissionDeniedError, 403),
        ("ResourceNotFoundException", openai.NotFoundError, 404),
        ("ThrottlingException", openai.RateLimitError, 429),
        ("ModelTimeoutException", openai.APIStatusError, 408),
        ("InternalServerException", openai.InternalServerError, 500),
        ("ServiceUnavailableException", openai.InternalServerError, 503),
    ],
)
def test_bedrock_errors_in_openai_shape(
    stack: Stack, emulator: Emulator, keys: Keys, error: str, exception: type[openai.APIStatusError], status: int
) -> None:
    with pytest.raises(exception) as info:
        client(stack, keys.alpha).chat.completions.create(
            model="haiku", messages=[{"role": "user", "content": f"fail [[emulator:error={error}]]"}])
    assert info.value.status_code == status
    assert error in info.value.message
    if error == "ResourceNotFoundException":
        assert "use case details" in info.value.message
    if error == "ThrottlingException":
        assert info.value.response.headers["retry-after"] == "1"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b'{"model": "haiku"}', "messages"),
        (b'{"model": "haiku", "messages": "hi"}', "messages"),
        (b'{"model": "haiku", "messages": [{"role": "user", "content": "x"}], "n": 2}', "n"),
        (b'{"model": "haiku", "messages": [{"role": "user", "content": "x"}], "temperature": 1.5}', "temperature"),
        (b'{"model": "haiku", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}', "temperature"),
        (b'{"model": 7, "messages": [{"role": "user", "content": "x"}]}', "model"),
    ],
)
def test_bad_input_is_400_naming_the_param(
    stack: Stack, emulator: Emulator, keys: Keys, body: bytes, param: str | None
) -> None:
    response = httpx.post(f"{stack.url}/v1/chat/completions", headers={"authorization": f"Bearer {keys.alpha}"},
                          content=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    assert error["param"] == param
    assert emulator.requests() == []


def test_non_claude_models_work_through_converse(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    completion = client(stack, keys.alpha).chat.completions.create(
        model="nova-lite", messages=[{"role": "user", "content": "Hello Nova"}])
    assert "Hello Nova" in (completion.choices[0].message.content or "")
    assert only_request(emulator)["path"] == "/model/us.amazon.nova-lite-v1%3A0/converse"
