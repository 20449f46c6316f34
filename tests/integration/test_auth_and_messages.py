"""The backbone through real Envoy: key auth, Anthropic SDK → InvokeModel, signing, errors, size limits."""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest

from devstack import EMULATOR_ACCESS_KEY_ID, Stack
from tests.integration.conftest import Emulator, Keys

HAIKU_PROFILE_PATH = "/model/us.anthropic.claude-haiku-4-5-20251001-v1%3A0/invoke"


def client(stack: Stack, **kwargs: object) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.url, max_retries=0, **kwargs)  # type: ignore[arg-type]


def ask(c: anthropic.Anthropic, text: str = "Hello there", model: str = "claude-haiku-4-5") -> anthropic.types.Message:
    return c.messages.create(model=model, max_tokens=64, messages=[{"role": "user", "content": text}])


@pytest.mark.parametrize(
    ("path", "shape"),
    [("/v1/messages", "anthropic"), ("/v1/messages?beta=true", "anthropic"), ("/v1/chat/completions", "openai"),
     ("/model/us.anthropic.claude-haiku-4-5-20251001-v1:0/invoke", "bedrock")],
)
@pytest.mark.parametrize("key_header", [None, ("x-api-key", "gwk_wrong"), ("authorization", "Bearer gwk_wrong")])
def test_missing_or_wrong_key_is_401_in_the_client_shape_and_nothing_is_forwarded(
    stack: Stack, emulator: Emulator, path: str, shape: str, key_header: tuple[str, str] | None
) -> None:
    headers = dict([key_header]) if key_header else {}
    response = httpx.post(stack.url + path, headers=headers,
                          json={"model": "haiku", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 401
    body = response.json()
    if shape == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    elif shape == "openai":
        assert body["error"]["code"] == "invalid_api_key" and body["error"]["message"]
    else:
        assert response.headers["x-amzn-errortype"] == "UnrecognizedClientException" and body["message"]
    assert emulator.requests() == []


def test_anthropic_sdk_401_raises_authentication_error(stack: Stack, emulator: Emulator) -> None:
    with pytest.raises(anthropic.AuthenticationError):
        ask(client(stack, api_key="gwk_not_a_real_key"))
    assert emulator.requests() == []


@pytest.mark.parametrize("form", ["x-api-key", "X-API-Key", "bearer"])
def test_anthropic_sdk_gets_an_answer_with_each_key_form(
    stack: Stack, emulator: Emulator, keys: Keys, form: str
) -> None:
    if form == "x-api-key":
        c = client(stack, api_key=keys.alpha)
    elif form == "bearer":
        c = client(stack, auth_token=keys.alpha)
    else:
        c = client(stack, api_key=None, default_headers={"X-API-Key": keys.alpha})
    message = ask(c, f"Hello via {form}")
    assert message.role == "assistant"
    assert f"Hello via {form}" in message.content[0].text
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0

    (seen,) = emulator.requests()
    assert seen["method"] == "POST" and seen["path"] == HAIKU_PROFILE_PATH
    assert seen["signature_valid"] is True
    assert seen["access_key_id"] == EMULATOR_ACCESS_KEY_ID
    assert seen["headers"]["authorization"].startswith("AWS4-HMAC-SHA256 Credential=" + EMULATOR_ACCESS_KEY_ID)
    assert "x-api-key" not in seen["headers"]
    assert all(keys.alpha not in value for value in seen["headers"].values())


def test_upstream_body_is_an_invoke_model_body(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    c = client(stack, api_key=keys.alpha, default_headers={"anthropic-beta": "token-efficient-tools-2025-02-19"})
    c.messages.create(model="haiku", max_tokens=32, system="Be brief.",
                      messages=[{"role": "user", "content": "What is SigV4?"}])
    (seen,) = emulator.requests()
    body = json.loads(seen["body"])
    assert body["anthropic_version"] == "bedrock-2023-05-31"
    assert body["anthropic_beta"] == ["token-efficient-tools-2025-02-19"]
    assert "model" not in body and "stream" not in body
    assert body["system"] == "Be brief."
    assert "anthropic-beta" not in seen["headers"]


@pytest.mark.parametrize(
    ("model", "bedrock_id"),
    [
        ("haiku", "us.anthropic.claude-haiku-4-5-20251001-v1%3A0"),
        ("claude-haiku-4-5-20251001", "us.anthropic.claude-haiku-4-5-20251001-v1%3A0"),
        ("sonnet", "us.anthropic.claude-sonnet-4-20250514-v1%3A0"),
        ("claude-opus-4-5", "us.anthropic.claude-opus-4-5-20251101-v1%3A0"),
        ("us.anthropic.claude-haiku-4-5-20251001-v1:0", "us.anthropic.claude-haiku-4-5-20251001-v1%3A0"),
    ],
)
def test_aliases_and_anthropic_names_resolve(
    stack: Stack, emulator: Emulator, keys: Keys, model: str, bedrock_id: str
) -> None:
    message = ask(client(stack, api_key=keys.alpha), model=model)
    assert message.content[0].text
    (seen,) = emulator.requests()
    assert seen["path"] == f"/model/{bedrock_id}/invoke"


def test_unknown_model_is_404_naming_it(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    with pytest.raises(anthropic.NotFoundError, match="claude-3-nonexistent"):
        ask(client(stack, api_key=keys.alpha), model="claude-3-nonexistent")
    assert emulator.requests() == []


def test_model_outside_the_consumers_policy_is_403(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    c = client(stack, api_key=keys.haiku_only)
    with pytest.raises(anthropic.PermissionDeniedError):
        ask(c, model="opus")
    assert emulator.requests() == []
    assert ask(c, model="haiku").content[0].text


def test_messages_route_refuses_non_claude_models_clearly(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    with pytest.raises(anthropic.BadRequestError, match="/v1/chat/completions"):
        ask(client(stack, api_key=keys.alpha), model="nova-lite")
    assert emulator.requests() == []


def test_bad_request_is_400_before_any_upstream_call(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    response = httpx.post(f"{stack.url}/v1/messages", headers={"x-api-key": keys.alpha}, content=b"{nope")
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.BadRequestError, match="max_tokens"):
        client(stack, api_key=keys.alpha).messages.create(
            model="haiku", max_tokens=0, messages=[{"role": "user", "content": "x"}])
    assert emulator.requests() == []


@pytest.mark.parametrize(
    ("error", "exception", "status"),
    [
        ("ValidationException", anthropic.BadRequestError, 400),
        ("AccessDeniedException", anthropic.PermissionDeniedError, 403),
        ("ResourceNotFoundException", anthropic.NotFoundError, 404),
        ("ThrottlingException", anthropic.RateLimitError, 429),
        ("ModelTimeoutException", anthropic.APIStatusError, 408),
        ("ModelErrorException", anthropic.APIStatusError, 424),
        ("InternalServerException", anthropic.InternalServerError, 500),
        ("ServiceUnavailableException", anthropic.InternalServerError, 503),
    ],
)
def test_bedrock_errors_reach_the_sdk_in_anthropic_shape(
    stack: Stack, emulator: Emulator, keys: Keys, error: str, exception: type[Exception], status: int
) -> None:
    with pytest.raises(exception) as info:
        ask(client(stack, api_key=keys.alpha), f"please fail [[emulator:error={error}]]")
    assert info.value.status_code == status  # type: ignore[attr-defined]
    body = info.value.body  # type: ignore[attr-defined]
    assert body["type"] == "error" and error in body["error"]["message"]
    if error == "ResourceNotFoundException":
        assert "use case details" in body["error"]["message"]
    assert len(emulator.requests()) == 1


def test_a_10_mb_prompt_gets_through(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    prompt = "lorem ipsum " * (10_500_000 // 12)
    message = ask(client(stack, api_key=keys.alpha, timeout=60), prompt)
    assert message.content[0].text
    (seen,) = emulator.requests()
    assert seen["body_size"] > 10_000_000
    assert seen["signature_valid"] is True


def test_a_body_over_the_documented_limit_is_a_clear_413(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    body = b'{"model":"haiku","max_tokens":5,"messages":[{"role":"user","content":"' + b"x" * (33 << 20) + b'"}]}'
    response = httpx.post(f"{stack.url}/v1/messages", headers={"x-api-key": keys.alpha}, content=body, timeout=60)
    assert response.status_code == 413
    assert "32 MiB" in response.json()["error"]["message"]
    assert emulator.requests() == []


def test_unknown_route_is_404_after_auth(stack: Stack, emulator: Emulator, keys: Keys) -> None:
    response = httpx.post(f"{stack.url}/v1/nothing-here", headers={"authorization": f"Bearer {keys.alpha}"}, json={})
    assert response.status_code == 404
    assert "no route" in response.json()["error"]["message"]
    assert emulator.requests() == []


def test_health_is_answered_by_envoy(stack: Stack) -> None:
    response = httpx.get(f"{stack.url}/health")
    assert response.status_code == 200


def test_logs_hold_no_keys_or_secrets(stack: Stack, keys: Keys) -> None:
    """Runs after the tests above have sent every kind of request through this stack."""
    ask(client(stack, api_key=keys.alpha), "one more for the logs")
    from devstack import EMULATOR_SECRET_ACCESS_KEY

    for name in ("extproc", "envoy", "emulator"):
        text = stack.processes[name].log.read_text(errors="replace")
        assert text, f"{name} wrote no log"
        for secret in (keys.alpha, keys.haiku_only, EMULATOR_SECRET_ACCESS_KEY, "gwk_wrong"):
            assert secret not in text, f"{name} log contains a secret"
    extproc_lines = [json.loads(line) for line in stack.processes["extproc"].log.read_text().splitlines()
                     if line.startswith("{")]
    requests = [line for line in extproc_lines if line.get("record") == "usage"]
    assert any(r["consumer"] == "alpha" and r["status"] == 200 and r["tokens"]["output"] > 0 for r in requests)
