"""Fault injection through markers written in the prompt.

A test that goes through the whole gateway can only shape what reaches the
emulator through the prompt, so faults are requested there::

    [[emulator:error=ThrottlingException]]        answer that Bedrock error
    [[emulator:slow=300]]                          wait 300 ms before answering and between stream frames
    [[emulator:stream-exception=ThrottlingException]]  a few stream frames, then that exception frame
    [[emulator:drop]]                              a few stream frames, then a TCP abort
    [[emulator:tool]] / [[emulator:tool=NAME]]     answer with a tool call (last user message only)
    [[emulator:words=1500]]                        a long answer: that many extra words (streams: many deltas)
    [[emulator:cache=1000,200]]                    report that many cache-read and cache-write input tokens
    [[emulator:card]]                              the answer quotes a (test) payment card number
    [[emulator:guardrail]]                         a Bedrock Guardrail intervenes (stop reason guardrail_intervened)

Markers are found anywhere in the system prompt or message text (``tool``
only in the last user message). A misspelt marker is a 400, so a test never
passes by accident because its fault was silently ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import BEDROCK_STATUS, validation

# Any kind is matched, so that a misspelt one is reported instead of ignored.
MARKER = re.compile(r"\[\[emulator:([^\]=]*)(?:=([^\]]*))?\]\]")
_MAX_SLOW_MS = 600_000
_MAX_WORDS = 100_000
_CACHE = re.compile(r"^(\d{1,9}),(\d{1,9})$")


@dataclass(frozen=True)
class Markers:
    error: str | None = None  # Bedrock exception name, e.g. "ThrottlingException"
    slow_ms: int = 0
    stream_exception: str | None = None  # exception name, e.g. "ThrottlingException"
    drop: bool = False
    words: int = 0
    cache_read: int = 0
    cache_write: int = 0
    card: bool = False
    guardrail: bool = False


def _exception_name(value: str | None, marker: str) -> str:
    """Accept ``ThrottlingException`` or the stream member spelling ``throttlingException``."""
    name = (value or "")[:1].upper() + (value or "")[1:]
    if name not in BEDROCK_STATUS:
        raise validation(f"Emulator marker [[emulator:{marker}=...]] names an unknown Bedrock exception: {value!r}")
    return name


def scan(text: str) -> Markers:
    error = stream_exception = None
    slow_ms = words = cache_read = cache_write = 0
    drop = card = guardrail = False
    for match in MARKER.finditer(text):
        kind, value = match.group(1), match.group(2)
        if kind == "error":
            error = _exception_name(value, kind)
        elif kind == "stream-exception":
            stream_exception = _exception_name(value, kind)
        elif kind == "slow":
            if value is None or not value.isdigit() or int(value) > _MAX_SLOW_MS:
                raise validation(
                    f"Emulator marker [[emulator:slow=MS]] needs milliseconds up to {_MAX_SLOW_MS}, got {value!r}"
                )
            slow_ms = int(value)
        elif kind == "drop" and value is None:
            drop = True
        elif kind == "card" and value is None:
            card = True
        elif kind == "guardrail" and value is None:
            guardrail = True
        elif kind == "words":
            if value is None or not value.isdigit() or not 0 < int(value) <= _MAX_WORDS:
                raise validation(f"Emulator marker [[emulator:words=N]] needs 1 to {_MAX_WORDS} words, got {value!r}")
            words = int(value)
        elif kind == "cache":
            cache = _CACHE.match(value or "")
            if cache is None:
                raise validation(f"Emulator marker [[emulator:cache=READ,WRITE]] needs two token counts, got {value!r}")
            cache_read, cache_write = int(cache.group(1)), int(cache.group(2))
        elif kind != "tool":
            raise validation(f"Unknown emulator marker: {match.group(0)}")
    return Markers(error, slow_ms, stream_exception, drop, words, cache_read, cache_write, card, guardrail)


def requested_tool(last_user_text: str) -> str | None:
    """``""`` for "the first tool", a name for that tool, ``None`` for no tool call."""
    for match in MARKER.finditer(last_user_text):
        if match.group(1) == "tool":
            return match.group(2) or ""
    return None


def strip(text: str) -> str:
    return " ".join(MARKER.sub(" ", text).split())


def stream_member(exception: str) -> str:
    """``ThrottlingException`` → ``throttlingException``, the event stream union member."""
    return exception[:1].lower() + exception[1:]
