"""Envoy's JSON access log (envoy/envoy.yaml): one line per request, joined to the usage record by request id."""

from __future__ import annotations

import json
import time

import anthropic
import httpx

from devstack import Stack
from tests.integration.conftest import Keys, record_of


def access_log(stack: Stack) -> list[dict]:
    """Envoy's access log lines (JSON on stdout); its own log lines start with '['."""
    lines = stack.processes["envoy"].log.read_text(errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def access_line(stack: Stack, request_id: str, timeout: float = 10.0) -> dict:
    """The one access log line of a request (written when its stream ends)."""
    deadline = time.monotonic() + timeout
    while not (found := [line for line in access_log(stack) if line["request_id"] == request_id]):
        assert time.monotonic() < deadline, f"no access log line for request {request_id}"
        time.sleep(0.1)
    (line,) = found
    return line


def test_access_log_names_the_consumer_and_joins_the_usage_record(stack: Stack, keys: Keys) -> None:
    client = anthropic.Anthropic(base_url=stack.url, api_key=keys.alpha, max_retries=0)
    raw = client.messages.with_raw_response.create(
        model="claude-haiku-4-5", max_tokens=32, messages=[{"role": "user", "content": "Hello"}],
        extra_query={"beta": "true"},  # as Claude Code sends it: never logged
    )
    request_id = raw.headers["x-request-id"]
    record = record_of(stack, request_id)
    line = access_line(stack, request_id)

    # The join: the same request, seen by Envoy and by the extproc.
    assert line["consumer"] == record["consumer"] == "alpha"
    assert line["route"] == record["route"]
    assert line["model"] == record["model"]
    assert line["status"] == record["status"] == 200
    # Envoy's side of it: what was forwarded, where, and how long it took.
    assert line["method"] == "POST"
    assert line["path"].startswith("/model/") and line["path"].endswith("/invoke")
    assert "?" not in line["path"]
    assert line["upstream"].endswith(f":{stack.ports.emulator}")
    assert isinstance(line["duration_ms"], int) and line["duration_ms"] >= 0
    assert isinstance(line["upstream_service_ms"], int) and 0 <= line["upstream_service_ms"] <= line["duration_ms"]
    assert line["bytes_in"] > 0 and line["bytes_out"] > 0
    assert line["flags"] in ("-", None)


def test_a_rejected_request_is_logged_with_its_route_and_no_consumer(stack: Stack) -> None:
    response = httpx.post(f"{stack.url}/v1/messages?beta=true", headers={"x-api-key": "gwk_not_a_key"},
                          json={"model": "haiku", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 401
    line = access_line(stack, response.headers["x-request-id"])
    assert line["status"] == 401
    assert not line["consumer"]
    assert line["path"] == "/v1/messages"  # the client's path, without its query string
    assert line["upstream"] in ("-", None)  # nothing was forwarded
    assert line["route"] == record_of(stack, response.headers["x-request-id"])["route"]


def test_answers_of_the_extproc_itself_are_logged_with_consumer_and_route(stack: Stack, keys: Keys) -> None:
    """GET /v1/models is answered by the extproc (an immediate response): still one line, with who asked."""
    response = httpx.get(f"{stack.url}/v1/models", headers={"x-api-key": keys.alpha})
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    line, record = access_line(stack, request_id), record_of(stack, request_id)
    assert line["status"] == 200 and line["upstream"] in ("-", None)
    assert (line["consumer"], line["route"]) == (record["consumer"], record["route"]) == ("alpha", record["route"])


def test_health_probes_are_not_logged(stack: Stack) -> None:
    marker = "probe-not-logged"
    assert httpx.get(f"{stack.url}/health", headers={"x-request-id": marker}).status_code == 200
    httpx.get(f"{stack.url}/v1/models")  # a request that is logged, after the probe
    time.sleep(0.5)
    assert not [line for line in access_log(stack) if line["request_id"] == marker]
