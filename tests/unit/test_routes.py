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
        ("POST", "/nope", Api.OPENAI),
        ("POST", "/model/x/invoke-everything", Api.BEDROCK),
    ],
)
def test_unknown_routes_still_answer_in_their_family_shape(method: str, path: str, api: Api) -> None:
    route = classify(method, path)
    assert route.operation is None
    assert route.api is api
