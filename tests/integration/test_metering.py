"""Token metering end to end: counters and usage records equal what Bedrock (the emulator) reported.

A mixed run of more than 500 requests through real Envoy with the official
SDKs: both APIs, streamed and not, refused for every reason the gateway has,
upstream errors, and clients that leave mid-stream. Afterwards, per consumer
and token type, three numbers must agree exactly: the tokens the emulator put
on the wire, the sum of the usage records, and ``gateway_tokens_total``.
"""

from __future__ import annotations

import random
import signal
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import anthropic
import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack import Stack
from extproc.keys import hash_key, mint_key
from tests.integration.conftest import Emulator, Keys, request_records, wait_for_records

TYPES = ("input", "output", "cache_read", "cache_write")


def scrape(stack: Stack) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The extproc's /metrics as name → [(labels, value)]."""
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.ports.metrics}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name].append((sample.labels, sample.value))
    return samples


def metric_sum(samples: dict, name: str, **match: str) -> float:
    return sum(value for labels, value in samples.get(name, []) if all(labels.get(k) == v for k, v in match.items()))


@pytest.fixture
def capped_key() -> str:
    return mint_key()


@pytest.fixture
def metered(make_stack: Callable[..., Stack], keys: Keys, capped_key: str) -> Stack:
    """A private stack (fresh counters) with one more consumer, limited to 30 requests a minute."""
    return make_stack(config={
        "policies": {"default": {"models": ["*"]}, "haiku-only": {"models": ["haiku"]},
                     "capped": {"models": ["*"], "limits": {"requests_per_minute": 30}}},
        "consumers": {"reports": {"policy": "haiku-only", "key_sha256": hash_key(keys.haiku_only)},
                      "capped": {"policy": "capped", "key_sha256": hash_key(capped_key)}},
    })


