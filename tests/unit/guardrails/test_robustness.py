"""scan() never raises and stays linear on adversarial input.

The timing tests compare the same adversarial pattern at two sizes, 8x apart:
linear work grows ~8x, quadratic work ~64x. The bound (24x, with a floor for
tiny timings) leaves room for a noisy machine while still catching any
pattern that backtracks over the whole input.
"""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extproc.guardrails import DETECTORS, redact, scan

DENY = {"deny_keywords": ["competitorshop", "project falcon"], "deny_patterns": [re.compile(r"\bHX-\d{4}\b")]}

SMALL, LARGE = 4_000, 32_000
GROWTH_LIMIT = 24.0  # linear: ~8; quadratic: ~64
FLOOR = 0.002  # seconds: below this the small timing is noise


def check_invariants(text: str) -> None:
    findings = scan(text, DETECTORS, **DENY)
    for f in findings:
        assert 0 <= f.start < f.end <= len(text), f
        assert f.detector in DETECTORS and 0.0 <= f.score <= 1.0
    assert all(a.end <= b.start for a, b in zip(findings, findings[1:])), "sorted and non-overlapping"
    redacted = redact(text, findings, card_style="last4")
    assert isinstance(redacted, str)


ATOMS = [
    "1", "4", "0", " ", "-", "/", ".", ",", "+", "(", ")", "@", "a", "Z", "_", "#", "<|", "|>", "\\n", "\n", ":",
    "=", "'", "!", "é", "١", "４", "ignore ", "all previous instructions", "system", "prompt", "you are ",
    "4111 1111 1111 1111", "cvv 123", "exp 12/27", "DE89 3704 0044 0532 0130 00", "jane@example.com", "+44 20 7946 0958",
    "AKIA", "eyJ", "sk-", "ghp_", "xoxb-", "-----BEGIN PRIVATE KEY-----", "-----END PRIVATE KEY-----", "QUJD", "SSN ",
    "123-45-", "ab", "DAN", "[INST]",
]  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(ATOMS), max_size=60).map("".join) | st.text(max_size=400))
def test_scan_never_raises_and_keeps_its_invariants(text: str) -> None:
    check_invariants(text)


def cpu_time(text: str) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        scan(text, DETECTORS, **DENY)
        best = min(best, time.process_time() - start)
    return best


def assert_linear(head: str, unit: str, tail: str = "") -> None:
    def build(size: int) -> str:
        return head + unit * max(1, (size - len(head) - len(tail)) // max(1, len(unit))) + tail

    small, large = cpu_time(build(SMALL)), cpu_time(build(LARGE))
    growth = large / max(small, FLOOR)
    assert growth <= GROWTH_LIMIT, (
        f"{head[:20]!r} + {unit[:30]!r} * n + {tail[:20]!r}: "
        f"{small * 1e3:.1f} ms -> {large * 1e3:.1f} ms ({growth:.0f}x for 8x)"
    )
    assert large < 2.0, f"{large:.2f} s for {LARGE} characters"


ADVERSARIAL = [
    ("", "1"),  # one long digit run
    ("", "1 "),  # long runs of separators between digits
    ("", "1-"),
    ("", "4111 "),
    ("", " -/."),  # separators only
    ("", "@"),  # many '@'
    ("", "a@"),
    ("", "a."),
    ("", "a", "@example.com"),  # a local part longer than any address
    ("", "a", "@"),
    ("x@", "a-", ".com"),  # a domain that never ends
    ("", "+1 "),
    ("", "(1) "),
    ("", "1."),
    ("", "00"),
    ("", "-----BEGIN PRIVATE KEY-----"),  # keys that never end
    ("-----BEGIN RSA PRIVATE KEY-----\n", "QUJD\n"),
    ("", "eyJ"),
    ("", "eyJabcdefgh."),
    ("", "123-45-"),
    ("", "DE89 "),
    ("", "xoxb-"),
    ("sk-", "a"),
    ("", "\\n"),
    ("", "\nsystem:"),
    ("", "you are "),
    ("", "pretend "),
    ("ignore", "!"),  # one verb, then punctuation that a pattern could backtrack over
    ("ignore all ", "'-"),
    ("", "ignore all previous "),
    ("", "#"),
    ("", "<|"),
    ("", "["),
    ("", "QUJD"),  # one long base64 blob
    ("", "ab"),  # one long hex blob
    ("", "vtaber "),  # rot13 trigger words
    ("4111 1111 1111 1111 ", "cvv 123 exp 12/27 "),
    ("card 4111 1111 1111 1111 ", " "),
    ("", "secret "),
    ("aws_secret_access_key=", "A"),
    ("", "AKIA"),
    ("", "SSN "),
    ("", "ssn 1"),
    ("", "Tel "),
    ("", "call 0"),
    ("", "ORD-"),
    ("", "competitorshop "),
]


@pytest.mark.parametrize("case", ADVERSARIAL, ids=lambda c: repr("".join(c))[:40])
def test_scan_is_linear_on_adversarial_input(case: tuple[str, ...]) -> None:
    assert_linear(*case)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(ATOMS), min_size=1, max_size=6).map("".join))
def test_scan_is_linear_on_random_repetitions(unit: str) -> None:
    assert_linear("", unit)
