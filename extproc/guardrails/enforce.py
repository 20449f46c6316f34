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
from typing import Any, TypeAlias

from ..config import GuardrailPolicy
from ..errors import GatewayError, Kind
from .detectors import Finding, ScanPlan, redact

# Keys whose string values are not text the model reads: identifiers, enums, media.
_NOT_TEXT = frozenset({
    "model", "role", "type", "id", "tool_use_id", "toolUseId", "tool_call_id", "anthropic_version",
    "media_type", "format", "data", "bytes", "url", "stop_reason", "stop_sequence", "stopReason", "finish_reason",
    "object", "status", "cache_control", "signature", "name", "p",
})

# What a JSON parser gives besides strings, objects and arrays: nothing to inspect.
_SCALARS = frozenset({int, float, bool, type(None)})


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


class Guard:
    """A compiled guardrail policy."""

    def __init__(self, name: str, policy: GuardrailPolicy) -> None:
        self.name = name
        self.policy = policy
        self._detectors = frozenset(policy.detectors)
        self._patterns = tuple(re.compile(p) for p in policy.deny_patterns)
        # Worked out once: every string of every body is scanned with it.
        self._plan = ScanPlan(self._detectors, deny_keywords=tuple(policy.deny_keywords), deny_patterns=self._patterns,
                              injection_threshold=policy.injection_threshold)

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
            if isinstance(body, dict):
                self._walk(body, None, outcome)
            elif isinstance(body, list):
                self._walk_list(body, None, outcome)
            elif isinstance(body, str):
                self.text(body, "$", outcome)
        if not request:
            return outcome
        blocked = next((a for a in outcome.actions if a.action == "block"), None) if outcome.actions else None
        if blocked is not None:
            outcome.refusal = GatewayError(
                400, Kind.INVALID_REQUEST,
                f"guardrail_{blocked.detector}: blocked by guardrail policy '{self.name}': the request contains "
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
                                f"guardrail_max_prompt_chars: the prompt has {text_chars} characters; "
                                f"policy '{self.name}' allows {limit}",
                                code="guardrail_max_prompt_chars")
        cap = self.policy.max_tokens
        inference = body.get("inferenceConfig")
        for value in (body.get("max_tokens"), body.get("max_completion_tokens"),
                      inference.get("maxTokens") if isinstance(inference, dict) else None):
            if cap is not None and isinstance(value, int) and value > cap:
                return GatewayError(400, Kind.INVALID_REQUEST,
                                    f"guardrail_max_tokens: max_tokens {value} is above the {cap} "
                                    f"policy '{self.name}' allows",
                                    param="max_tokens", code="guardrail_max_tokens")
        return None

    def _walk(self, node: dict[str, Any], trail: _Trail, outcome: Outcome) -> None:
        """Inspect every string in ``node`` (but those under ``_NOT_TEXT`` keys), redacting in place.

        Strings are handled in the loop, and only dicts and lists recursed into:
        most values of a body are short strings, numbers and flags, and a call
        costs more than the test. A parsed body holds exact ``str``, ``dict``
        and ``list`` objects, so ``type(value) is ...`` decides (faster than
        ``isinstance``); subclasses take ``_other``, to the same effect. The JSON
        path is only needed for an Action, so ``trail`` carries the chain of keys
        to ``node`` and ``_path`` writes it out for a finding, not at every node.
        """
        for key, value in node.items():
            kind = type(value)
            if kind is str:
                if key not in _NOT_TEXT:
                    self._string(node, key, value, (trail, key, False), outcome)
            elif kind is dict:
                self._walk(value, (trail, key, False), outcome)
            elif kind is list:
                self._walk_list(value, (trail, key, False), outcome)
            elif kind not in _SCALARS and (key not in _NOT_TEXT or isinstance(value, (dict, list))):
                self._other(node, key, value, (trail, key, False), outcome)

    def _walk_list(self, node: list[Any], trail: _Trail, outcome: Outcome) -> None:
        for index, value in enumerate(node):
            kind = type(value)
            if kind is str:
                self._string(node, index, value, (trail, index, True), outcome)
            elif kind is dict:
                self._walk(value, (trail, index, True), outcome)
            elif kind is list:
                self._walk_list(value, (trail, index, True), outcome)
            elif kind not in _SCALARS:
                self._other(node, index, value, (trail, index, True), outcome)

    def _other(self, node: dict[str, Any] | list[Any], key: Any, value: Any, trail: _Trail,
               outcome: Outcome) -> None:
        """A value of a subclass of ``str``, ``dict`` or ``list`` (not from a JSON parser), or anything else."""
        if isinstance(value, str):
            self._string(node, key, value, trail, outcome)
        elif isinstance(value, dict):
            self._walk(value, trail, outcome)
        elif isinstance(value, list):
            self._walk_list(value, trail, outcome)

    def _string(self, node: dict[str, Any] | list[Any], key: Any, value: str, trail: _Trail,
                outcome: Outcome) -> None:
        outcome.text_chars += len(value)
        findings = self._plan.scan(value)
        if findings:
            new = self._apply(value, findings, _path(trail), outcome)
            if new is not value:
                node[key] = new

    @property
    def inspects_text(self) -> bool:
        return bool(self._detectors)

    def findings(self, text: str) -> list[Finding]:
        return self._plan.scan(text)

    def text(self, value: str, path: str, outcome: Outcome) -> str:
        """Inspect one string; return it redacted where the policy says so."""
        outcome.text_chars += len(value)
        findings = self._plan.scan(value)
        return self._apply(value, findings, path, outcome) if findings else value

    def _apply(self, value: str, findings: list[Finding], path: str, outcome: Outcome) -> str:
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


