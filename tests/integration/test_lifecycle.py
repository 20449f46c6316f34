"""Process lifecycle: /health, failing closed, graceful drain, Envoy config validity."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable

import anthropic
import httpx

from devstack import ENVOY_YAML, Stack, _bin
from tests.integration.conftest import Emulator, Keys


def _wait_status(url: str, status: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(url, timeout=2).status_code
        except httpx.HTTPError as exc:
            last = repr(exc)
        if last == status:
            return
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered {status} (last: {last})")


def test_envoy_validates_the_bootstrap() -> None:
    result = subprocess.run([_bin("envoy"), "--mode", "validate", "-c", str(ENVOY_YAML)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout + result.stderr


def test_health_follows_the_extproc_and_envoy_fails_closed(make_stack: Callable[..., Stack], keys: Keys) -> None:
    stack = make_stack()
    emulator = Emulator(stack.emulator_url)
    assert httpx.get(f"{stack.url}/health").status_code == 200

    stack.processes["extproc"].popen.kill()
    stack.processes["extproc"].popen.wait()
    _wait_status(f"{stack.url}/health", 503)

    emulator.clear()
    response = httpx.post(f"{stack.url}/v1/messages", headers={"x-api-key": keys.alpha},
                          json={"model": "haiku", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    assert 500 <= response.status_code < 600
    # With no extproc even a request without any key must not get through.
    response = httpx.post(f"{stack.url}/v1/messages", json={"model": "haiku"})
    assert 500 <= response.status_code < 600
    assert emulator.requests() == []

    stack.start_extproc()
    _wait_status(f"{stack.url}/health", 200)
    ok = httpx.post(f"{stack.url}/v1/messages", headers={"x-api-key": keys.alpha},
                    json={"model": "haiku", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    assert ok.status_code == 200


def test_sigterm_drains_in_flight_requests_then_exits(make_stack: Callable[..., Stack], keys: Keys) -> None:
    stack = make_stack()
    client = anthropic.Anthropic(base_url=stack.url, api_key=keys.alpha, max_retries=0)
    results: list[object] = []

    def slow_request() -> None:
        try:
            message = client.messages.create(
                model="haiku", max_tokens=16,
                messages=[{"role": "user", "content": "take your time [[emulator:slow=2000]]"}])
            results.append(message.content[0].text)
        except Exception as exc:  # noqa: BLE001 - recorded for the assertion below
            results.append(exc)

    threads = [threading.Thread(target=slow_request) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.7)  # the requests are now waiting on the emulator
    extproc = stack.processes["extproc"].popen
    extproc.send_signal(signal.SIGTERM)
    # During the drain delay a request that still arrives (the load balancer has not noticed yet) is served.
    late = httpx.post(f"{stack.url}/v1/messages", headers={"x-api-key": keys.alpha},
                      json={"model": "haiku", "max_tokens": 5, "messages": [{"role": "user", "content": "late"}]})
    assert late.status_code == 200
    _wait_status(f"{stack.url}/health", 503, timeout=5)  # no longer serving: load balancers stop sending

    for thread in threads:
        thread.join(timeout=20)
    assert len(results) == 3
    assert all(isinstance(r, str) and "take your time" in r for r in results), results
    assert extproc.wait(timeout=10) == 0
    log = stack.processes["extproc"].log.read_text()
    assert "extproc draining" in log and "extproc stopped" in log
    assert log.count('"record":"usage"') >= 3
