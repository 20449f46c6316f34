"""Answer guardrails on a stream: whatever the split, a card never gets out, and text keeps flowing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.config import GuardrailPolicy
from extproc.guardrails.enforce import Guard, Outcome, StreamRedactor

ANSWER = ("Thanks! Your card 4111 1111 1111 1111 exp 12/27 is on file; we will email jane@example.com. "
          + "Some more words follow here. " * 40 + "Second card 5555-5555-5555-4444 at the end")
GUARD = Guard("p", GuardrailPolicy(detectors={"card": "redact", "email": "monitor"}, card_style="last4"))


def run(pieces: list[str]) -> tuple[str, Outcome, list[str]]:
    outcome = Outcome()
    redactor = StreamRedactor(GUARD, outcome, "answer")
    released = [redactor.feed(piece) for piece in pieces]
    released.append(redactor.flush())
    return "".join(released), outcome, released


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(ANSWER) - 1), max_size=60))
def test_no_split_lets_a_card_through(cuts: list[int]) -> None:
    bounds = [0, *sorted(set(cuts)), len(ANSWER)]
    text, outcome, _ = run([ANSWER[a:b] for a, b in zip(bounds, bounds[1:])])
    assert "4111 1111" not in text and "5555-5555" not in text
    assert text.count("[CARD ••••") == 2
    assert "jane@example.com" in text  # monitor only
    assert sorted(a.detector for a in outcome.actions) == ["card", "card", "email"]  # each counted once
    assert text.replace("[CARD ••••1111]", "4111 1111 1111 1111").replace(
        "[CARD ••••4444]", "5555-5555-5555-4444") == ANSWER


def test_text_is_released_with_a_bounded_lag() -> None:
    pieces = [ANSWER[i:i + 5] for i in range(0, len(ANSWER), 5)]
    _, _, released = run(pieces)
    sent = 0
    for i, part in enumerate(released[:-1]):
        sent += len(part)
        received = sum(len(p) for p in pieces[: i + 1])
        assert received - sent <= StreamRedactor.HOLD + 30  # + a held-back finding at most
    assert sum(1 for part in released if part) > 10
