"""OpenAI Chat Completions ⇄ Bedrock Converse translation, against golden data.

Each golden file holds an OpenAI request and, when present, the Converse body
it must become (``converse_request``) and Converse answers with the
``chat.completion`` and usage each must become (``responses``).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import botocore
import pytest
from openai.types.chat import ChatCompletion

from extproc.errors import Api, GatewayError
from extproc.translate import openai_converse
from extproc.usage import Usage

GOLDEN = Path(__file__).parent / "golden" / "openai_converse"
CASES = {path.stem: json.loads(path.read_text()) for path in sorted(GOLDEN.glob("*.json"))}
REQUEST_CASES = [name for name, case in CASES.items() if "converse_request" in case]
RESPONSE_CASES = [
    pytest.param(name, i, id=f"{name}[{i}]")
    for name, case in CASES.items()
    for i in range(len(case.get("responses", [])))
]


def _raw(request: dict[str, Any]) -> bytes:
    return json.dumps(request, ensure_ascii=False).encode()


def test_golden_data_is_there() -> None:
    assert len(REQUEST_CASES) >= 20
    assert len(RESPONSE_CASES) >= 15


@pytest.mark.parametrize("name", REQUEST_CASES)
def test_golden_request(name: str) -> None:
    case = CASES[name]
    request = openai_converse.parse_request(_raw(case["request"]))
    if "parsed" in case:
        parsed = case["parsed"]
        assert (request.model, request.stream, request.include_usage, request.user) == (
            parsed["model"], parsed["stream"], parsed["include_usage"], parsed["user"]
        )
    body = openai_converse.to_converse_body(request, max_temperature=case.get("max_temperature", 1.0))
    assert json.loads(body) == case["converse_request"]
    assert b"\\u" not in body, "non-ASCII text is sent as UTF-8, not escaped"
    compact = json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False).encode()
    assert body == compact, "the body is compact JSON"


@pytest.mark.parametrize(("name", "index"), RESPONSE_CASES)
def test_golden_response(name: str, index: int) -> None:
    case = CASES[name]
    golden = case["responses"][index]
    expected = golden["chat_completion"]
    request = openai_converse.parse_request(_raw(case["request"]))
    body, usage = openai_converse.from_converse_response(
        json.dumps(golden["converse_response"]).encode(),
        request=request,
        model=expected["model"],
        completion_id=expected["id"],
        created=expected["created"],
    )
    assert json.loads(body) == expected
    assert usage == Usage(**golden["usage"])
    assert b"\\u" not in body, "non-ASCII text is returned as UTF-8, not escaped"
    ChatCompletion.model_validate(json.loads(body))  # the OpenAI SDK accepts it


def test_finish_reasons_cover_every_bedrock_stop_reason() -> None:
    model = Path(botocore.__file__).parent / "data" / "bedrock-runtime" / "2023-09-30" / "service-2.json.gz"
    stop_reasons = json.loads(gzip.decompress(model.read_bytes()))["shapes"]["StopReason"]["enum"]
    assert set(openai_converse.FINISH_REASONS) == set(stop_reasons)
    assert set(openai_converse.FINISH_REASONS.values()) <= {"stop", "length", "tool_calls", "content_filter"}


def test_golden_responses_exercise_every_stop_reason() -> None:
    seen = {
        response["converse_response"]["stopReason"]
        for case in CASES.values()
        for response in case.get("responses", [])
    }
    assert set(openai_converse.FINISH_REASONS) <= seen


def test_golden_requests_exercise_every_tool_choice() -> None:
    seen = {json.dumps(case["request"].get("tool_choice")) for case in CASES.values()}
    assert {'"auto"', '"required"', '"none"', '{"type": "function", "function": {"name": "web-search"}}'} <= seen


def _request(**fields: Any) -> dict[str, Any]:
    return {"model": "haiku", "messages": [{"role": "user", "content": "hi"}], **fields}


USER = {"role": "user", "content": "hi"}
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def _calls(arguments: Any, **call: Any) -> dict[str, Any]:
    """An assistant message with one tool call."""
    base = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}
    return {"role": "assistant", "content": None, "tool_calls": [{**base, **call}]}


def _image(url: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}


BAD_REQUESTS: list[tuple[str, bytes | dict[str, Any], str | None]] = [
    ("not json", b"{not json", None),
    ("not an object", b"[1, 2]", None),
    ("NaN is not JSON", b'{"messages": [{"role": "user", "content": "x"}], "temperature": NaN}', None),
    ("model not a string", _request(model=5), "model"),
    ("model empty", _request(model=""), "model"),
    ("messages missing", {"model": "haiku"}, "messages"),
    ("messages empty", _request(messages=[]), "messages"),
    ("messages not a list", _request(messages="hi"), "messages"),
    ("only system messages", _request(messages=[{"role": "system", "content": "be brief"}]), "messages"),
    ("message not an object", _request(messages=["hi"]), "messages[0]"),
    ("message without role", _request(messages=[{"content": "hi"}]), "messages[0].role"),
    ("unknown role", _request(messages=[USER, {"role": "robot", "content": "x"}]), "messages[1].role"),
    ("function role", _request(messages=[USER, {"role": "function", "name": "f", "content": "x"}]), "messages[1].role"),
    ("content a number", _request(messages=[{"role": "user", "content": 5}]), "messages[0].content"),
    ("content missing", _request(messages=[{"role": "user"}]), "messages[0].content"),
    ("user turn empty", _request(messages=[{"role": "user", "content": ""}]), "messages[0].content"),
    ("user turn of empty parts",
     _request(messages=[{"role": "system", "content": "s"},
                        {"role": "user", "content": [{"type": "text", "text": ""}]}]),
     "messages[1].content"),
    ("part not an object", _request(messages=[{"role": "user", "content": ["hi"]}]), "messages[0].content[0]"),
    ("text part without text", _request(messages=[{"role": "user", "content": [{"type": "text"}]}]),
     "messages[0].content[0].text"),
    ("audio part", _request(messages=[{"role": "user", "content": [
        {"type": "text", "text": "listen"},
        {"type": "input_audio", "input_audio": {"data": "AA==", "format": "wav"}}]}]),
     "messages[0].content[1].type"),
    ("file part", _request(messages=[{"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]}]),
     "messages[0].content[0].type"),
    ("image part without image_url", _request(messages=[{"role": "user", "content": [{"type": "image_url"}]}]),
     "messages[0].content[0].image_url"),
    ("remote image", _request(messages=[_image("https://example.com/cat.png")]),
     "messages[0].content[0].image_url.url"),
    ("remote image, http", _request(messages=[_image("HTTP://169.254.169.254/latest")]),
     "messages[0].content[0].image_url.url"),
    ("image type", _request(messages=[_image("data:image/bmp;base64,Qk0=")]), "messages[0].content[0].image_url.url"),
    ("image not base64", _request(messages=[_image("data:image/png;base64,not base64!")]),
     "messages[0].content[0].image_url.url"),
    ("image base64 with a space", _request(messages=[_image("data:image/png;base64,iVBORw0K Ggo=")]),
     "messages[0].content[0].image_url.url"),
    ("image bad padding", _request(messages=[_image("data:image/png;base64,iVBORw0KGgo")]),
     "messages[0].content[0].image_url.url"),
    ("image data url not base64", _request(messages=[_image("data:image/png,rawbytes")]),
     "messages[0].content[0].image_url.url"),
    ("image empty", _request(messages=[_image("data:image/png;base64,")]), "messages[0].content[0].image_url.url"),
    ("image file path", _request(messages=[_image("file:///etc/passwd")]), "messages[0].content[0].image_url.url"),
    ("image in system message",
     _request(messages=[{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}, USER]),
     "messages[0].content[0].type"),
    ("system content a number", _request(messages=[{"role": "system", "content": 5}, USER]), "messages[0].content"),
    ("starts with the assistant",
     _request(messages=[{"role": "system", "content": "s"}, {"role": "assistant", "content": "hello"}, USER]),
     "messages[1].role"),
    ("assistant content a number", _request(messages=[USER, {"role": "assistant", "content": 5}]),
     "messages[1].content"),
    ("assistant image part", _request(messages=[USER, {"role": "assistant", "content": [{"type": "image_url"}]}]),
     "messages[1].content[0].type"),
    ("assistant audio", _request(messages=[USER, {"role": "assistant", "content": "x", "audio": {"id": "a1"}}]),
     "messages[1].audio"),
    ("arguments not JSON", _request(messages=[USER, _calls("{city: Paris}")]),
     "messages[1].tool_calls[0].function.arguments"),
    ("arguments not an object", _request(messages=[USER, _calls("[1, 2]")]),
     "messages[1].tool_calls[0].function.arguments"),
    ("arguments not a string", _request(messages=[USER, _calls({"city": "Paris"})]),
     "messages[1].tool_calls[0].function.arguments"),
    ("tool_calls not a list", _request(messages=[USER, {"role": "assistant", "tool_calls": {"id": "x"}}]),
     "messages[1].tool_calls"),
    ("tool call without id", _request(messages=[USER, _calls("{}", id=None)]), "messages[1].tool_calls[0].id"),
    ("tool call custom", _request(messages=[USER, _calls("{}", type="custom")]), "messages[1].tool_calls[0].type"),
    ("tool call without name", _request(messages=[USER, _calls("{}", function={"arguments": "{}"})]),
     "messages[1].tool_calls[0].function.name"),
    ("tool message without id", _request(messages=[USER, _calls("{}"), {"role": "tool", "content": "18"}]),
     "messages[2].tool_call_id"),
    ("tool message answering nothing",
     _request(messages=[USER, _calls("{}"), {"role": "tool", "tool_call_id": "x", "content": "18"}]),
     "messages[2].tool_call_id"),
    ("tool message answering twice", _request(messages=[
        USER, _calls("{}"), {"role": "tool", "tool_call_id": "call_1", "content": "1"},
        {"role": "tool", "tool_call_id": "call_1", "content": "2"}]), "messages[3].tool_call_id"),
    ("tool message first", _request(messages=[{"role": "tool", "tool_call_id": "call_1", "content": "18"}]),
     "messages[0].tool_call_id"),
    ("tool message image part", _request(messages=[USER, _calls("{}"), {"role": "tool", "tool_call_id": "call_1",
                                                                        "content": [{"type": "image_url"}]}]),
     "messages[2].content[0].type"),
    ("max_tokens zero", _request(max_tokens=0), "max_tokens"),
    ("max_tokens a string", _request(max_tokens="10"), "max_tokens"),
    ("max_tokens a boolean", _request(max_tokens=True), "max_tokens"),
    ("max_completion_tokens a float", _request(max_completion_tokens=1.5), "max_completion_tokens"),
    ("max token fields disagree", _request(max_tokens=10, max_completion_tokens=20), "max_completion_tokens"),
    ("temperature a string", _request(temperature="0.5"), "temperature"),
    ("temperature negative", _request(temperature=-0.1), "temperature"),
    ("temperature above the model's maximum", _request(temperature=1.5), "temperature"),
    ("top_p above 1", _request(top_p=1.5), "top_p"),
    ("top_p a string", _request(top_p="high"), "top_p"),
    ("stop a number", _request(stop=5), "stop"),
    ("stop too many", _request(stop=["a", "b", "c", "d", "e"]), "stop"),
    ("stop not a string", _request(stop=["a", 3]), "stop[1]"),
    ("stop empty string", _request(stop=""), "stop"),
    ("stop empty in list", _request(stop=["a", ""]), "stop[1]"),
    ("tools not a list", _request(tools={"type": "function"}), "tools"),
    ("tool not an object", _request(tools=["get_weather"]), "tools[0]"),
    ("custom tool", _request(tools=[{"type": "custom", "custom": {"name": "x"}}]), "tools[0].type"),
    ("tool without function", _request(tools=[{"type": "function"}]), "tools[0].function"),
    ("tool name with a space", _request(tools=[{"type": "function", "function": {"name": "get weather"}}]),
     "tools[0].function.name"),
    ("tool name too long", _request(tools=[{"type": "function", "function": {"name": "x" * 65}}]),
     "tools[0].function.name"),
    ("tool declared twice", _request(tools=[WEATHER, WEATHER]), "tools[1].function.name"),
    ("tool parameters a string", _request(tools=[{"type": "function", "function": {"name": "f", "parameters": "{}"}}]),
     "tools[0].function.parameters"),
    ("tool description a number", _request(tools=[{"type": "function", "function": {"name": "f", "description": 5}}]),
     "tools[0].function.description"),
    ("tool_choice without tools", _request(tool_choice="auto"), "tool_choice"),
    ("tool_choice none without tools", _request(tool_choice="none"), "tool_choice"),
    ("tool_choice unknown", _request(tools=[WEATHER], tool_choice="sometimes"), "tool_choice"),
    ("tool_choice unknown function",
     _request(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "f"}}),
     "tool_choice.function.name"),
    ("tool_choice function without name", _request(tools=[WEATHER], tool_choice={"type": "function"}),
     "tool_choice.function.name"),
    ("tool_choice allowed_tools", _request(tools=[WEATHER], tool_choice={
        "type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}), "tool_choice"),
    ("response_format a string", _request(response_format="json"), "response_format"),
    ("response_format unknown type", _request(response_format={"type": "xml"}), "response_format.type"),
    ("json output with tools", _request(tools=[WEATHER], response_format={"type": "json_object"}), "response_format"),
    ("json_schema missing", _request(response_format={"type": "json_schema"}), "response_format.json_schema"),
    ("json_schema name", _request(response_format={"type": "json_schema", "json_schema": {"name": "my schema"}}),
     "response_format.json_schema.name"),
    ("json_schema schema a string",
     _request(response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": "{}"}}),
     "response_format.json_schema.schema"),
    ("json_schema root array", _request(response_format={"type": "json_schema", "json_schema": {
        "name": "s", "schema": {"type": "array", "items": {"type": "string"}}}}), "response_format.json_schema.schema"),
    ("json_schema strict a string",
     _request(response_format={"type": "json_schema", "json_schema": {"name": "s", "strict": "yes"}}),
     "response_format.json_schema.strict"),
    ("n above 1", _request(n=2), "n"),
    ("n zero", _request(n=0), "n"),
    ("stream a string", _request(stream="yes"), "stream"),
    ("stream_options without stream", _request(stream_options={"include_usage": True}), "stream_options"),
    ("stream_options not an object", _request(stream=True, stream_options=True), "stream_options"),
    ("include_usage a string", _request(stream=True, stream_options={"include_usage": "yes"}),
     "stream_options.include_usage"),
    ("user a number", _request(user=5), "user"),
    ("logprobs", _request(logprobs=True), "logprobs"),
    ("logprobs a string", _request(logprobs="false"), "logprobs"),
    ("top_logprobs", _request(top_logprobs=3), "top_logprobs"),
    ("logit_bias", _request(logit_bias={"50256": -100}), "logit_bias"),
    ("presence_penalty", _request(presence_penalty=0.5), "presence_penalty"),
    ("frequency_penalty", _request(frequency_penalty=-1), "frequency_penalty"),
    ("seed", _request(seed=42), "seed"),
    ("audio", _request(audio={"voice": "alloy", "format": "wav"}), "audio"),
    ("modalities audio", _request(modalities=["text", "audio"]), "modalities"),
    ("prediction", _request(prediction={"type": "content", "content": "x"}), "prediction"),
    ("functions", _request(functions=[{"name": "f"}]), "functions"),
    ("function_call", _request(function_call="auto"), "function_call"),
    ("web_search_options", _request(web_search_options={}), "web_search_options"),
    ("reasoning_effort", _request(reasoning_effort="high"), "reasoning_effort"),
    ("verbosity", _request(verbosity="low"), "verbosity"),
    ("moderation", _request(moderation={"model": "omni-moderation-latest"}), "moderation"),
    ("parallel_tool_calls false with tools", _request(tools=[WEATHER], parallel_tool_calls=False),
     "parallel_tool_calls"),
    ("parallel_tool_calls a string", _request(parallel_tool_calls="no"), "parallel_tool_calls"),
]
UNSUPPORTED_PARAMS = {
    "logprobs", "top_logprobs", "logit_bias", "presence_penalty", "frequency_penalty", "seed", "audio", "modalities",
    "prediction", "functions", "function_call", "web_search_options", "reasoning_effort", "verbosity", "moderation",
    "n",
}


@pytest.mark.parametrize(("raw", "param"), [pytest.param(raw, param, id=name) for name, raw, param in BAD_REQUESTS])
def test_bad_requests_are_400_naming_the_field(raw: bytes | dict[str, Any], param: str | None) -> None:
    with pytest.raises(GatewayError) as info:
        request = openai_converse.parse_request(raw if isinstance(raw, bytes) else _raw(raw))
        openai_converse.to_converse_body(request)
    assert info.value.status == 400
    assert info.value.param == param
    if param:
        assert info.value.message.startswith(param + ":")
    if param in UNSUPPORTED_PARAMS and isinstance(raw, dict) and raw[param] not in ("false", 0):
        assert "Bedrock does not support" in info.value.message
    status, _, body = info.value.render(Api.OPENAI)
    assert status == 400
    assert json.loads(body)["error"]["param"] == param


def test_remote_image_refusal_says_why() -> None:
    with pytest.raises(GatewayError) as info:
        openai_converse.parse_request(_raw(_request(messages=[_image("https://example.com/cat.png")])))
    assert "server-side request forgery" in info.value.message
    assert "data: URL" in info.value.message


def test_first_assistant_refusal_says_why() -> None:
    with pytest.raises(GatewayError) as info:
        openai_converse.parse_request(_raw(_request(messages=[{"role": "assistant", "content": "Hi!"}, USER])))
    assert "must start with a user message" in info.value.message


def test_temperature_ceiling_is_the_models() -> None:
    request = openai_converse.parse_request(_raw(_request(temperature=1.5)))
    assert json.loads(openai_converse.to_converse_body(request, max_temperature=2.0))["inferenceConfig"] == {
        "temperature": 1.5
    }
    with pytest.raises(GatewayError) as info:
        openai_converse.to_converse_body(request, max_temperature=1.0)
    assert info.value.param == "temperature"
    assert "between 0 and 1" in info.value.message


def test_request_built_without_parse_request_is_translated() -> None:
    request = openai_converse.ChatRequest(
        model=None, stream=False, include_usage=False, user=None,
        body={"messages": [{"role": "developer", "content": "x"}, USER], "max_tokens": 5},
    )
    assert json.loads(openai_converse.to_converse_body(request)) == {
        "system": [{"text": "x"}],
        "messages": [{"role": "user", "content": [{"text": "hi"}]}],
        "inferenceConfig": {"maxTokens": 5},
    }
    bad = openai_converse.ChatRequest(model=None, stream=False, include_usage=False, user=None, body={"messages": []})
    with pytest.raises(GatewayError):
        openai_converse.to_converse_body(bad)


def test_user_is_never_sent_upstream() -> None:
    request = openai_converse.parse_request(_raw(_request(user="alice@example.com")))
    assert request.user == "alice@example.com"
    assert b"alice" not in openai_converse.to_converse_body(request)


def test_unpaired_surrogate_still_gives_valid_json() -> None:
    request = openai_converse.parse_request(b'{"messages": [{"role": "user", "content": "a\\ud800b"}]}')
    body = openai_converse.to_converse_body(request)
    assert json.loads(body)["messages"][0]["content"] == [{"text": "a\ud800b"}]


@pytest.mark.parametrize(
    "raw",
    [b"<html>oops</html>", b"[]", b'{"output": {}}', b'{"output": {"message": {"content": "text"}}}', b""],
)
def test_unreadable_converse_answer_is_502(raw: bytes) -> None:
    request = openai_converse.parse_request(_raw(_request()))
    with pytest.raises(GatewayError) as info:
        openai_converse.from_converse_response(raw, request=request, model="haiku", completion_id="c", created=1)
    assert info.value.status == 502


def test_answer_without_usage_counts_zero() -> None:
    request = openai_converse.parse_request(_raw(_request()))
    raw = json.dumps({"output": {"message": {"role": "assistant", "content": [{"text": "ok"}]}},
                      "stopReason": "end_turn"}).encode()
    body, usage = openai_converse.from_converse_response(raw, request=request, model="haiku", completion_id="c",
                                                         created=1)
    assert usage == Usage()
    assert json.loads(body)["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0,
                                         "prompt_tokens_details": {"cached_tokens": 0}}
    ChatCompletion.model_validate(json.loads(body))
