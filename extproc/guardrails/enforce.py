"""A guardrail policy applied to a JSON body: every string the model reads or writes.

The three client APIs (Anthropic, OpenAI, Bedrock Converse/InvokeModel) put
text in different places: system prompts, message strings, content blocks,
tool arguments (a JSON string in OpenAI, an object elsewhere), tool results.
Rather than one walker per format, which would miss the next field a client
invents, every string value in the body is inspected except those under keys
that are never prose (identifiers, roles, model names, base64 media). Tool
arguments given as JSON strings are inspected as text, which finds what the
arguments contain.

A ``block`` finding stops the request with a 400 naming the detector (never
the value); ``redact`` replaces the span with its placeholder in place;
``monitor`` only counts and logs. Findings are reported with the JSON path
and offset, for logs: never the matched text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..config import GuardrailPolicy
from ..errors import GatewayError, Kind
from .detectors import Finding, redact, scan

# Keys whose string values are not text the model reads: identifiers, enums, media.
_NOT_TEXT = frozenset({
    "model", "role", "type", "id", "tool_use_id", "toolUseId", "tool_call_id", "anthropic_version",
    "media_type", "format", "data", "bytes", "url", "stop_reason", "stop_sequence", "stopReason", "finish_reason",
    "object", "status", "cache_control", "signature", "name", "p",
})


@dataclass(frozen=True, slots=True)
class Action:
    """One finding and what the policy did about it (for metrics and logs)."""

    detector: str
    action: str
    path: str
    offset: int


@dataclass(slots=True)
class Outcome:
    actions: list[Action] = field(default_factory=list)
    changed: bool = False
    text_chars: int = 0
    refusal: GatewayError | None = None
    """Set when the policy refuses the request (a ``block`` finding or a limit)."""

    def as_log(self) -> list[dict[str, object]]:
        return [{"detector": a.detector, "action": a.action, "path": a.path, "offset": a.offset}
                for a in self.actions]


class Guard:
    """A compiled guardrail policy."""

    def __init__(self, name: str, policy: GuardrailPolicy) -> None:
        self.name = name
        self.policy = policy
        self._detectors = frozenset(policy.detectors)
        self._patterns = tuple(re.compile(p) for p in policy.deny_patterns)

    @property
    def active(self) -> bool:
        return bool(self._detectors) or self.policy.max_prompt_chars is not None or self.policy.max_tokens is not None

    def inspect(self, body: dict[str, Any], *, request: bool) -> Outcome:
        """Apply the policy to ``body`` in place.

        On a request, a ``block`` finding or a limit sets ``refusal`` (a 400
        naming the detector, never the value). On an answer there is nothing
        left to refuse, so ``block`` redacts like ``redact``.
        """
        outcome = Outcome()
        if self._detectors:
            self._walk(body, "$", outcome)
        if not request:
            return outcome
        blocked = next((a for a in outcome.actions if a.action == "block"), None)
        if blocked is not None:
            outcome.refusal = GatewayError(
                400, Kind.INVALID_REQUEST,
                f"blocked by guardrail policy '{self.name}': the request contains "
                f"{blocked.detector.replace('_', ' ')} data (at {blocked.path})",
                code=f"guardrail_{blocked.detector}",
            )
        else:
            outcome.refusal = self._limits(body, outcome.text_chars)
        return outcome

    def _limits(self, body: dict[str, Any], text_chars: int) -> GatewayError | None:
        limit = self.policy.max_prompt_chars
        if limit is not None and text_chars > limit:
            return GatewayError(400, Kind.INVALID_REQUEST,
                                f"the prompt has {text_chars} characters; policy '{self.name}' allows {limit}",
                                code="guardrail_max_prompt_chars")
        cap = self.policy.max_tokens
        inference = body.get("inferenceConfig")
        for value in (body.get("max_tokens"), body.get("max_completion_tokens"),
                      inference.get("maxTokens") if isinstance(inference, dict) else None):
            if cap is not None and isinstance(value, int) and value > cap:
                return GatewayError(400, Kind.INVALID_REQUEST,
                                    f"max_tokens {value} is above the {cap} policy '{self.name}' allows",
                                    param="max_tokens", code="guardrail_max_tokens")
        return None

    def _walk(self, node: Any, path: str, outcome: Outcome) -> Any:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in _NOT_TEXT and not isinstance(value, (dict, list)):
                    continue
                new = self._walk(value, f"{path}.{key}", outcome)
                if new is not value:
                    node[key] = new
            return node
        if isinstance(node, list):
            for index, value in enumerate(node):
                new = self._walk(value, f"{path}[{index}]", outcome)
                if new is not value:
                    node[index] = new
            return node
        if isinstance(node, str):
            return self.text(node, path, outcome)
        return node

    def text(self, value: str, path: str, outcome: Outcome) -> str:
        """Inspect one string; return it redacted where the policy says so."""
        outcome.text_chars += len(value)
        findings = scan(value, self._detectors, deny_keywords=self.policy.deny_keywords,
                        deny_patterns=self._patterns, injection_threshold=self.policy.injection_threshold)
        if not findings:
            return value
        to_redact: list[Finding] = []
        for finding in findings:
            action = self.policy.detectors[finding.detector]
            outcome.actions.append(Action(finding.detector, action, path, finding.start))
            if action in ("block", "redact"):
                to_redact.append(finding)
        if not to_redact:
            return value
        outcome.changed = True
        return redact(value, to_redact, card_style=self.policy.card_style)