# The keys from the body's root to a value, innermost last: (parent trail, key or index, is an index).
_Trail: TypeAlias = "tuple[_Trail, str | int, bool] | None"


def _path(trail: _Trail) -> str:
    """``$.messages[0].content`` for the trail of keys to a value."""
    parts: list[str] = []
    while trail is not None:
        trail, key, index = trail
        parts.append(f"[{key}]" if index else f".{key}")
    return "$" + "".join(reversed(parts))


class StreamRedactor:
    """The guardrail policy on streamed answer text, with a small, bounded hold-back.

    Only the tail that could still grow into a finding is held back: a run of
    digits and separators with the word it is glued to (a card, phone, IBAN or
    SSN still arriving), or the last unfinished word (an e-mail or a token);
    never more than ``HOLD`` characters. So a card number split over several
    deltas is whole when it is scanned, while prose flows on at once. A finding that straddles the release point holds the cut
    back to its start. The last ``CONTEXT`` released characters are kept (and
    never sent again) so that detectors needing a preceding word ("SSN") still
    see it. Findings longer than the hold-back (a whole PEM private key) can
    only be caught where they fit in it: a documented limit of streaming.
    """

    HOLD = 256
    CONTEXT = 64

    def __init__(self, guard: Guard, outcome: Outcome, path: str) -> None:
        self._guard = guard
        self._outcome = outcome
        self._path = path
        self._context = ""
        self._pending = ""
        self._released = 0

    def sibling(self) -> StreamRedactor:
        """A redactor for another text of the same answer (a tool call's arguments), same policy and record."""
        return StreamRedactor(self._guard, self._outcome, self._path)

    def feed(self, text: str) -> str:
        self._pending += text
        keep = min(self.HOLD, _unsafe_tail(self._pending))
        if keep >= len(self._pending):
            return ""
        return self._release(len(self._pending) - keep, final=False)

    def flush(self) -> str:
        return self._release(len(self._pending), final=True) if self._pending else ""

    def _release(self, upto: int, *, final: bool) -> str:
        window = self._context + self._pending
        start = len(self._context)
        cut = start + upto
        findings = self._guard.findings(window)
        if not final:
            for finding in findings:
                if finding.start < cut < finding.end:
                    cut = max(start, finding.start)
        segment = window[start:cut]
        to_redact = []
        for finding in findings:
            if finding.end <= start or finding.start >= cut:
                continue
            action = self._guard.policy.detectors[finding.detector]
            if finding.start >= start:  # counted once: when its start is released
                self._outcome.actions.append(
                    Action(finding.detector, action, self._path, self._released + finding.start - start))
            if action in ("block", "redact"):
                to_redact.append(Finding(finding.detector, max(finding.start, start) - start,
                                         min(finding.end, cut) - start, finding.placeholder, finding.score))
        self._context = window[max(0, cut - self.CONTEXT):cut]
        self._pending = window[cut:]
        self._released += len(segment)
        if not to_redact:
            return segment
        self._outcome.changed = True
        return redact(segment, to_redact, card_style=self._guard.policy.card_style)


_NUMBER_TAIL = re.compile(r"[0-9][0-9 \-+().\/]*\Z")


def _unsafe_tail(text: str) -> int:
    """How many trailing characters of ``text`` could still be the start of a finding."""
    match = _NUMBER_TAIL.search(text)
    start = match.start() if match else len(text)
    while start > 0 and not text[start - 1].isspace():
        start -= 1  # the word the number or the unfinished last word belongs to
    return len(text) - start
