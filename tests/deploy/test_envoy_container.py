"""The Envoy container of ECS and Kubernetes, run here for real: the wheel's Envoy
started by deploy/envoy/run-envoy.sh on envoy/envoy.yaml plus the container
overlay, in front of the real extproc and the Bedrock emulator.

Only port numbers are changed (free ports, as the integration tests do); the
overlay's addresses, routes and the wrapper's drain logic are what ships.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from devstack import ENVOY_YAML, Ports, Stack, _bin, envoy_config, free_port, wait_http
from extproc.keys import mint_key
from tests.integration.conftest import Emulator, Keys, write_gateway_files

ROOT = Path(__file__).resolve().parents[2]
OVERLAY = ROOT / "deploy" / "envoy" / "container.yaml"
WRAPPER = ROOT / "deploy" / "envoy" / "run-envoy.sh"
DOCKERFILE = ROOT / "docker" / "envoy.Dockerfile"

MESSAGE = {"model": "haiku", "max_tokens": 8, "messages": [{"role": "user", "content": "hello"}]}


def overlay_with_ports(gateway: int, admin: int, public: int, metrics: int) -> dict:
    """deploy/envoy/container.yaml with only its port numbers changed."""
    overlay = yaml.safe_load(OVERLAY.read_text())
    listeners = {item["name"]: item for item in overlay["static_resources"]["listeners"]}
    clusters = {item["name"]: item for item in overlay["static_resources"]["clusters"]}
    listeners["public"]["address"]["socket_address"]["port_value"] = public
    listeners["envoy_metrics"]["address"]["socket_address"]["port_value"] = metrics
    for name, port in (("gateway_loopback", gateway), ("envoy_admin", admin)):
        endpoint = clusters[name]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        endpoint["address"]["socket_address"]["port_value"] = port
    return overlay


@dataclass
class Unit:
    """One ECS task / Kubernetes pod: extproc + Envoy (via the wrapper), with the emulator as Bedrock."""

    stack: Stack
    envoy: subprocess.Popen[bytes]
    envoy_log: Path
    public: int
    metrics: int
    keys: Keys

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.public}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics}"

    def stop(self) -> None:
        # The wrapper and the Envoy it started: the whole process group (killing bash alone orphans Envoy).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.envoy.pid, signal.SIGKILL)
        self.envoy.wait()
        self.stack.stop()


def start_unit(workdir: Path, drain_seconds: int = 15) -> Unit:
    keys = Keys(alpha=mint_key(), haiku_only=mint_key())
    ports = Ports.free()
    public, metrics = free_port(), free_port()
    stack = Stack(workdir=workdir, ports=ports, env=write_gateway_files(workdir, keys))
    stack.workdir.mkdir(parents=True, exist_ok=True)
    stack.start_emulator()
    stack.start_extproc()
    overlay = workdir / "container.yaml"
    overlay.write_text(yaml.safe_dump(overlay_with_ports(ports.gateway, ports.admin, public, metrics)))
    env = {
        **os.environ,
        "PATH": f"{Path(_bin('envoy')).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "ENVOY_CONFIG": str(envoy_config(ports, workdir)),
        "ENVOY_OVERLAY": str(overlay),
        "ENVOY_ADMIN_PORT": str(ports.admin),
        "ENVOY_DRAIN_SECONDS": str(drain_seconds),
        "ENVOY_STOP_TIMEOUT_SECONDS": "30",
    }
    log = workdir / "run-envoy.log"
    with log.open("ab") as out:
        envoy = subprocess.Popen(["bash", str(WRAPPER), "--log-level", "warn"], env=env, stdout=out,
                                 stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
    unit = Unit(stack, envoy, log, public, metrics, keys)
    try:
        wait_http(f"{unit.url}/health", timeout=30)
    except Exception:
        unit.stop()
        raise AssertionError("the Envoy container did not come up:\n" + log.read_text(errors="replace")) from None
    return unit


@pytest.fixture(scope="module")
def unit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Unit]:
    unit = start_unit(tmp_path_factory.mktemp("unit"))
    yield unit
    unit.stop()


def test_envoy_accepts_the_bootstrap_with_the_container_overlay() -> None:
    result = subprocess.run(
        [_bin("envoy"), "--mode", "validate", "-c", str(ENVOY_YAML), "--config-yaml", OVERLAY.read_text(),
         "--disable-hot-restart", "--drain-strategy", "immediate"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "loading 3 listener(s)" in result.stdout + result.stderr


def test_overlay_only_adds_listeners_that_point_at_the_loopback_bootstrap() -> None:
    bootstrap = yaml.safe_load(ENVOY_YAML.read_text())
    overlay = yaml.safe_load(OVERLAY.read_text())
    assert set(overlay) == {"static_resources"}, "the overlay must not touch admin, runtime or anything else"
    existing = {item["name"] for kind in ("listeners", "clusters") for item in bootstrap["static_resources"][kind]}
    added = {item["name"] for kind in ("listeners", "clusters") for item in overlay["static_resources"][kind]}
    assert not existing & added, "Envoy appends overlay listeners and clusters: names must not clash"
    (gateway,) = bootstrap["static_resources"]["listeners"]
    clusters = {c["name"]: c for c in overlay["static_resources"]["clusters"]}

    def target(name: str) -> tuple[str, int]:
        address = clusters[name]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        return address["socket_address"]["address"], address["socket_address"]["port_value"]

    gateway_address = gateway["address"]["socket_address"]
    assert target("gateway_loopback") == (gateway_address["address"], gateway_address["port_value"])
    admin_address = bootstrap["admin"]["address"]["socket_address"]
    assert target("envoy_admin") == (admin_address["address"], admin_address["port_value"])
    ports = {item["name"]: item["address"]["socket_address"] for item in overlay["static_resources"]["listeners"]}
    assert ports == {"public": {"address": "0.0.0.0", "port_value": 8081},
                     "envoy_metrics": {"address": "0.0.0.0", "port_value": 9902}}


def test_gateway_answers_on_the_container_port(unit: Unit) -> None:
    assert httpx.get(f"{unit.url}/health").status_code == 200
    emulator = Emulator(unit.stack.emulator_url)
    emulator.clear()
    response = httpx.post(f"{unit.url}/v1/messages", headers={"x-api-key": unit.keys.alpha}, json=MESSAGE, timeout=20)
    assert response.status_code == 200, response.text
    assert response.json()["type"] == "message"
    assert response.headers["x-request-id"]
    assert len(emulator.requests()) == 1
    # Authentication still happens behind the extra hop: no key, no upstream call.
    assert httpx.post(f"{unit.url}/v1/messages", json=MESSAGE).status_code == 401
    assert len(emulator.requests()) == 1
    # Behind the loopback hop every client looks internal to Envoy, which then keeps client x-envoy-*
    # headers; the extproc's header allowlist must still drop them before routing: a 1 ms upstream
    # timeout, if honoured, would fail this request.
    emulator.clear()
    tricky = httpx.post(f"{unit.url}/v1/messages", json=MESSAGE, timeout=20, headers={
        "x-api-key": unit.keys.alpha, "x-envoy-upstream-rq-timeout-ms": "1", "x-envoy-max-retries": "3",
        "x-forwarded-for": "203.0.113.7"})
    assert tricky.status_code == 200, tricky.text
    (upstream,) = emulator.requests()
    assert not [name for name in upstream["headers"] if name.startswith("x-envoy") or name == "x-forwarded-for"]


def test_metrics_port_serves_prometheus_stats_and_nothing_else_of_the_admin_api(unit: Unit) -> None:
    stats = httpx.get(f"{unit.metrics_url}/stats/prometheus")
    assert stats.status_code == 200
    assert "envoy_http_downstream_rq_total" in stats.text
    assert 'envoy_cluster_upstream_rq_total{envoy_cluster_name="extproc"}' in stats.text
    assert httpx.get(f"{unit.metrics_url}/ready").status_code == 200
    for method, path in (("GET", "/config_dump"), ("POST", "/quitquitquit"), ("POST", "/healthcheck/fail"),
                         ("POST", "/drain_listeners"), ("GET", "/clusters"), ("POST", "/stats/prometheus")):
        assert httpx.request(method, f"{unit.metrics_url}{path}").status_code == 404, (method, path)
    assert httpx.get(f"{unit.url}/health").status_code == 200, "Envoy must still be serving"


def test_sigterm_drains_without_dropping_a_request(tmp_path: Path) -> None:
    """A rolling update: requests in flight finish, late arrivals are served and told to reconnect, then Envoy exits."""
    unit = start_unit(tmp_path, drain_seconds=2)
    try:
        results: list[object] = []

        def slow_request() -> None:
            body = {**MESSAGE, "messages": [{"role": "user", "content": "slowly [[emulator:slow=2500]]"}]}
            try:
                response = httpx.post(f"{unit.url}/v1/messages", headers={"x-api-key": unit.keys.alpha}, json=body,
                                      timeout=30)
                results.append(response.status_code)
            except httpx.HTTPError as exc:
                results.append(exc)

        threads = [threading.Thread(target=slow_request) for _ in range(3)]
        for thread in threads:
            thread.start()
        time.sleep(0.8)  # the three requests now wait on the emulator
        started = time.monotonic()
        unit.envoy.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        # The load balancer may still send a request during the drain: it is served, with `Connection: close`.
        late = httpx.post(f"{unit.url}/v1/messages", headers={"x-api-key": unit.keys.alpha}, json=MESSAGE, timeout=20)
        assert late.status_code == 200, late.text
        assert late.headers.get("connection") == "close"
        for thread in threads:
            thread.join(timeout=30)
        assert results == [200, 200, 200]
        assert unit.envoy.wait(timeout=30) == 0
        elapsed = time.monotonic() - started
        log = unit.envoy_log.read_text(errors="replace")
        assert "SIGTERM: draining" in log and "stopping Envoy (requests in flight: 0)" in log, log
        assert elapsed >= 2.0, "the listeners must stay open for the drain time"
        assert elapsed < 15, "Envoy must stop once nothing is in flight"
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", unit.public), timeout=2):
            pass
    finally:
        unit.stop()


def test_wrapper_reports_envoy_failing_on_its_own(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("static_resources: {listeners: [{name: x}]}\n")
    env = {**os.environ, "PATH": f"{Path(_bin('envoy')).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "ENVOY_CONFIG": str(bad), "ENVOY_OVERLAY": str(OVERLAY)}
    result = subprocess.run(["bash", str(WRAPPER), "--log-level", "critical"], env=env, capture_output=True,
                            timeout=60)
    assert result.returncode != 0


def test_the_image_ships_the_bootstrap_unchanged_with_the_overlay_and_wrapper() -> None:
    text = DOCKERFILE.read_text()
    instructions = [line.split(None, 1) for line in text.splitlines() if line and not line.startswith("#")]
    by_kind: dict[str, list[str]] = {}
    for kind, rest in instructions:
        by_kind.setdefault(kind, []).append(rest)
    assert by_kind["FROM"] == ["envoyproxy/envoy:v1.40.0"]
    copies = {tuple(rest.split()[-2:]) for rest in by_kind["COPY"]}
    assert copies == {("envoy/envoy.yaml", "/etc/envoy/envoy.yaml"),
                      ("deploy/envoy/container.yaml", "/etc/envoy/container.yaml"),
                      ("deploy/envoy/run-envoy.sh", "/usr/local/bin/run-envoy")}
    assert "RUN" not in by_kind, "the bootstrap is copied, never edited in the image"
    (user,) = by_kind["USER"]
    assert not user.startswith("0") and user.split(":")[0].isdigit()
    assert by_kind["ENTRYPOINT"] == ['["/usr/local/bin/run-envoy"]']
    # The wrapper's defaults are the paths the image copies to.
    wrapper = WRAPPER.read_text()
    assert "ENVOY_CONFIG:-/etc/envoy/envoy.yaml" in wrapper and "ENVOY_OVERLAY:-/etc/envoy/container.yaml" in wrapper
    assert os.access(WRAPPER, os.X_OK)