def test_mixed_run_counters_and_records_equal_what_bedrock_reported(
        metered: Stack, keys: Keys, capped_key: str) -> None:
    stack = metered
    emulator = Emulator(stack.emulator_url)
    emulator.clear()
    claude = anthropic.Anthropic(base_url=stack.url, api_key=keys.alpha, max_retries=0, timeout=30)
    chat = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=keys.haiku_only, max_retries=0, timeout=30)
    capped = anthropic.Anthropic(base_url=stack.url, api_key=capped_key, max_retries=0, timeout=30)
    http = httpx.Client(base_url=stack.url, timeout=30)

    def anthropic_plain(i: int) -> tuple[str, int]:
        text = f"question {i} about invoices" + (" [[emulator:cache=120,30]]" if i % 5 == 0 else "")
        raw = claude.messages.with_raw_response.create(
            model="haiku", max_tokens=200, messages=[{"role": "user", "content": text}])
        raw.parse()
        return raw.headers["x-request-id"], raw.status_code

    def anthropic_stream(i: int) -> tuple[str, int]:
        raw = claude.messages.with_raw_response.create(
            model="sonnet", max_tokens=200, stream=True,
            messages=[{"role": "user", "content": f"stream {i} please [[emulator:words={1 + i % 40}]]"}])
        for _ in raw.parse():
            pass
        return raw.headers["x-request-id"], raw.status_code

    def openai_plain(i: int) -> tuple[str, int]:
        raw = chat.chat.completions.with_raw_response.create(
            model="haiku", messages=[{"role": "user", "content": f"chat {i}"}])
        raw.parse()
        return raw.headers["x-request-id"], raw.status_code

    def openai_stream(i: int) -> tuple[str, int]:
        raw = chat.chat.completions.with_raw_response.create(
            model="haiku", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": f"chat stream {i} [[emulator:cache=0,{1 + i}]]"}])
        for _ in raw.parse():
            pass
        return raw.headers["x-request-id"], raw.status_code

    def capped_call(i: int) -> tuple[str, int]:
        try:
            raw = capped.messages.with_raw_response.create(
                model="haiku", max_tokens=50, messages=[{"role": "user", "content": f"capped {i}"}])
        except anthropic.RateLimitError as exc:  # the SDK's own class for our 429
            assert int(exc.response.headers["retry-after"]) >= 1
            assert exc.response.headers["anthropic-ratelimit-requests-remaining"] == "0"
            return exc.response.headers["x-request-id"], exc.status_code
        raw.parse()
        return raw.headers["x-request-id"], raw.status_code

    def refused(body: dict, key: str, path: str = "/v1/messages") -> Callable[[int], tuple[str, int]]:
        def call(i: int) -> tuple[str, int]:
            response = http.post(path, headers={"x-api-key": key}, json=body)
            return response.headers["x-request-id"], response.status_code
        return call

    def throttled(i: int) -> tuple[str, int]:
        response = http.post("/v1/messages", headers={"x-api-key": keys.alpha}, json={
            "model": "haiku", "max_tokens": 50,
            "messages": [{"role": "user", "content": "busy [[emulator:error=ThrottlingException]]"}]})
        return response.headers["x-request-id"], response.status_code

    def disconnect(i: int) -> tuple[str, int]:
        """Read the first event of a slow stream, then hang up."""
        api = i % 2
        path, key, body = (
            ("/v1/messages", keys.alpha, {"model": "haiku", "max_tokens": 100, "stream": True}) if api == 0 else
            ("/v1/chat/completions", keys.haiku_only, {"model": "haiku", "stream": True}))
        body["messages"] = [{"role": "user", "content": f"leave early {i} [[emulator:slow=150]] [[emulator:words=30]]"}]
        with httpx.stream("POST", f"{stack.url}{path}", headers={"x-api-key": key}, json=body, timeout=30) as response:
            next(response.iter_raw())
            request_id, status = response.headers["x-request-id"], response.status_code
        return request_id, status

    message = {"model": "haiku", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    card = {**message, "messages": [{"role": "user", "content": "my card is 4111 1111 1111 1111"}]}
    plan: list[tuple[str, Callable[[int], tuple[str, int]], int]] = [
        ("anthropic", anthropic_plain, 150), ("anthropic-stream", anthropic_stream, 100),
        ("openai", openai_plain, 100), ("openai-stream", openai_stream, 80), ("capped", capped_call, 40),
        ("bad-key", refused(message, "gwk_not_a_key_at_all_0000"), 20),
        ("guardrail", refused(card, keys.alpha), 20),
        ("forbidden-model", refused({**message, "model": "sonnet"}, keys.haiku_only), 20),
        ("throttled", throttled, 10), ("disconnect", disconnect, 16),
    ]
    jobs = [(kind, call, i) for kind, call, count in plan for i in range(count)]
    random.Random(7).shuffle(jobs)
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda job: (job[0], *job[1](job[2])), jobs))
    assert len(outcomes) >= 500

    statuses = Counter((kind, status) for kind, _, status in outcomes)
    assert statuses[("capped", 200)] == 30 and statuses[("capped", 429)] == 10, statuses
    for kind, status in (("bad-key", 401), ("guardrail", 400), ("forbidden-model", 403), ("throttled", 429)):
        assert statuses[(kind, status)] == (20 if kind != "throttled" else 10), statuses

    # Every request has exactly one usage record, whatever happened to it.
    ids = [request_id for _, request_id, _ in outcomes]
    deadline = time.monotonic() + 20
    while len(records := {r["request_id"]: r for r in request_records(stack)}) < len(ids):
        assert time.monotonic() < deadline, f"{len(ids) - len(records)} records missing"
        time.sleep(0.2)
    assert Counter(r["request_id"] for r in request_records(stack)) == Counter(ids)

    # What the emulator put on the wire, per consumer (joined on the request id the gateway forwarded).
    reported: dict[str, Counter[str]] = defaultdict(Counter)
    for seen in emulator.requests():
        consumer = records[seen["headers"]["x-request-id"]]["consumer"]
        for token_type, count in (seen["usage"] or {}).items():
            reported[consumer][token_type] += count
    recorded: dict[str, Counter[str]] = defaultdict(Counter)
    for record in records.values():
        for token_type, count in record["tokens"].items():
            recorded[record["consumer"]][token_type] += count
    samples = scrape(stack)
    for consumer in ("alpha", "reports", "capped"):
        for token_type in TYPES:
            counted = metric_sum(samples, "gateway_tokens_total", consumer=consumer, type=token_type)
            assert reported[consumer][token_type] == recorded[consumer][token_type] == counted, \
                (consumer, token_type, reported[consumer][token_type], recorded[consumer][token_type], counted)
    assert reported["alpha"]["cache_read"] > 0 and reported["reports"]["cache_write"] > 0

    # Refused before Bedrock: a record with zero tokens and zero cost, and nothing upstream.
    upstream_ids = {seen["headers"]["x-request-id"] for seen in emulator.requests()}
    for kind, request_id, status in outcomes:
        if kind in ("bad-key", "guardrail", "forbidden-model") or (kind == "capped" and status == 429):
            record = records[request_id]
            assert record["cost_usd"] == 0 and not any(record["tokens"].values()) and request_id not in upstream_ids
    # Clients that hung up: partial records, metered from what was sent before they left.
    left = [records[request_id] for kind, request_id, _ in outcomes if kind == "disconnect"]
    assert all(r["partial"] and r["error"] for r in left)
    assert any(r["tokens"]["input"] > 0 for r in left)

    # Cost: records and the counter agree, per consumer; requests are counted once each.
    for consumer in ("alpha", "reports", "capped"):
        cost = sum(r["cost_usd"] for r in records.values() if r["consumer"] == consumer)
        assert metric_sum(samples, "gateway_cost_usd_total", consumer=consumer) == pytest.approx(cost, rel=1e-6)
    assert metric_sum(samples, "gateway_requests_total") == len(ids)
    assert metric_sum(samples, "gateway_limit_rejections_total", consumer="capped",
                      limit="requests_per_minute") == 10
    assert metric_sum(samples, "gateway_upstream_errors_total", error_type="ThrottlingException") == 10
    assert metric_sum(samples, "gateway_time_to_first_token_seconds_count") >= 180
    assert metric_sum(samples, "gateway_in_flight_requests") == 0


