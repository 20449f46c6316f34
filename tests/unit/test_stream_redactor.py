"""Answer guardrails on a stream: whatever the split, a card never gets out, and text keeps flowing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.config import GuardrailPolicy
from extproc.guardrails.enforce import Guard, Outcome, StreamRedactor

from .guardrails.test_enforce import DEFAULT_POLICY, EVERYTHING, unfiltered
from .guardrails.test_prefilters import texts

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


def test_streamed_tool_arguments_are_redacted_and_stay_json() -> None:
    """A card in a tool call's input, split over fragments, in all three stream translators."""
    import base64
    import json as _json

    from bedrock_emulator.eventstream import event_frame
    from extproc.translate import openai_converse
    from extproc.translate.anthropic_stream import InvokeStreamToSSE
    from extproc.translate.bedrock_native import EventStreamMeter
    from extproc.translate.openai_converse_stream import ConverseStreamToChunks

    arguments = '{"note": "charge 4111 1111 1111 1111 today", "amount": 12}'
    fragments = [arguments[i:i + 7] for i in range(0, len(arguments), 7)]

    def make() -> StreamRedactor:
        return StreamRedactor(GUARD, Outcome(), "answer")

    def chunk(event: dict) -> bytes:
        return event_frame("chunk", {"bytes": base64.b64encode(_json.dumps(event).encode()).decode()})

    anthropic_events = [
        {"type": "message_start", "message": {"usage": {"input_tokens": 3}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "t", "name": "pay"}},
        *({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": f}}
          for f in fragments),
        {"type": "content_block_stop", "index": 0},
        {"type": "message_stop"},
    ]
    sse = InvokeStreamToSSE(make).feed(b"".join(chunk(e) for e in anthropic_events)).decode()
    joined = "".join(_json.loads(line[6:])["delta"]["partial_json"] for line in sse.splitlines()
                     if line.startswith("data: ") and "input_json_delta" in line)
    assert _json.loads(joined) == {"note": "charge [CARD ••••1111] today", "amount": 12}

    converse = [event_frame("messageStart", {"role": "assistant"}),
                event_frame("contentBlockStart", {"contentBlockIndex": 0, "start": {"toolUse": {
                    "toolUseId": "t", "name": "pay"}}}),
                *(event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": f}}})
                  for f in fragments),
                event_frame("contentBlockStop", {"contentBlockIndex": 0}),
                event_frame("messageStop", {"stopReason": "tool_use"})]
    request = openai_converse.parse_request(b'{"messages":[{"role":"user","content":"pay"}],"stream":true}')
    chunks = ConverseStreamToChunks(request, model="m", completion_id="c", created=1, redactor=make())
    out = (chunks.feed(b"".join(converse)) + chunks.finish()).decode()
    args = "".join(tc["function"].get("arguments", "") for line in out.splitlines() if line.startswith("data: {")
                   for choice in _json.loads(line[6:]).get("choices", [])
                   for tc in choice["delta"].get("tool_calls", []))
    assert _json.loads(args) == {"note": "charge [CARD ••••1111] today", "amount": 12}

    from extproc.bedrock.eventstream import Decoder
    meter = EventStreamMeter("converse-stream", make)
    relayed = meter.feed(b"".join(converse))
    inputs = "".join(_json.loads(f.payload)["delta"]["toolUse"]["input"] for f in Decoder().feed(relayed)
                     if f.event_type == "contentBlockDelta")
    assert _json.loads(inputs) == {"note": "charge [CARD ••••1111] today", "amount": 12}


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_streaming_with_prefilters_is_streaming_without(data: st.DataObject) -> None:
    """The redactor scans every window with the policy's pre-filtered plan: same output, same record."""
    answer = data.draw(texts())
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(answer)), max_size=12))))
    pieces = [answer[a:b] for a, b in zip([0, *cuts], [*cuts, len(answer)])]
    for policy in (DEFAULT_POLICY, EVERYTHING):
        guard = Guard("p", policy)
        results = []
        for each in (guard, unfiltered(guard)):
            outcome = Outcome()
            redactor = StreamRedactor(each, outcome, "answer")
            released = [redactor.feed(piece) for piece in pieces] + [redactor.flush()]
            results.append((released, outcome.actions, outcome.changed))
        assert results[0] == results[1]
