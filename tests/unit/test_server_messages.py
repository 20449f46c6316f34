"""server.py's translation between Envoy's ext_proc messages and the gateway's decisions."""

from __future__ import annotations

import asyncio
import json
import time
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
from extproc.server import FINISH_BATCH_SECONDS, METADATA_NAMESPACE, PHASES, Processor, headers_of, to_response


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


def _gateway(tmp_path: Path, key: str, policy: str = "") -> Gateway:
    """A Gateway with one consumer (``key``), records to ``tmp_path/usage.jsonl``; call inside a running loop."""
    settings = load_settings({"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": "http://127.0.0.1:8090", "AWS_REGION": "us-east-1"})
    config = parse_config(f"consumers:\n  team:\n    key_sha256: {hash_key(key)}\n{policy}"
                          f"usage_records: {{stdout: false, file: {tmp_path / 'usage.jsonl'}}}\n")
    session = botocore.session.Session()
    session.set_credentials("AKIDPROCESSORTEST0", "processor/secret")
    return Gateway(settings.model_copy(update={"config": config}), KeyRing.build(config, None),
                   CredentialSource(session=session))


_ANSWER = json.dumps({"id": "msg_1", "type": "message", "role": "assistant", "content": [{"type": "text", "text": "Hi"}],
                      "usage": {"input_tokens": 7, "output_tokens": 2}}).encode()


def _messages_stream(key: str, request_id: str) -> AsyncIterator[pb.ProcessingRequest]:
    """One non-streaming /v1/messages request as Envoy sends it, phase by phase."""
    body = json.dumps({"model": "claude-haiku-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
    return _stream(
        pb.ProcessingRequest(request_headers=_headers(
            (":method", "POST"), (":path", "/v1/messages"), ("x-api-key", key), ("x-request-id", request_id))),
        pb.ProcessingRequest(request_body=pb.HttpBody(body=body.encode(), end_of_stream=True)),
        pb.ProcessingRequest(response_headers=_headers((":status", "200"), ("content-type", "application/json"),
                                                       ("x-amzn-requestid", "aws-1"))),
        pb.ProcessingRequest(response_body=pb.HttpBody(body=_ANSWER, end_of_stream=True)),
    )


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _records(tmp_path: Path) -> list[dict]:
    path = tmp_path / "usage.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_stream_is_answered_phase_by_phase_then_timed_and_metered_in_a_batch(tmp_path: Path) -> None:
    key = "gwk_processor_test_key_0123456789"
    before = {phase: _phase_count(phase) for phase in PHASES}
    requests_before = _sample("gateway_requests_total", consumer="team", route="anthropic_messages",
                              model="haiku", status_class="2xx")
    in_flight_before = _sample("gateway_in_flight_requests", route="anthropic_messages")  # other tests leave some

    async def run() -> tuple[list[pb.ProcessingResponse], dict[str, float], dict[str, float]]:
        gateway = _gateway(tmp_path, key)
        await gateway.credentials.refresh()
        processor = Processor(gateway)
        answers = [response async for response in processor.Process(_messages_stream(key, "proc-1"), None)]  # type: ignore[arg-type]
        at_close = {"in_flight": _sample("gateway_in_flight_requests", route="anthropic_messages"),
                    "requests": _sample("gateway_requests_total", consumer="team", route="anthropic_messages",
                                        model="haiku", status_class="2xx"),
                    "phases": sum(_phase_count(phase) - before[phase] for phase in PHASES)}
        await asyncio.sleep(FINISH_BATCH_SECONDS + 0.1)  # the batch's timer fires on its own
        after_batch = {"requests": _sample("gateway_requests_total", consumer="team", route="anthropic_messages",
                                           model="haiku", status_class="2xx")}
        await gateway.close()
        return answers, at_close, after_batch

    answers, at_close, after_batch = asyncio.run(run())
    assert [a.WhichOneof("response") for a in answers] == list(PHASES[:4])
    forwarded = answers[1].request_body.response
    assert dict((o.header.key, o.header.raw_value) for o in forwarded.header_mutation.set_headers)[":path"] == (
        b"/model/us.anthropic.claude-haiku-4-5-20251001-v1%3A0/invoke")
    assert "x-api-key" in forwarded.header_mutation.remove_headers
    assert not answers[3].response_body.response.ListFields()  # the answer goes to the client as it came
    # When the stream closed, the request had left the in-flight gauge, but was not metered yet ...
    assert at_close == {"in_flight": in_flight_before, "requests": requests_before, "phases": 0.0}
    # ... the batch metered it once, timed each phase once, and wrote its record.
    assert after_batch["requests"] == requests_before + 1
    assert {phase: _phase_count(phase) - before[phase] for phase in PHASES[:4]} == dict.fromkeys(PHASES[:4], 1.0)
    (record,) = _records(tmp_path)
    assert record["request_id"] == "proc-1" and record["consumer"] == "team" and record["status"] == 200
    assert record["tokens"] == {"input": 7, "output": 2, "cache_read": 0, "cache_write": 0}


def test_a_request_under_limits_is_settled_when_its_stream_closes(tmp_path: Path) -> None:
    """Its consumer's next request may come at once: it must find the lease free and the charge made.
    Metrics and the record still come with the batch."""
    key = "gwk_processor_limited_key_0123456789"
    policy = "policies:\n  default:\n    limits: {concurrent_requests: 1, tokens_per_minute: 1000}\n"

    async def run() -> tuple[list[str], list[tuple[str, int, int]], int]:
        gateway = _gateway(tmp_path, key, policy)
        await gateway.credentials.refresh()
        processor = Processor(gateway)
        last_phases = []
        for n in range(2):  # back to back: with its lease still held, the second would be a 429
            answers = [a async for a in processor.Process(_messages_stream(key, f"lim-{n}"), None)]  # type: ignore[arg-type]
            last_phases.append(answers[-1].WhichOneof("response"))
        now = time.time()
        charged = [(row.consumer, row.requests, row.usage.input)
                   for row in await gateway.limiter.store.usage(now - 60, now + 60)]
        queued = len(processor._finished)
        processor.finish_batch()
        await gateway.close()
        return last_phases, charged, queued

    last_phases, charged, queued = asyncio.run(run())
    assert last_phases == ["response_body", "response_body"]  # both answered, neither refused
    assert charged == [("team", 2, 14)]  # both charged when their streams closed, before the batch
    assert queued == 2
    assert [r["request_id"] for r in _records(tmp_path)] == ["lim-0", "lim-1"]


def test_one_request_failing_to_finish_costs_the_batch_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key = "gwk_processor_batch_key_0123456789"

    async def run() -> list[dict]:
        gateway = _gateway(tmp_path, key)
        await gateway.credentials.refresh()
        processor = Processor(gateway)
        finish = gateway.finish

        def failing_for_one(state: object) -> None:
            if getattr(state, "request_id", "") == "bad":
                raise RuntimeError("finishing broke")
            finish(state)  # type: ignore[arg-type]

        gateway.finish = failing_for_one  # type: ignore[method-assign]
        for request_id in ("ok-1", "bad", "ok-2"):
            _ = [a async for a in processor.Process(_messages_stream(key, request_id), None)]  # type: ignore[arg-type]
        processor.finish_batch()  # what shutdown calls last, without waiting for the timer
        assert not processor._finished and processor._batch is None
        await gateway.close()
        return _records(tmp_path)

    records = asyncio.run(run())
    assert [r["request_id"] for r in records] == ["ok-1", "ok-2"]
    assert "finishing a request failed" in caplog.text