def test_no_usage_record_is_lost_on_sigterm_under_load(make_stack: Callable[..., Stack], keys: Keys) -> None:
    """SIGTERM while 24 requests are in flight: every request that reached the gateway has its record."""
    stack = make_stack(env={"EXTPROC_DRAIN_DELAY_SECONDS": "1"})
    emulator = Emulator(stack.emulator_url)
    results: list[tuple[str, int]] = []
    lock = threading.Lock()

    def call(i: int) -> None:
        body = {"model": "haiku", "max_tokens": 100, "stream": i % 2 == 0,
                "messages": [{"role": "user", "content": f"load {i} [[emulator:slow=100]] [[emulator:words=20]]"}]}
        try:
            with httpx.stream("POST", f"{stack.url}/v1/messages", headers={"x-api-key": keys.alpha}, json=body,
                              timeout=30) as response:
                response.read()
                with lock:
                    results.append((response.headers.get("x-request-id", ""), response.status_code))
        except httpx.HTTPError:
            pass

    threads = [threading.Thread(target=call, args=(i,)) for i in range(24)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    stack.processes["extproc"].popen.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=60)
    assert stack.processes["extproc"].popen.wait(timeout=30) == 0
    answered = [request_id for request_id, status in results if status == 200]
    assert len(answered) == 24, results
    records = {r["request_id"]: r for r in request_records(stack)}
    for request_id in answered:
        assert request_id in records and records[request_id]["status"] == 200
    for seen in emulator.requests():
        assert seen["headers"]["x-request-id"] in records
    assert all(sum(records[request_id]["tokens"].values()) > 0 for request_id in answered)


def test_refused_request_record_has_zero_cost(stack: Stack, keys: Keys) -> None:
    response = httpx.post(f"{stack.url}/v1/messages", headers={"x-api-key": keys.alpha},
                          json={"model": "no-such-model", "max_tokens": 5, "messages": []})
    assert response.status_code in (400, 404)
    (record,) = wait_for_records(stack, lambda r: r["request_id"] == response.headers["x-request-id"])
    assert record["cost_usd"] == 0 and record["tokens"] == dict.fromkeys(TYPES, 0)
    assert record["consumer"] == "alpha" and record["status"] == response.status_code
    assert set(record) >= {"time", "route", "model", "bedrock_model", "duration_ms", "first_token_ms", "partial",
                           "guardrails"}


def test_a_stream_cut_at_the_end_of_the_grace_period_still_has_its_record(
        make_stack: Callable[..., Stack], keys: Keys) -> None:
    """SIGTERM with a long stream in flight and a 1 s grace: the stream is cut, its partial record is written."""
    stack = make_stack(env={"EXTPROC_GRACE_SECONDS": "1", "EXTPROC_DRAIN_DELAY_SECONDS": "0"})
    body = {"model": "haiku", "max_tokens": 500, "stream": True,
            "messages": [{"role": "user", "content": "long one [[emulator:slow=300]] [[emulator:words=90]]"}]}
    seen: list[str] = []

    def stream() -> None:
        try:
            with httpx.stream("POST", f"{stack.url}/v1/messages", headers={"x-api-key": keys.alpha}, json=body,
                              timeout=30) as response:
                seen.append(response.headers["x-request-id"])
                for _ in response.iter_raw():
                    pass
        except httpx.HTTPError:
            pass  # the stream is cut: that is the point

    thread = threading.Thread(target=stream)
    thread.start()
    time.sleep(1.0)
    stack.processes["extproc"].popen.send_signal(signal.SIGTERM)
    assert stack.processes["extproc"].popen.wait(timeout=30) == 0
    thread.join(timeout=30)
    (request_id,) = seen
    records = [r for r in request_records(stack) if r["request_id"] == request_id]
    assert len(records) == 1 and records[0]["partial"] is True and records[0]["tokens"]["input"] > 0
