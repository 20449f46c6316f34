"""Guard.inspect on JSON bodies: which strings are inspected, the JSON paths reported, and that the
pre-filtered scan gives the same outcome as running every detector on every string."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extproc.config import GatewayConfig, GuardrailPolicy
from extproc.guardrails.detectors import ScanPlan
from extproc.guardrails.enforce import Guard, Outcome

from .test_prefilters import texts

DEFAULT_POLICY = GatewayConfig.model_validate({}).guardrail_policies["default"]
EVERYTHING = GuardrailPolicy(
    detectors={"card": "redact", "card_security": "redact", "iban": "redact", "ssn": "monitor", "email": "redact",
               "phone": "redact", "aws_access_key": "block", "aws_secret_key": "block", "private_key": "block",
               "api_token": "block", "deny": "monitor", "injection": "monitor"},
    deny_keywords=["competitorshop"], deny_patterns=[r"\bHX-\d{4}\b"], card_style="last4",
)


def unfiltered(guard: Guard) -> Guard:
    """The same policy with every detector run on every string (no pre-filters)."""
    policy = guard.policy
    reference = Guard(guard.name, policy)
    reference._plan = ScanPlan(policy.detectors, deny_keywords=tuple(policy.deny_keywords),
                               deny_patterns=reference._patterns, injection_threshold=policy.injection_threshold,
                               prefilter=False)
    return reference


def summary(outcome: Outcome) -> tuple[Any, ...]:
    refusal = outcome.refusal
    return (outcome.actions, outcome.changed, outcome.text_chars,
            None if refusal is None else (refusal.status, str(refusal)))


def test_paths_of_findings_and_skipped_keys() -> None:
    guard = Guard("everything", EVERYTHING)
    body = {
        "model": "jane@example.com",  # never prose: not inspected
        "system": "Refunds go to jane@example.com",
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "card 4111 1111 1111 1111 please"},
                {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "SSN 536-22-8177"}]},
            ]},
        ],
        "tools": [{"name": "a@b.io", "input": {"note": ["x", "mail a@b.io"]}}],
        "metadata": {"id": {"nested": "a@b.io"}},  # a _NOT_TEXT key over an object is walked
        "max_tokens": 10,
    }
    outcome = guard.inspect(body, request=False)
    assert [(a.detector, a.action, a.path, a.offset) for a in outcome.actions] == [
        ("email", "redact", "$.system", 14),
        ("card", "redact", "$.messages[0].content[0].text", 5),
        ("ssn", "monitor", "$.messages[0].content[1].content[0].text", 4),
        ("email", "redact", "$.tools[0].input.note[1]", 5),
        ("email", "redact", "$.metadata.id.nested", 0),
    ]
    assert body["model"] == "jane@example.com" and body["tools"][0]["name"] == "a@b.io"
    assert body["system"] == "Refunds go to [EMAIL]"
    assert body["messages"][0]["content"][0]["text"] == "card [CARD ••••1111] please"
    assert body["messages"][0]["content"][1]["content"][0]["text"] == "SSN 536-22-8177"
    assert body["tools"][0]["input"]["note"] == ["x", "mail [EMAIL]"]
    assert body["metadata"]["id"]["nested"] == "[EMAIL]"
    assert outcome.changed
    assert outcome.text_chars == sum(map(len, ("Refunds go to jane@example.com", "card 4111 1111 1111 1111 please",
                                               "SSN 536-22-8177", "x", "mail a@b.io", "a@b.io")))


def test_a_block_names_the_path() -> None:
    outcome = Guard("default", DEFAULT_POLICY).inspect(
        {"messages": [{"role": "user", "content": "my card is 4111 1111 1111 1111"}]}, request=True)
    assert outcome.refusal is not None
    assert "(at $.messages[0].content)" in str(outcome.refusal)


def test_a_clean_body_is_left_alone() -> None:
    body = {"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "Where is my parcel?"}]}
    before = copy.deepcopy(body)
    outcome = Guard("default", DEFAULT_POLICY).inspect(body, request=True)
    assert body == before and outcome.actions == [] and not outcome.changed and outcome.refusal is None
    assert outcome.text_chars == len("Where is my parcel?")


JSON_KEYS = st.sampled_from(["content", "text", "system", "input", "name", "id", "data", "messages", "arguments"])
BODIES = st.recursive(
    st.one_of(texts(), st.integers(), st.booleans(), st.none()),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(JSON_KEYS, children, max_size=4)),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(JSON_KEYS, BODIES, max_size=4), st.booleans())
def test_inspect_with_prefilters_is_inspect_without(body: dict[str, Any], request: bool) -> None:
    for policy in (DEFAULT_POLICY, EVERYTHING):
        guard = Guard("p", policy)
        fast_body, every_body = copy.deepcopy(body), copy.deepcopy(body)
        fast = guard.inspect(fast_body, request=request)
        every = unfiltered(guard).inspect(every_body, request=request)
        assert summary(fast) == summary(every)
        assert fast_body == every_body
