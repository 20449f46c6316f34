"""The optional audit log: prompts and answers of audited consumers, redacted by their policy, size-capped."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import anthropic
import openai

from devstack import Stack
from extproc.keys import hash_key
from tests.integration.conftest import Keys, record_of

CARD = "4111 1111 1111 1111"


def audit_entries(path: Path, request_id: str, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        found = [e for e in map(json.loads, lines) if e["request_id"] == request_id]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_audit_log_is_redacted_capped_and_per_consumer(make_stack: Callable[..., Stack], keys: Keys,
                                                       tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    stack = make_stack(config={
        "audit": {"file": str(audit), "max_chars": 600},
        "guardrail_policies": {"default": {"detectors": {"card": "redact"}}},
        "policies": {"default": {"models": ["*"], "audit": True}, "haiku-only": {"models": ["haiku"]}},
        "consumers": {"reports": {"policy": "haiku-only", "key_sha256": hash_key(keys.haiku_only)}},
    })
    claude = anthropic.Anthropic(base_url=stack.url, api_key=keys.alpha, max_retries=0)
    raw = claude.messages.with_raw_response.create(model="haiku", max_tokens=100, messages=[
        {"role": "user", "content": f"refund card {CARD} please [[emulator:card]]"}])
    message = raw.parse()
    (entry,) = audit_entries(audit, raw.headers["x-request-id"])
    assert entry["consumer"] == "alpha" and entry["model"] == "haiku" and entry["status"] == 200
    assert CARD not in entry["prompt"] and "[CARD]" in entry["prompt"] and "refund card" in entry["prompt"]
    assert CARD not in entry["answer"] and message.content[0].text[:40] in entry["answer"]  # as the client got it

    # Streams are audited as the client received them; long ones are cut at max_chars.
    with claude.messages.stream(model="haiku", max_tokens=2000, messages=[
            {"role": "user", "content": "tell me a long story [[emulator:words=400]]"}]) as stream:
        text = "".join(stream.text_stream)
        request_id = stream.response.headers["x-request-id"]
    (long,) = audit_entries(audit, request_id)
    assert long["answer_truncated"] is True and len(long["answer"]) == 600
    assert "event: message_start" in long["answer"] and text.split()[0] in long["answer"]

    # A consumer whose policy does not audit leaves no entry (but its usage record, as always).
    chat = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=keys.haiku_only, max_retries=0)
    quiet = chat.chat.completions.with_raw_response.create(model="haiku", messages=[{"role": "user", "content": "hi"}])
    record_of(stack, quiet.headers["x-request-id"])
    assert audit_entries(audit, quiet.headers["x-request-id"], timeout=1) == []
    # Audit entries never reach the usage stream.
    assert '"record":"audit"' not in stack.processes["extproc"].log.read_text()
