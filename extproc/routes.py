"""Which client-facing route a request is on, from its method and path alone.

Classification runs in the request-headers phase, before authentication, so
that even a 401 comes back in the shape of the API the client speaks. The
query string is ignored (Claude Code sends ``/v1/messages?beta=true``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from urllib.parse import unquote

from .errors import Api


class Operation(enum.Enum):
    """What the gateway does for a route; the value is the label used in logs and metrics."""

    ANTHROPIC_MESSAGES = "anthropic_messages"
    ANTHROPIC_COUNT_TOKENS = "anthropic_count_tokens"
    OPENAI_CHAT = "openai_chat"
    MODELS = "models"
    BEDROCK = "bedrock"
    """Bedrock-native ``/model/{id}/{action}``: the body goes to Bedrock as it came, re-signed."""
    INFERENCE_PROFILES = "inference_profiles"
    HELLO = "hello"
    """Claude Code's ``HEAD /api/hello`` connectivity probe."""


@dataclass(frozen=True, slots=True)
class Route:
    api: Api
    operation: Operation | None
    """None when the path is not one the gateway serves (answered 404 after auth)."""
    model: str | None = None
    """A model the route itself fixes (``/v1/chat/haiku``, ``/model/{id}/invoke``), which wins over the body's."""
    action: str = ""
    """Bedrock's operation for BEDROCK routes (``invoke``, ``converse-stream``, …)."""
    label: str = field(init=False, compare=False)
    """The route's name in logs, metrics and usage records (read several times per request: computed once)."""

    def __post_init__(self) -> None:
        if self.operation is Operation.BEDROCK:
            label = "bedrock_" + self.action.replace("-", "_")
        else:
            label = self.operation.value if self.operation else "unknown"
        object.__setattr__(self, "label", label)


_EXACT: dict[tuple[str, str], Route] = {
    ("POST", "/v1/messages"): Route(Api.ANTHROPIC, Operation.ANTHROPIC_MESSAGES),
    ("POST", "/v1/messages/count_tokens"): Route(Api.ANTHROPIC, Operation.ANTHROPIC_COUNT_TOKENS),
    ("HEAD", "/api/hello"): Route(Api.ANTHROPIC, Operation.HELLO),
    ("GET", "/api/hello"): Route(Api.ANTHROPIC, Operation.HELLO),
    ("POST", "/v1/chat/completions"): Route(Api.OPENAI, Operation.OPENAI_CHAT),
    ("GET", "/v1/models"): Route(Api.OPENAI, Operation.MODELS),
}
_CHAT_ALIAS_PREFIX = "/v1/chat/"
BEDROCK_PREFIX = "/bedrock"
"""Claude Code's Bedrock mode calls ``ANTHROPIC_BEDROCK_BASE_URL`` + Bedrock's own paths."""
BEDROCK_ACTIONS = frozenset({"invoke", "invoke-with-response-stream", "converse", "converse-stream", "count-tokens"})


def api_for_path(path: str) -> Api:
    """The dialect to answer in, guessed from the path's family."""
    if path.startswith("/v1/messages"):
        return Api.ANTHROPIC
    if path.startswith(("/model/", "/bedrock/", "/inference-profiles")):
        return Api.BEDROCK
    return Api.OPENAI


def classify(method: str, raw_path: str) -> Route:
    path = raw_path.split("?", 1)[0]
    if len(path) > 1:
        path = path.rstrip("/")
    route = _EXACT.get((method, path))
    if route is not None:
        return route
    bedrock_path = path[len(BEDROCK_PREFIX):] if path.startswith(BEDROCK_PREFIX + "/") else path
    if bedrock_path.startswith("/model/"):
        parts = bedrock_path.split("/")  # ["", "model", id, action]
        if method == "POST" and len(parts) == 4 and parts[2] and parts[3] in BEDROCK_ACTIONS:
            return Route(Api.BEDROCK, Operation.BEDROCK, model=unquote(parts[2]), action=parts[3])
        return Route(Api.BEDROCK, None)
    if method == "GET" and (bedrock_path == "/inference-profiles" or bedrock_path.startswith("/inference-profiles/")):
        profile = unquote(bedrock_path[len("/inference-profiles/"):]) if bedrock_path != "/inference-profiles" else None
        return Route(Api.BEDROCK, Operation.INFERENCE_PROFILES, model=profile)
    if method == "GET" and path.startswith("/v1/models/") and len(path) > len("/v1/models/"):
        return Route(Api.OPENAI, Operation.MODELS, model=unquote(path[len("/v1/models/"):]))
    if method == "POST" and path.startswith(_CHAT_ALIAS_PREFIX):
        alias = path[len(_CHAT_ALIAS_PREFIX):]
        if alias and "/" not in alias:
            # /v1/chat/{alias}: OpenAI body, model fixed by the route (an unknown alias is a 404 later).
            return Route(Api.OPENAI, Operation.OPENAI_CHAT, model=alias)
    return Route(api_for_path(path), None)
