"""Which client-facing route a request is on, from its method and path alone.

Classification runs in the request-headers phase, before authentication, so
that even a 401 comes back in the shape of the API the client speaks. The
query string is ignored (Claude Code sends ``/v1/messages?beta=true``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import Api


class Operation(enum.Enum):
    """What the gateway does for a route; the value is the label used in logs and metrics."""

    ANTHROPIC_MESSAGES = "anthropic_messages"
    OPENAI_CHAT = "openai_chat"
    MODELS = "models"


@dataclass(frozen=True, slots=True)
class Route:
    api: Api
    operation: Operation | None
    """None when the path is not one the gateway serves (answered 404 after auth)."""
    model: str | None = None
    """A model the route itself fixes (``/v1/chat/haiku``), which wins over the body's."""

    @property
    def label(self) -> str:
        return self.operation.value if self.operation else "unknown"


_EXACT: dict[tuple[str, str], Route] = {
    ("POST", "/v1/messages"): Route(Api.ANTHROPIC, Operation.ANTHROPIC_MESSAGES),
    ("POST", "/v1/chat/completions"): Route(Api.OPENAI, Operation.OPENAI_CHAT),
    ("GET", "/v1/models"): Route(Api.OPENAI, Operation.MODELS),
}
_CHAT_ALIAS_PREFIX = "/v1/chat/"


def api_for_path(path: str) -> Api:
    """The dialect to answer in, guessed from the path's family."""
    if path.startswith("/v1/messages") or path.startswith("/v1/complete"):
        return Api.ANTHROPIC
    if path.startswith("/model/") or path.startswith("/bedrock/"):
        return Api.BEDROCK
    return Api.OPENAI


def classify(method: str, raw_path: str) -> Route:
    path = raw_path.split("?", 1)[0]
    if len(path) > 1:
        path = path.rstrip("/")
    route = _EXACT.get((method, path))
    if route is not None:
        return route
    if method == "POST" and path.startswith(_CHAT_ALIAS_PREFIX):
        alias = path[len(_CHAT_ALIAS_PREFIX):]
        if alias and "/" not in alias:
            # /v1/chat/{alias}: OpenAI body, model fixed by the route (an unknown alias is a 404 later).
            return Route(Api.OPENAI, Operation.OPENAI_CHAT, model=alias)
    return Route(api_for_path(path), None)
