"""server.py's translation between Envoy's ext_proc messages and the gateway's decisions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import botocore.session
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3.processing_mode_pb2 import ProcessingMode
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from prometheus_client import REGISTRY

from extproc.bedrock.credentials import CredentialSource
from extproc.config import load_settings, parse_config
from extproc.gateway import Forward, Gateway, Reply
from extproc.keys import KeyRing, hash_key
from extproc.server import METADATA_NAMESPACE, PHASES, Processor, headers_of, to_response


def _headers(*pairs: tuple[str, str], raw: bool = True) -> pb.HttpHeaders:
    header_map = base_pb2.HeaderMap()
    for key, value in pairs:
        header = header_map.headers.add()
        header.key = key
        if raw:
            header.raw_value = value.encode()
        else:
            header.value = value
    return pb.HttpHeaders(headers=header_map)


def test_headers_become_a_dict_of_lowercase_names() -> None:
    message = _headers((":path", "/v1/messages"), ("X-Api-Key", "k"), ("content-type", "application/json"))
    assert headers_of(message) == {":path": "/v1/messages", "x-api-key": "k", "content-type": "application/json"}


def test_repeated_headers_are_joined_in_order() -> None:
    message = _headers(("accept", "a"), ("x-one", "1"), ("Accept", "b"), ("accept", "c"))
    assert headers_of(message) == {"accept": "a,b,c", "x-one": "1"}


def test_value_is_read_when_envoy_sends_no_raw_value() -> None:
    assert headers_of(_headers(("x-a", "plain"), raw=False)) == {"x-a": "plain"}
    message = _headers(("x-bytes", "x"))
    message.headers.headers[0].raw_value = b"\xffok"
    assert headers_of(message) == {"x-bytes": "\ufffdok"}


@pytest.mark.parametrize("phase", PHASES)
def test_an_unchanged_answer_names_its_phase_and_changes_nothing(phase: str) -> None:
    response = to_response(phase, Forward())
    assert response.WhichOneof("response") == phase
    assert not response.HasField("dynamic_metadata") and not response.HasField("mode_override")
    if not phase.endswith("trailers"):
        common = getattr(response, phase).response
        assert not common.ListFields()
    # Each call is an independent answer: the next request's changes never leak into it.
    changed = to_response(phase, Forward(set_headers=[("x-a", "1")], metadata={"consumer": "c"}))
    assert to_response(phase, Forward()) == response
    assert changed != response


def test_a_forward_carries_every_change() -> None:
    result = Forward(set_headers=[(":path", "/model/m/invoke"), ("x-a", "1")], remove_headers=["x-api-key"],
                     body=b"{}", clear_route_cache=True, metadata={"consumer": "team", "route": "anthropic_messages"})
    response = to_response("request_body", result)
    common = response.request_body.response
    assert [(o.header.key, o.header.raw_value) for o in common.header_mutation.set_headers] == [
        (":path", b"/model/m/invoke"), ("x-a", b"1")]
    assert list(common.header_mutation.remove_headers) == ["x-api-key"]
    assert common.body_mutation.body == b"{}" and common.clear_route_cache
    fields = response.dynamic_metadata.fields[METADATA_NAMESPACE].struct_value.fields
    assert {k: v.string_value for k, v in fields.items()} == {"consumer": "team", "route": "anthropic_messages"}


def test_a_streamed_answer_switches_the_body_mode() -> None:
    response = to_response("response_headers", Forward(stream_response=True))
    assert response.mode_override.response_body_mode == ProcessingMode.STREAMED
    assert response.WhichOneof("response") == "response_headers"


def test_a_reply_is_an_immediate_response() -> None:
    response = to_response("request_headers", Reply(401, [("content-type", "application/json")], b'{"e":1}',
                                                      metadata={"consumer": ""}))
    immediate = response.immediate_response
    assert immediate.status.code == 401 and immediate.body == b'{"e":1}' and immediate.details == "gateway_reply"
    assert [(o.header.key, o.header.raw_value) for o in immediate.headers.set_headers] == [
        ("content-type", b"application/json")]


# -- Processor.Process: one ext_proc stream, message by message ------------------------------------------

def _stream(*messages: pb.ProcessingRequest) -> AsyncIterator[pb.ProcessingRequest]:
    async def iterate() -> AsyncIterator[pb.ProcessingRequest]:
        for message in messages:
            yield message
    return iterate()


def _phase_count(phase: str) -> float:
    return REGISTRY.get_sample_value("gateway_extproc_phase_seconds_count", {"phase": phase}) or 0.0


def test_a_stream_is_answered_phase_by_phase_timed_and_metered(tmp_path: Path) -> None:
    key = "gwk_processor_test_key_0123456789"
    settings = load_settings({"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": "http://127.0.0.1:8090", "AWS_REGION": "us-east-1"})
    config = parse_config(f"consumers:\n  team:\n    key_sha256: {hash_key(key)}\n"
                          f"usage_records: {{stdout: false, file: {tmp_path / 'usage.jsonl'}}}\n")
    session = botocore.session.Session()
    session.set_credentials("AKIDPROCESSORTEST0", "processor/secret")
    credentials = CredentialSource(session=session)
    body = json.dumps({"model": "claude-haiku-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
    answer = json.dumps({"id": "msg_1", "type": "message", "role": "assistant", "content": [{"type": "text", "text": "Hi"}],
                         "usage": {"input_tokens": 7, "output_tokens": 2}}).encode()
    before = {phase: _phase_count(phase) for phase in PHASES}

    async def run() -> list[pb.ProcessingResponse]:
        await credentials.refresh()
        gateway = Gateway(settings.model_copy(update={"config": config}), KeyRing.build(config, None), credentials)
        requests = _stream(
            pb.ProcessingRequest(request_headers=_headers(
                (":method", "POST"), (":path", "/v1/messages"), ("x-api-key", key), ("x-request-id", "proc-1"))),
            pb.ProcessingRequest(request_body=pb.HttpBody(body=body.encode(), end_of_stream=True)),
            pb.ProcessingRequest(response_headers=_headers((":status", "200"), ("content-type", "application/json"),
                                                           ("x-amzn-requestid", "aws-1"))),
            pb.ProcessingRequest(response_body=pb.HttpBody(body=answer, end_of_stream=True)),
        )
        answers = [response async for response in Processor(gateway).Process(requests, None)]  # type: ignore[arg-type]
        await gateway.close()
        return answers

    answers = asyncio.run(run())
    assert [a.WhichOneof("response") for a in answers] == list(PHASES[:4])
    forwarded = answers[1].request_body.response
    assert dict((o.header.key, o.header.raw_value) for o in forwarded.header_mutation.set_headers)[":path"] == (
        b"/model/us.anthropic.claude-haiku-4-5-20251001-v1%3A0/invoke")
    assert "x-api-key" in forwarded.header_mutation.remove_headers
    assert not answers[3].response_body.response.ListFields()  # the answer goes to the client as it came
    assert {phase: _phase_count(phase) - before[phase] for phase in PHASES[:4]} == dict.fromkeys(PHASES[:4], 1.0)
    (record,) = [json.loads(line) for line in (tmp_path / "usage.jsonl").read_text().splitlines()]
    assert record["request_id"] == "proc-1" and record["consumer"] == "team" and record["status"] == 200
    assert record["tokens"] == {"input": 7, "output": 2, "cache_read": 0, "cache_write": 0}
