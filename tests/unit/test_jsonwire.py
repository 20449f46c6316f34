"""jsonwire: orjson where it gives the standard library's answer, the standard library where it would not."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc import jsonwire
from extproc.errors import GatewayError

# What a JSON document can hold once parsed: big integers and unpaired surrogates included.
_SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2**100), max_value=2**100)
            | st.floats(allow_nan=False, allow_infinity=False) | st.text())
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(_VALUES)
def test_a_value_written_and_read_again_is_the_same_value(value: Any) -> None:
    written = jsonwire.dumps(value)
    assert json.loads(written) == value  # what the standard library reads from it
    assert jsonwire.load(written) == value


@settings(max_examples=300, deadline=None)
@given(_VALUES)
def test_parsing_gives_what_the_standard_library_gives(value: Any) -> None:
    text = json.dumps(value)  # ASCII, with \\u escapes for every non-ASCII character and surrogate
    assert jsonwire.load(text.encode()) == json.loads(text)


def test_integers_beyond_64_bits_stay_exact() -> None:
    body = b'{"id": 123456789012345678901234567890, "n": -18446744073709551617}'
    assert jsonwire.load(body) == {"id": 123456789012345678901234567890, "n": -18446744073709551617}
    assert jsonwire.dumps({"id": 2**70}) == b'{"id":1180591620717411303424}'
    # The boundaries of what orjson holds: 2**64 - 1 and -2**63 (19 digits below zero already overflow).
    assert jsonwire.load(b'[18446744073709551616, -9223372036854775809, -9999999999999999999]') == [
        2**64, -(2**63) - 1, -(10**19) + 1]
    assert jsonwire.load_answer(b'{"n": -9223372036854775809}') == {"n": -(2**63) - 1}


def test_unpaired_surrogates_are_kept_escaped() -> None:
    assert jsonwire.load(b'{"a": "\\ud800x"}') == {"a": "\ud800x"}
    assert jsonwire.dumps({"a": "\ud800x"}) == b'{"a":"\\ud800x"}'


@pytest.mark.parametrize(("body", "message"), [
    (b"NaN", "NaN is not a JSON value"),
    (b'{"t": Infinity}', "Infinity is not a JSON value"),
    (b"[1e400]", "the number 1e400 is out of range"),
    (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    (b'{"a": 1} x', "not valid JSON"),
    (b'"\xff"', "not valid JSON"),
])
def test_what_is_not_json_is_a_400_saying_why(body: bytes, message: str) -> None:
    with pytest.raises(GatewayError, match=message) as raised:
        jsonwire.load(body)
    assert raised.value.status == 400


def test_an_answer_that_is_not_json_is_none() -> None:
    assert jsonwire.load_answer(b"<html>") is None
    assert jsonwire.load_answer(b"[" * 5000 + b"]" * 5000) is None


def test_an_answer_is_read_leniently_so_its_guardrails_and_usage_still_apply() -> None:
    """A model may write 1e400 or NaN into a tool input: the answer is still read (and inspected, and
    metered), as the standard library reads it."""
    answer = jsonwire.load_answer(b'{"content": [{"type": "tool_use", "input": {"n": 1e400, "m": NaN}}],'
                                  b' "usage": {"input_tokens": 3}}')
    assert answer is not None and answer["usage"] == {"input_tokens": 3}
    assert jsonwire.load_answer(b'{"usage": {"input_tokens": 3}}') == {"usage": {"input_tokens": 3}}


def test_output_is_compact_utf8() -> None:
    assert jsonwire.dumps({"a": [1, 2.5, None, True], "é": "ü"}) == '{"a":[1,2.5,null,true],"é":"ü"}'.encode()
