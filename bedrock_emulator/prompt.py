"""One model-neutral view of a request, whichever API it came through.

The Anthropic Messages body (InvokeModel) and the Converse body say the same
things in different shapes. Both parsers reduce a request to a :class:`Prompt`
so that replies, token counts and fault markers are computed once, and the
same conversation gets the same answer and the same input token count
through either API.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Turn:
    role: str  # "user" or "assistant"
    texts: tuple[str, ...]  # every piece of text in the turn, in order


@dataclass(frozen=True)
class Tool:
    name: str
    input_schema: dict[str, Any]


@dataclass(frozen=True)
class Prompt:
    system: tuple[str, ...]
    turns: tuple[Turn, ...]
    tools: tuple[Tool, ...]
    tools_json: str  # the tool definitions as sent, canonical JSON; they cost input tokens
    max_tokens: int
    stop_sequences: tuple[str, ...]

    def all_text(self) -> str:
        """System and message text, where fault markers are looked for."""
        return "\n".join([*self.system, *(text for turn in self.turns for text in turn.texts)])

    def last_user_text(self) -> str:
        for turn in reversed(self.turns):
            if turn.role == "user":
                return "\n".join(turn.texts)
        return ""

    def input_tokens(self) -> int:
        return count_tokens(self.all_text() + self.tools_json)

    def digest(self) -> str:
        """Stable fingerprint of everything that shapes the answer."""
        material = json.dumps(
            [
                self.system,
                [[t.role, t.texts] for t in self.turns],
                self.tools_json,
                self.max_tokens,
                self.stop_sequences,
            ]
        )
        return hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()


def count_tokens(text: str) -> int:
    """About four characters a token, like English text on Claude; never zero."""
    return max(1, math.ceil(len(text) / 4))


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":")) if value else ""
