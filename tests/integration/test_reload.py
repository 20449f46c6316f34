"""Keys and configuration reloaded without a restart (admin API and SIGHUP), usage totals over the admin API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anthropic
import httpx
import pytest

from devstack import ROOT, Stack, free_port
from extproc.keys import mint_key
from tests.integration.conftest import Keys, request_records
from tests.integration.test_limits import EnvoyLike
from tests.redis_server import RedisServer

TOKEN = "admin-token-for-tests-0123456789"
MESSAGE = {"model": "haiku", "max_tokens": 20, "messages": [{"role": "user", "content": "hello"}]}


def extproc_cli(*args: str, admin: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GATEWAY_ADMIN_TOKEN": TOKEN}
    return subprocess.run([sys.executable, "-m", "extproc", *args, "--admin", admin], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=30)


def status(stack: Stack, key: str) -> int:
    return httpx.post(f"{stack.url}/v1/messages", headers={"x-api-key": key}, json=MESSAGE, timeout=30).status_code


def keys_file(stack: Stack) -> Path:
    return Path(str(stack.env["GATEWAY_KEYS_FILE"]))


def test_reload_adds_and_revokes_keys_without_dropping_requests(make_stack: Callable[..., Stack], keys: Keys) -> None:
    admin = f"127.0.0.1:{free_port()}"
    stack = make_stack(env={"GATEWAY_ADMIN_TOKEN": TOKEN}, config={"admin": {"listen": admin}})
    new_key = mint_key()
    assert status(stack, keys.alpha) == 200 and status(stack, new_key) == 401

    in_flight: list[str] = []

    def slow_stream() -> None:
        client = anthropic.Anthropic(base_url=stack.url, api_key=keys.alpha, max_retries=0, timeout=30)
        with client.messages.stream(model="haiku", max_tokens=100, messages=[
                {"role": "user", "content": "slow one [[emulator:slow=150]] [[emulator:words=20]]"}]) as stream:
            in_flight.append("".join(stream.text_stream))

    thread = threading.Thread(target=slow_stream)
    thread.start()
    time.sleep(0.4)  # the stream is under way with the old key ring
    keys_file(stack).write_text(f"newteam: {new_key}\n")  # alpha revoked, newteam added
    reloaded = extproc_cli("reload", admin=admin)
    assert reloaded.returncode == 0, reloaded.stderr
    assert "reloaded" in reloaded.stdout
    assert status(stack, new_key) == 200 and status(stack, keys.alpha) == 401
    thread.join(timeout=30)
    assert in_flight and "slow one" in in_flight[0]  # the in-flight request finished normally

    # SIGHUP does the same.
    keys_file(stack).write_text(f"newteam: {new_key}\nalpha: {keys.alpha}\n")
    stack.processes["extproc"].popen.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while status(stack, keys.alpha) != 200:
        assert time.monotonic() < deadline, "SIGHUP did not reload the keys file"
        time.sleep(0.2)

    # A broken file changes nothing: the error is reported and the gateway keeps its configuration.
    Path(str(stack.env["GATEWAY_CONFIG"])).write_text("policies: [not, a, mapping]\n")
    refused = extproc_cli("reload", admin=admin)
    assert refused.returncode == 1 and "policies" in refused.stderr + refused.stdout
    assert status(stack, new_key) == 200


def test_usage_totals_over_the_admin_api(make_stack: Callable[..., Stack], keys: Keys) -> None:
    admin = f"127.0.0.1:{free_port()}"
    stack = make_stack(env={"GATEWAY_ADMIN_TOKEN": TOKEN}, config={"admin": {"listen": admin}})
    client = anthropic.Anthropic(base_url=stack.url, api_key=keys.alpha, max_retries=0)
    for i in range(5):
        client.messages.create(**{**MESSAGE, "messages": [{"role": "user", "content": f"count me {i}"}]})
    time.sleep(0.5)  # charges follow the answers
    answer = extproc_cli("usage", "--since", "1h", "--consumer", "alpha", "--json", admin=admin)
    assert answer.returncode == 0, answer.stderr
    rows = json.loads(answer.stdout)["rows"]
    (row,) = rows
    records = [r for r in request_records(stack) if r["consumer"] == "alpha"]
    assert int(row["requests"]) == len(records) == 5
    assert int(row["output_tokens"]) == sum(r["tokens"]["output"] for r in records)
    assert int(row["input_tokens"]) == sum(r["tokens"]["input"] for r in records)
    assert row["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in records), rel=1e-6)
    table = extproc_cli("usage", "--since", "1h", admin=admin)
    assert table.returncode == 0 and "alpha" in table.stdout and "haiku" in table.stdout
    wrong = subprocess.run([sys.executable, "-m", "extproc", "usage", "--admin", admin], cwd=ROOT,
                           env={**os.environ, "GATEWAY_ADMIN_TOKEN": "x" * 32}, capture_output=True, text=True)
    assert wrong.returncode == 1 and "refused" in wrong.stderr


def test_reload_reaches_every_worker(make_stack: Callable[..., Stack], keys: Keys) -> None:
    with RedisServer() as redis_server:
        admin = f"127.0.0.1:{free_port()}"
        stack = make_stack(env={"GATEWAY_ADMIN_TOKEN": TOKEN, "EXTPROC_WORKERS": "2",
                                "GATEWAY_REDIS_URL": redis_server.url},
                           config={"admin": {"listen": admin}, "limits": {"backend": "redis"}})
        new_key = mint_key()
        keys_file(stack).write_text(f"newteam: {new_key}\n")
        reloaded = extproc_cli("reload", admin=admin)
        assert reloaded.returncode == 0 and "2 workers" in reloaded.stdout, reloaded
        time.sleep(1)  # the supervisor has signalled; each worker re-reads the files off its loop
        # Many connections straight to the extproc port, so both workers answer (SO_REUSEPORT).
        envoys = [EnvoyLike(f"127.0.0.1:{stack.ports.extproc}", i) for i in range(16)]
        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(lambda i: envoys[i].request(new_key, f"reload-{i}"), range(16)))
        revoked = envoys[0].request(keys.alpha, "reload-old")
        for envoy in envoys:
            envoy.close()
        assert statuses == [200] * 16 and revoked == 401
        deadline = time.monotonic() + 10
        while len(records := [r for r in request_records(stack) if r["request_id"].startswith("reload-")]) < 17:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert {r["worker"] for r in records if r["consumer"] == "newteam"} == {0, 1}
