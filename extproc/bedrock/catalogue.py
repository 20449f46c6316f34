"""The model catalogue: which names clients may send and what Bedrock ID each means.

Lookups happen on every request, so all names are indexed once at start-up.
A client may name a model by catalogue alias (``haiku``), by an Anthropic or
OpenAI-style name the catalogue lists (``claude-haiku-4-5``), or by a Bedrock
model / inference profile ID the catalogue lists; anything else is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ModelEntry, Models, Policy


@dataclass(frozen=True, slots=True)
class Model:
    alias: str
    entry: ModelEntry

    @property
    def bedrock_id(self) -> str:
        return self.entry.bedrock_id

    @property
    def is_anthropic(self) -> bool:
        """Claude speaks the Anthropic Messages body on InvokeModel; other models do not."""
        return "anthropic." in self.entry.bedrock_id


class Catalogue:
    def __init__(self, models: Models) -> None:
        self._by_name: dict[str, Model] = {}
        self.models = {alias: Model(alias, entry) for alias, entry in models.catalogue.items()}
        self.default = self.models[models.default]
        # Aliases win over names, names over IDs: insert the weakest first.
        for model in self.models.values():
            for name in (model.entry.base_id, model.entry.bedrock_id):
                if name:
                    self._by_name[name] = model
        for model in self.models.values():
            for name in model.entry.names:
                self._by_name[name] = model
        self._by_name.update(self.models)

    def resolve(self, name: str) -> Model | None:
        """The catalogue model ``name`` refers to, or None if it is not listed."""
        return self._by_name.get(name)

    def allowed(self, policy: Policy, model: Model) -> bool:
        return "*" in policy.models or model.alias in policy.models

    def visible_to(self, policy: Policy) -> list[Model]:
        """The models ``policy`` may use, in catalogue order (for ``GET /v1/models``)."""
        return [model for model in self.models.values() if self.allowed(policy, model)]
