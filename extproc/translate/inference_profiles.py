"""``GET /inference-profiles`` and ``/inference-profiles/{id}`` from the catalogue, in Bedrock's shape.

Claude Code's Bedrock mode asks which system-defined inference profiles exist
before it picks a model. The gateway answers from its catalogue, listing only
the profiles the key may use, so the client never needs Bedrock control-plane
access. Catalogue entries whose ``bedrock_id`` is a geographic profile of a
base model (``us.anthropic…``) are profiles; timestamps are not known to the
gateway and are given as the epoch.
"""

from __future__ import annotations

import json
from typing import Any

from ..bedrock.catalogue import Model

_GEO_PREFIXES = ("us.", "eu.", "apac.", "jp.", "au.", "ca.", "us-gov.", "global.")
_EPOCH = "1970-01-01T00:00:00Z"


def is_profile(model: Model) -> bool:
    return model.bedrock_id.startswith(_GEO_PREFIXES)


def _summary(model: Model, region: str) -> dict[str, Any]:
    base = model.entry.base_id or model.bedrock_id.split(".", 1)[1]
    return {
        "inferenceProfileName": f"{model.alias} ({model.bedrock_id.split('.', 1)[0].upper()})",
        "description": f"Gateway catalogue model '{model.alias}'",
        "createdAt": _EPOCH,
        "updatedAt": _EPOCH,
        "inferenceProfileArn": f"arn:aws:bedrock:{region}::inference-profile/{model.bedrock_id}",
        "models": [{"modelArn": f"arn:aws:bedrock:{region}::foundation-model/{base}"}],
        "inferenceProfileId": model.bedrock_id,
        "status": "ACTIVE",
        "type": "SYSTEM_DEFINED",
    }


def render_list(models: list[Model], region: str) -> bytes:
    summaries = [_summary(m, region) for m in models if is_profile(m)]
    return json.dumps({"inferenceProfileSummaries": summaries}).encode()


def render_one(model: Model, region: str) -> bytes:
    return json.dumps(_summary(model, region)).encode()
