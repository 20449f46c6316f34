"""``GET /v1/models`` and ``/v1/models/{id}``: the models a key may use, in the shape of the SDK asking.

Both SDKs call this path; the Anthropic SDK sends ``anthropic-version``, the
OpenAI SDK does not, so that header picks the shape.
"""

from __future__ import annotations

import json

from ..bedrock.catalogue import Model


def _entry(model: Model, anthropic: bool) -> dict[str, object]:
    if anthropic:
        return {"type": "model", "id": model.alias, "display_name": model.alias, "created_at": "1970-01-01T00:00:00Z"}
    return {"id": model.alias, "object": "model", "created": 0, "owned_by": "amazon-bedrock"}


def render(models: list[Model], headers: dict[str, str]) -> bytes:
    anthropic = "anthropic-version" in headers
    data = [_entry(m, anthropic) for m in models]
    if anthropic:
        body: dict[str, object] = {
            "data": data, "has_more": False,
            "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None,
        }
    else:
        body = {"object": "list", "data": data}
    return json.dumps(body).encode()


def render_one(model: Model, headers: dict[str, str]) -> bytes:
    return json.dumps(_entry(model, "anthropic-version" in headers)).encode()
