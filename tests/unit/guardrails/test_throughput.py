"""scan() throughput on 100 KB of mixed e-commerce support text, all detectors on.

The text is the labelled corpus (support messages in several languages with
cards, IBANs, phones, e-mails, secrets, hard negatives and injection attempts)
repeated to 100 KB: far denser in candidates than real traffic, so the figure
is a pessimistic one. ``pytest -s`` prints it; the test fails only on a
regression of an order of magnitude (the figure in the detectors docstring was
measured on a 2-vCPU VM shared with other work).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from extproc.guardrails import DETECTORS, scan

CORPUS = Path(__file__).with_name("corpus.jsonl")
SIZE = 100_000
LIMIT_US_PER_KB = 10_000.0


def mixed_text() -> str:
    lines = [json.loads(line)["text"] for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    text = "\n".join(lines)
    while len(text) < SIZE:
        text += "\n" + text
    return text[:SIZE]


def test_throughput_on_100kb_of_mixed_text() -> None:
    text = mixed_text()
    findings = scan(text, DETECTORS, deny_keywords=["competitorshop"])
    assert len(findings) > 500, "the benchmark text should be full of findings"
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        scan(text, DETECTORS, deny_keywords=["competitorshop"])
        best = min(best, time.perf_counter() - start)
    per_kb = best * 1e6 / (len(text) / 1000)
    print(f"\nscan(), all detectors, {len(text) // 1000} KB mixed text: {best * 1e3:.1f} ms = {per_kb:.0f} µs/KB")
    assert per_kb < LIMIT_US_PER_KB, f"{per_kb:.0f} µs/KB"
