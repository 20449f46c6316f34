"""``GET /v1/models``: the models a key may use, in the shape of the SDK asking.

Both SDKs call this path; the Anthropic SDK sends ``anthropic-version``, the
OpenAI SDK does not, so that header picks the shape.
"""

from __future__ import annotations

import json

from ..bedrock.catalogue import Model


def render(models: list[Model], headers: dict[str, str]) -> bytes:
    if "anthropic-version" in headers:
        data = [
            {"type": "model", "id": m.alias, "display_name": m.alias, "created_at": "1970-01-01T00:00:00Z"}
            for m in models
        ]
        body: dict[str, object] = {
            "data": data, "has_more": False,
            "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None,
        }
    else:
        body = {"object": "list",
                "data": [{"id": m.alias, "object": "model", "created": 0, "owned_by": "amazon-bedrock"} for m in models]}
    return json.dumps(body).encode()
