from __future__ import annotations

import pytest

from extproc.errors import Api
from extproc.routes import Operation, classify


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages?beta=true", "/v1/messages/"])
def test_messages_route_ignores_query(path: str) -> None:
    route = classify("POST", path)
    assert route.operation is Operation.ANTHROPIC_MESSAGES
    assert route.api is Api.ANTHROPIC


@pytest.mark.parametrize(
    ("method", "path", "api"),
    [
        ("GET", "/v1/messages", Api.ANTHROPIC),
        ("POST", "/v1/chat/completions/x", Api.OPENAI),
        ("GET", "/v1/chat/completions", Api.OPENAI),
        ("POST", "/nope", Api.OPENAI),
        ("POST", "/model/x/invoke-everything", Api.BEDROCK),
    ],
)
def test_unknown_routes_still_answer_in_their_family_shape(method: str, path: str, api: Api) -> None:
    route = classify(method, path)
    assert route.operation is None
    assert route.api is api


@pytest.mark.parametrize(
    ("path", "model"),
    [("/v1/chat/completions", None), ("/v1/chat/haiku", "haiku"), ("/v1/chat/sonnet", "sonnet"),
     ("/v1/chat/opus", "opus"), ("/v1/chat/completions?x=1", None)],
)
def test_openai_chat_routes_and_route_fixed_models(path: str, model: str | None) -> None:
    route = classify("POST", path)
    assert route.operation is Operation.OPENAI_CHAT
    assert route.api is Api.OPENAI
    assert route.model == model


def test_models_list_is_a_get() -> None:
    assert classify("GET", "/v1/models").operation is Operation.MODELS
    assert classify("POST", "/v1/models").operation is None
