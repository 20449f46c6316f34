"""Precision and recall of every detector on the labelled corpus, against fixed thresholds.

``corpus.jsonl`` holds one case per line: ``text``, ``expected`` (a list of
``{"detector": ..., "match": <exact substring>}``; injection is labelled per
case, without ``match``), optional ``deny_keywords`` / ``deny_patterns``, a
``note``, and for the two blocks written after the first round of tuning a
``split`` ("holdout", "holdout2"; their first-contact scores are in the
detectors module docstring). Every case is scanned with all detectors on. A finding counts as a
true positive when an expected entry has the same detector and exactly the
same substring (each expected entry can be used once); every other finding
is a false positive, every unused expected entry a miss.

Run ``pytest -s tests/unit/guardrails/test_corpus.py`` to see the table.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from extproc.guardrails import DETECTORS, scan

CORPUS = Path(__file__).with_name("corpus.jsonl")

# detector -> (minimum precision, minimum recall); documented in extproc/guardrails/detectors.py.
THRESHOLDS: dict[str, tuple[float, float]] = {
    "card": (1.0, 1.0),
    "card_security": (0.95, 0.95),
    "iban": (1.0, 1.0),
    "ssn": (1.0, 1.0),
    "email": (0.99, 0.99),
    "phone": (0.95, 0.95),
    "aws_access_key": (1.0, 1.0),
    "aws_secret_key": (0.95, 0.95),
    "private_key": (1.0, 1.0),
    "api_token": (0.95, 0.95),
    "deny": (1.0, 1.0),
    "injection": (0.9, 0.9),
}

# Enough labelled positives that a threshold means something.
MIN_POSITIVES: dict[str, int] = {
    "card": 40,
    "card_security": 20,
    "iban": 15,
    "ssn": 10,
    "email": 25,
    "phone": 40,
    "aws_access_key": 5,
    "aws_secret_key": 5,
    "private_key": 5,
    "api_token": 15,
    "deny": 5,
    "injection": 40,
}


@dataclass
class Tally:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    misses: list[str] = field(default_factory=list)
    false_alarms: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


def load_corpus() -> list[dict]:
    with CORPUS.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def evaluate(cases: list[dict]) -> dict[str, Tally]:
    tallies = {name: Tally() for name in DETECTORS}
    for case in cases:
        text = case["text"]
        findings = scan(
            text,
            DETECTORS,
            deny_keywords=case.get("deny_keywords", ()),
            deny_patterns=[re.compile(p) for p in case.get("deny_patterns", ())],
        )
        expected = Counter(
            (e["detector"], e.get("match")) for e in case["expected"]
        )
        for finding in findings:
            key = (finding.detector, None if finding.detector == "injection" else text[finding.start : finding.end])
            tally = tallies[finding.detector]
            if expected[key] > 0:
                expected[key] -= 1
                tally.tp += 1
            else:
                tally.fp += 1
                tally.false_alarms.append(f"{key[1]!r} in {text[:90]!r}")
        for (detector, match), left in expected.items():
            tallies[detector].fn += left
            tallies[detector].misses.extend([f"{match!r} in {text[:90]!r}"] * left)
    return tallies


def table(tallies: dict[str, Tally]) -> str:
    rows = [f"{'detector':<15} {'precision':>9} {'recall':>7} {'tp':>4} {'fp':>4} {'fn':>4}   threshold P/R"]
    for name in DETECTORS:
        t = tallies[name]
        p_min, r_min = THRESHOLDS[name]
        rows.append(
            f"{name:<15} {t.precision:>9.3f} {t.recall:>7.3f} {t.tp:>4} {t.fp:>4} {t.fn:>4}   {p_min:.2f}/{r_min:.2f}"
        )
    return "\n".join(rows)


def test_corpus_is_well_formed() -> None:
    cases = load_corpus()
    assert len(cases) >= 300, f"only {len(cases)} cases"
    positives = Counter(e["detector"] for case in cases for e in case["expected"])
    for case in cases:
        for entry in case["expected"]:
            assert entry["detector"] in DETECTORS, entry
            if entry["detector"] != "injection":
                assert entry["match"] in case["text"], (entry, case["text"])
    short = {d: positives[d] for d, n in MIN_POSITIVES.items() if positives[d] < n}
    assert not short, f"too few labelled positives: {short}"
    negatives = sum(1 for case in cases if not case["expected"])
    assert negatives >= 120, f"only {negatives} cases without any finding"


def test_precision_and_recall_meet_thresholds() -> None:
    tallies = evaluate(load_corpus())
    report = table(tallies)
    print("\n" + report)
    failures = []
    for name, (p_min, r_min) in THRESHOLDS.items():
        t = tallies[name]
        if t.precision < p_min or t.recall < r_min:
            failures.append(
                f"{name}: precision {t.precision:.3f} (min {p_min}), recall {t.recall:.3f} (min {r_min})\n"
                + "".join(f"    missed {m}\n" for m in t.misses)
                + "".join(f"    false positive {f}\n" for f in t.false_alarms)
            )
    assert not failures, "\n" + report + "\n\n" + "\n".join(failures)


@pytest.mark.parametrize("detector", ["card", "iban", "ssn", "aws_access_key", "private_key"])
def test_exact_detectors_make_no_mistake(detector: str) -> None:
    """The zero-tolerance detectors, listed one by one so a failure names the culprit."""
    tally = evaluate(load_corpus())[detector]
    assert (tally.misses, tally.false_alarms) == ([], [])
