"""Which model IDs the emulator knows, and what each one may be used for.

Bedrock distinguishes a foundation model's base ID
(``anthropic.claude-haiku-4-5-20251001-v1:0``) from the system-defined
inference profiles that route it (``us.``, ``eu.``, ``global.``…). The Claude
4.x models are not offered on demand: invoking a base ID fails and the caller
must use a profile, while CountTokens accepts only base IDs. Getting this wrong
is a classic gateway bug, so the emulator enforces both rules. Amazon Nova Lite
is here as a non-Anthropic model: it is offered on demand, speaks Converse, and
has no Anthropic InvokeModel format.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Model:
    base_id: str
    profiles: tuple[str, ...]  # inference-profile prefixes, e.g. ("us", "eu")
    anthropic_name: str | None  # the model name Anthropic's API reports, None if not Claude
    max_output_tokens: int
    on_demand: bool  # whether the base ID itself may be invoked

    @property
    def is_anthropic(self) -> bool:
        return self.anthropic_name is not None


@dataclass(frozen=True)
class Resolved:
    """A model ID as the caller wrote it, and the model behind it."""

    model_id: str
    model: Model
    is_profile: bool


CATALOGUE: tuple[Model, ...] = (
    Model(
        "anthropic.claude-haiku-4-5-20251001-v1:0", ("global", "us", "eu"), "claude-haiku-4-5-20251001", 64000, False
    ),
    Model(
        "anthropic.claude-sonnet-4-20250514-v1:0",
        ("global", "us", "eu", "apac"),
        "claude-sonnet-4-20250514",
        64000,
        False,
    ),
    Model(
        "anthropic.claude-sonnet-4-5-20250929-v1:0",
        ("global", "us", "eu", "jp"),
        "claude-sonnet-4-5-20250929",
        64000,
        False,
    ),
    Model("anthropic.claude-opus-4-1-20250805-v1:0", ("us",), "claude-opus-4-1-20250805", 32000, False),
    Model("anthropic.claude-opus-4-5-20251101-v1:0", ("global", "us", "eu"), "claude-opus-4-5-20251101", 64000, False),
    Model("amazon.nova-lite-v1:0", ("us",), None, 10000, True),
)


def _index() -> dict[str, Resolved]:
    index: dict[str, Resolved] = {}
    for model in CATALOGUE:
        index[model.base_id] = Resolved(model.base_id, model, is_profile=False)
        for prefix in model.profiles:
            profile_id = f"{prefix}.{model.base_id}"
            index[profile_id] = Resolved(profile_id, model, is_profile=True)
    return index


_BY_ID = _index()


def resolve(model_id: str) -> Resolved | None:
    return _BY_ID.get(model_id)
