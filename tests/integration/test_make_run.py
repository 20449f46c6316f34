"""`make run` as the contract describes it: default ports, emulator unless overridden, Ctrl-C stops all."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest

from devstack import ROOT, Ports, Stack, free_port, wait_http
from tests.integration.conftest import Emulator

CONTRACT_PORTS = (8080, 9901, 50051, 9464, 8090, 8428)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def contract_ports_free() -> None:
    busy = [port for port in CONTRACT_PORTS if _listening(port)]
    if busy:
        pytest.skip(f"contract ports already in use on this machine: {busy} (a `make run` is probably running)")


def _run(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "devstack"], cwd=ROOT, env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _interrupt_and_check_all_stopped(process: subprocess.Popen[bytes]) -> str:
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=30)
    deadline = time.monotonic() + 5
    while any(_listening(p) for p in CONTRACT_PORTS) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in CONTRACT_PORTS if _listening(p)], "Ctrl-C left processes listening"
    return output.decode(errors="replace")


@pytest.fixture
def tmp_keys(tmp_path: Path) -> Iterator[tuple[str, str]]:
    key = "gwk_make_run_test_key_0123456789abcdefghij"
    path = tmp_path / "keys.yaml"
    path.write_text(f"outside-check: {key}\n")
    yield str(path), key


def test_make_run_default_starts_the_emulator_on_the_contract_ports(
    contract_ports_free: None, tmp_keys: tuple[str, str]
) -> None:
    keys_file, key = tmp_keys
    process = _run({"GATEWAY_KEYS_FILE": keys_file, "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": ""})
    try:
        wait_http("http://127.0.0.1:8080/health", timeout=60)
        client = anthropic.Anthropic(base_url="http://127.0.0.1:8080", api_key=key, max_retries=0)
        message = client.messages.create(model="claude-haiku-4-5", max_tokens=16,
                                         messages=[{"role": "user", "content": "hello make run"}])
        assert "hello make run" in message.content[0].text
        assert Emulator("http://127.0.0.1:8090").requests()[-1]["signature_valid"] is True
        with socket.create_connection(("127.0.0.1", 9464)):
            pass
        if shutil.which("victoria-metrics"):  # CI installs it: then make run scrapes both into it
            _wait_scraped({"extproc", "envoy"})
    finally:
        output = _interrupt_and_check_all_stopped(process)
    assert key not in output


def _wait_scraped(jobs: set[str], timeout: float = 40.0) -> None:
    """VictoriaMetrics on :8428 scrapes each job, successfully (config/scrape.yaml, every 10 s).

    Read from its targets API: queries hide the last 30 s of samples
    (``-search.latencyOffset``), and an earlier run's samples may still be there.
    """
    deadline, health = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen("http://127.0.0.1:8428/api/v1/targets", timeout=2) as response:
                targets = json.load(response)["data"]["activeTargets"]
            health = {t["labels"]["job"]: t["health"] for t in targets}
            if all(health.get(job) == "up" for job in jobs):
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"VictoriaMetrics did not scrape {sorted(jobs)} (targets: {health})")


def test_make_run_with_endpoint_override_uses_it_and_starts_no_emulator(
    contract_ports_free: None, tmp_keys: tuple[str, str], tmp_path: Path
) -> None:
    keys_file, key = tmp_keys
    # Our own "Bedrock" elsewhere, expecting credentials of our choosing.
    creds = [{"access_key_id": "AKIDOVERRIDETEST0000", "secret_access_key": "override/secret"}]
    (tmp_path / "creds.json").write_text(json.dumps(creds))
    upstream = Stack(workdir=tmp_path, ports=Ports(emulator=free_port()),
                     emulator_args=["--credentials", str(tmp_path / "creds.json")])
    upstream.start_emulator()
    try:
        process = _run({"GATEWAY_KEYS_FILE": keys_file, "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": upstream.emulator_url,
                        "AWS_ACCESS_KEY_ID": "AKIDOVERRIDETEST0000", "AWS_SECRET_ACCESS_KEY": "override/secret"})
        try:
            wait_http("http://127.0.0.1:8080/health", timeout=60)
            assert not _listening(8090), "no emulator may be started when the override is set"
            client = anthropic.Anthropic(base_url="http://127.0.0.1:8080", api_key=key, max_retries=0)
            client.messages.create(model="haiku", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
            (seen,) = Emulator(upstream.emulator_url).requests()
            assert seen["signature_valid"] is True and seen["access_key_id"] == "AKIDOVERRIDETEST0000"
        finally:
            _interrupt_and_check_all_stopped(process)
    finally:
        upstream.stop()

