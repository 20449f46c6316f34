"""Constants and small helpers shared by the emulator tests (imported, not fixtures)."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHARED_TESTDATA = PROJECT_ROOT.parent / "shared" / "testdata"

REGION = "us-east-1"
DEV_KEY = ("AKIDEMULATOR00000000", "emulator/local/development/secret/key/00")
# A second, temporary-credential style key that only works with its session token.
STS_KEY = ("ASIAEMULATORSESSION1", "session/secret/for/tests/only/0000000000", "session-token-for-tests-only-0001")

HAIKU = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
HAIKU_BASE = "anthropic.claude-haiku-4-5-20251001-v1:0"
ANTHROPIC_VERSION = "bedrock-2023-05-31"


def user(text: str) -> list[dict[str, Any]]:
    """A one-turn Converse conversation."""
    return [{"role": "user", "content": [{"text": text}]}]


def invoke_body(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "anthropic_version": ANTHROPIC_VERSION,
        "max_tokens": 256,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


@dataclass(frozen=True)
class Emulator:
    url: str
    log_path: Path

    def requests(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/_emulator/requests", timeout=5) as response:
            return json.loads(response.read())

    def clear(self) -> None:
        request = urllib.request.Request(f"{self.url}/_emulator/requests", method="DELETE")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8")
