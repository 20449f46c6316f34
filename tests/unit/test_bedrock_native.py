"""Bedrock-native pass-through: usage read from answers and from relayed streams."""

from __future__ import annotations

import base64
import json

from bedrock_emulator.eventstream import event_frame, exception_frame
from extproc.translate.bedrock_native import EventStreamMeter, answer_usage
from extproc.usage import Usage


def chunk(event: dict) -> bytes:
    return event_frame("chunk", {"bytes": base64.b64encode(json.dumps(event).encode()).decode()})


def test_a_non_claude_invoke_stream_completes_on_its_metrics() -> None:
    meter = EventStreamMeter("invoke-with-response-stream")
    stream = chunk({"contentBlockDelta": {"delta": {"text": "hi"}}}) + chunk(
        {"messageStop": {}, "amazon-bedrock-invocationMetrics": {"inputTokenCount": 7, "outputTokenCount": 3}})
    for i in range(len(stream)):
        assert meter.feed(stream[i:i + 1]) == b""
    meter.finish()
    assert meter.complete and meter.error is None
    assert meter.usage == Usage(input=7, output=3)


def test_converse_stream_usage_and_errors() -> None:
    meter = EventStreamMeter("converse-stream")
    meter.feed(event_frame("messageStart", {"role": "assistant"}) + event_frame("metadata", {
        "usage": {"inputTokens": 10, "outputTokens": 4, "cacheReadInputTokens": 100}, "metrics": {"latencyMs": 1}}))
    assert meter.complete and meter.usage == Usage(input=10, output=4, cache_read=100)
    broken = EventStreamMeter("converse-stream")
    broken.feed(event_frame("messageStart", {"role": "assistant"}) + exception_frame("throttlingException", "slow"))
    broken.finish()
    assert broken.error == "throttlingException" and not broken.complete
    cut = EventStreamMeter("invoke-with-response-stream")
    cut.feed(chunk({"type": "message_start", "message": {"usage": {"input_tokens": 5}}}))
    cut.finish()
    assert cut.error == "stream_truncated" and cut.usage.input == 5


def test_answer_usage_per_action() -> None:
    claude = json.dumps({"usage": {"input_tokens": 3, "output_tokens": 2, "cache_read_input_tokens": 9}}).encode()
    assert answer_usage("invoke", True, {}, json.loads(claude)) == Usage(input=3, output=2, cache_read=9)
    headers = {"x-amzn-bedrock-input-token-count": "11", "x-amzn-bedrock-output-token-count": "5"}
    assert answer_usage("invoke", False, headers, {"results": []}) == Usage(input=11, output=5)
    converse = json.dumps({"usage": {"inputTokens": 8, "outputTokens": 1, "totalTokens": 9}}).encode()
    assert answer_usage("converse", False, {}, json.loads(converse)) == Usage(input=8, output=1)
    assert answer_usage("count-tokens", True, {}, {"inputTokens": 50}) == Usage()
