"""deploy/k8s rendered as `kubectl kustomize` would (tests/deploy/kustomize.py),
validated against the Kubernetes API schemas offline (kubernetes-validate), and
checked for what the gateway needs: one pod with Envoy and the extproc on a
shared localhost, probes, security context, scaling, drain timing, wiring of
the configuration and secrets, and the extproc's gRPC health probe run for real.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from devstack import ENVOY_YAML, Ports, Stack, _bin
from extproc.config import parse_config
from extproc.keys import mint_key
from tests.deploy.kustomize import render

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAY = ROOT / "deploy" / "envoy" / "container.yaml"
ECS_TEMPLATE = ROOT / "deploy" / "ecs" / "modules" / "gateway" / "container_definitions.json.tftpl"
# Oldest and newest Kubernetes versions the manifests are validated against.
KUBERNETES_VERSIONS = ("1.29.0", "1.37.0")
LABELS = {"app.kubernetes.io/name": "bedrock-gateway", "app.kubernetes.io/component": "gateway"}


@pytest.fixture(scope="module")
def k8s_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/k8s with the secret inputs an operator creates (README steps), from the committed examples."""
    directory = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, directory)
    (directory / "keys.yaml").write_text((K8S / "keys.yaml.example").read_text() + f"team-a: {mint_key()}\n")
    (directory / "admin-token").write_text(mint_key())
    shutil.copy(K8S / "redis.env.example", directory / "redis.env")
    return directory


@pytest.fixture(scope="module")
def objects(k8s_dir: Path) -> list[dict[str, Any]]:
    return render(k8s_dir)


def one(objects: list[dict[str, Any]], kind: str, prefix: str = "bedrock-gateway") -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].startswith(prefix)
                and (kind not in ("Service", "Secret") or o["metadata"]["name"].startswith(prefix))]
    return found


def by_name(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objects, "Deployment")["spec"]["template"]["spec"]


def container(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (found,) = [c for c in pod(objects)["containers"] if c["name"] == name]
    return found


def env(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def test_secret_inputs_are_ignored_by_git_and_not_committed() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    inputs = [f for g in kustomization["secretGenerator"] for f in g.get("files", []) + g.get("envs", [])]
    assert sorted(inputs) == ["admin-token", "keys.yaml", "redis.env"]
    for name in inputs:
        path = str((K8S / name).relative_to(ROOT))
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
        assert ignored.returncode == 0, f"{path} holds secrets: .gitignore must keep it out of git"
        tracked = subprocess.run(["git", "ls-files", "--error-unmatch", path], cwd=ROOT, capture_output=True)
        assert tracked.returncode != 0, f"{path} holds secrets and is committed"
    assert (K8S / "keys.yaml.example").exists() and (K8S / "redis.env.example").exists()


def test_every_object_validates_against_the_kubernetes_schemas(objects: list[dict[str, Any]]) -> None:
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(["Namespace", "ServiceAccount", "ConfigMap", "Secret", "Secret", "Deployment", "Service",
                            "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy"])
    for version in KUBERNETES_VERSIONS:
        for resource in objects:
            kubernetes_validate.validate(resource, version, strict=True)


def test_the_validator_catches_a_bad_manifest(objects: list[dict[str, Any]]) -> None:
    """The schema check above is real: a misspelled field and a wrong type are refused."""
    deployment = yaml.safe_load(yaml.safe_dump(one(objects, "Deployment")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)
    deployment = yaml.safe_load(yaml.safe_dump(one(objects, "Deployment")))
    deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "soon"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_everything_lands_in_the_gateway_namespace(objects: list[dict[str, Any]]) -> None:
    namespace = one(objects, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for resource in objects:
        if resource["kind"] != "Namespace":
            assert resource["metadata"]["namespace"] == namespace["metadata"]["name"], resource["metadata"]["name"]


def test_one_pod_holds_envoy_and_the_extproc_on_a_shared_localhost(objects: list[dict[str, Any]]) -> None:
    spec = pod(objects)
    assert [c["name"] for c in spec["containers"]] == ["envoy", "extproc"]
    assert not spec.get("hostNetwork")
    envoy, extproc = container(objects, "envoy"), container(objects, "extproc")
    assert envoy["image"] == "bedrock-gateway/envoy:0.1.0"
    assert extproc["image"] == "bedrock-gateway/extproc:0.1.0"
    # envoy.yaml reaches the extproc at 127.0.0.1:50051: the extproc listens there, on loopback only.
    bootstrap = yaml.safe_load(ENVOY_YAML.read_text())
    (cluster,) = [c for c in bootstrap["static_resources"]["clusters"] if c["name"] == "extproc"]
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert env(extproc)["EXTPROC_LISTEN"] == f"{address['address']}:{address['port_value']}" == "127.0.0.1:50051"
    # The ports the pod exposes are the overlay's listeners and the extproc's metrics.
    overlay = yaml.safe_load(OVERLAY.read_text())
    overlay_ports = {item["name"]: item["address"]["socket_address"]["port_value"]
                     for item in overlay["static_resources"]["listeners"]}
    ports = {p["name"]: p["containerPort"] for p in envoy["ports"]}
    assert ports == {"http": overlay_ports["public"], "envoy-metrics": overlay_ports["envoy_metrics"]}
    assert {p["name"]: p["containerPort"] for p in extproc["ports"]} == {"metrics": 9464}
    assert env(extproc)["EXTPROC_METRICS_LISTEN"] == "0.0.0.0:9464"


def test_probes_cover_health_and_the_extprocs_grpc_health(objects: list[dict[str, Any]]) -> None:
    envoy, extproc = container(objects, "envoy"), container(objects, "extproc")
    assert envoy["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert envoy["livenessProbe"]["httpGet"] == {"path": "/ready", "port": "envoy-metrics"}
    assert extproc["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert extproc["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    command = extproc["livenessProbe"]["exec"]["command"]
    assert command[:2] == ["python", "-c"] and "grpc_health" in command[2] and "127.0.0.1:50051" in command[2]
    assert extproc["livenessProbe"]["timeoutSeconds"] > 3, "the probe's own gRPC timeout is 3 s"


def test_same_grpc_health_probe_as_the_ecs_task() -> None:
    definitions = ECS_TEMPLATE.read_text()
    deployment = yaml.safe_load((K8S / "deployment.yaml").read_text())
    (extproc,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "extproc"]
    script = extproc["livenessProbe"]["exec"]["command"][2]
    assert script.replace("\n", "\\n").replace('"', '\\"') in definitions


def _wait_draining(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).close()
        except urllib.error.HTTPError as exc:
            if exc.code == 503:
                return
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered 503")


def test_grpc_health_probe_script_against_a_real_extproc(tmp_path: Path) -> None:
    """The liveness command, run as the kubelet (and ECS) would: 0 while serving, 1 once draining."""
    deployment = yaml.safe_load((K8S / "deployment.yaml").read_text())
    (extproc,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "extproc"]
    command = list(extproc["livenessProbe"]["exec"]["command"])
    ports = Ports.free()
    stack = Stack(workdir=tmp_path, ports=ports, with_emulator=False,
                  env={"EXTPROC_DRAIN_DELAY_SECONDS": "30", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"})
    command[2] = command[2].replace("127.0.0.1:50051", f"127.0.0.1:{ports.extproc}")
    command[0] = str(Path(_bin("extproc")).with_name("python"))
    try:
        stack.start_extproc()
        assert subprocess.run(command, timeout=30).returncode == 0
        stack.processes["extproc"].popen.send_signal(signal.SIGTERM)
        _wait_draining(f"http://127.0.0.1:{ports.metrics}/healthz")
        failed = subprocess.run(command, timeout=30, capture_output=True)
        assert failed.returncode == 1, failed.stderr
        stack.processes["extproc"].popen.kill()
    finally:
        stack.stop()


def test_security_context_non_root_read_only_no_capabilities(objects: list[dict[str, Any]]) -> None:
    spec = pod(objects)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    for c in spec["containers"]:
        context = c["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] >= 10000, c["name"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and "memory" in c["resources"]["limits"]
        assert c["imagePullPolicy"] == "Always"
    # The images' own users (docker/*.Dockerfile), so files they own stay theirs.
    envoy_user = next(line.split()[1] for line in (ROOT / "docker" / "envoy.Dockerfile").read_text().splitlines()
                      if line.startswith("USER "))
    envoy_context = container(objects, "envoy")["securityContext"]
    assert envoy_user == f"{envoy_context['runAsUser']}:{envoy_context['runAsGroup']}"
    assert container(objects, "extproc")["securityContext"]["runAsUser"] == 10001
    assert spec["securityContext"]["fsGroup"] == 10001, "the mounted keys (mode 0440) must be readable by the extproc"


def test_configuration_and_secrets_are_wired_to_the_extproc(objects: list[dict[str, Any]], tmp_path: Path) -> None:
    spec = pod(objects)
    extproc = container(objects, "extproc")
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in extproc["volumeMounts"]}
    files: dict[str, str] = {}
    for mount_path, mount in mounts.items():
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            data = by_name(objects, "ConfigMap", volume["configMap"]["name"])["data"]
        elif "secret" in volume:
            secret = by_name(objects, "Secret", volume["secret"]["secretName"])
            data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
            assert volume["secret"]["defaultMode"] == 0o440
        else:
            continue
        assert mount["readOnly"] is True
        files.update({f"{mount_path}/{key}": value for key, value in data.items()})
    variables = env(extproc)
    for name in ("GATEWAY_CONFIG", "GATEWAY_KEYS_FILE", "GATEWAY_ADMIN_TOKEN_FILE"):
        assert variables[name] in files, f"{name}={variables[name]} is not a mounted file"
    reference = variables["GATEWAY_REDIS_URL"]["secretKeyRef"]
    redis = by_name(objects, "Secret", reference["name"])
    assert base64.b64decode(redis["data"][reference["key"]]).decode().startswith("redis://")
    config = parse_config(files[variables["GATEWAY_CONFIG"]], "deploy/k8s/gateway.yaml")
    assert config.limits.backend == "redis", "replicas share limits only through Redis"
    # What the extproc itself makes of those files, exactly as mounted.
    local = {}
    for path, text in files.items():
        target = tmp_path / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        local[path] = str(target)
    check_env = {**os.environ, "GATEWAY_CONFIG": local[variables["GATEWAY_CONFIG"]],
                 "GATEWAY_KEYS_FILE": local[variables["GATEWAY_KEYS_FILE"]],
                 "GATEWAY_ADMIN_TOKEN_FILE": local[variables["GATEWAY_ADMIN_TOKEN_FILE"]]}
    result = subprocess.run([_bin("extproc"), "config", "check"], env=check_env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "1 keys" in result.stdout


def test_rolling_updates_drain_within_the_grace_period(objects: list[dict[str, Any]]) -> None:
    spec = pod(objects)
    envoy, extproc = env(container(objects, "envoy")), env(container(objects, "extproc"))
    grace = spec["terminationGracePeriodSeconds"]
    drain_delay, extproc_grace = int(extproc["EXTPROC_DRAIN_DELAY_SECONDS"]), int(extproc["EXTPROC_GRACE_SECONDS"])
    envoy_drain, envoy_stop = int(envoy["ENVOY_DRAIN_SECONDS"]), int(envoy["ENVOY_STOP_TIMEOUT_SECONDS"])
    # The extproc serves every request Envoy accepted: it stops taking new streams only after Envoy's listeners close.
    assert drain_delay > envoy_drain
    assert drain_delay + extproc_grace < grace and envoy_stop < grace
    assert envoy_stop >= drain_delay + extproc_grace, "Envoy must outlive the extproc's in-flight streams"
    strategy = one(objects, "Deployment")["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


def test_scaling_disruption_service_and_scraping_select_the_gateway_pods(objects: list[dict[str, Any]]) -> None:
    deployment = one(objects, "Deployment")
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == LABELS
    assert LABELS.items() <= template_labels.items()
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    assert hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == LABELS
    assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]
    assert one(objects, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"] == LABELS
    container_ports = {p["name"]: p["containerPort"] for c in pod(objects)["containers"] for p in c["ports"]}
    gateway = by_name(objects, "Service", "bedrock-gateway")
    assert gateway["spec"]["selector"] == LABELS
    assert [(p["port"], p["targetPort"]) for p in gateway["spec"]["ports"]] == [(80, "http")]
    envoy_metrics = by_name(objects, "Service", "bedrock-gateway-envoy-metrics")
    assert envoy_metrics["spec"]["selector"] == LABELS
    annotations = envoy_metrics["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == "/stats/prometheus"
    assert int(annotations["prometheus.io/port"]) == container_ports["envoy-metrics"]
    pod_annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert pod_annotations["prometheus.io/scrape"] == "true" and pod_annotations["prometheus.io/path"] == "/metrics"
    assert int(pod_annotations["prometheus.io/port"]) == container_ports["metrics"]
    allowed = {p["port"] for rule in one(objects, "NetworkPolicy")["spec"]["ingress"] for p in rule["ports"]}
    assert allowed == {container_ports["http"], container_ports["envoy-metrics"], container_ports["metrics"]}


def test_optional_podmonitor_scrapes_both_endpoints(objects: list[dict[str, Any]]) -> None:
    monitor = yaml.safe_load((K8S / "monitoring" / "podmonitor.yaml").read_text())
    assert monitor["spec"]["selector"]["matchLabels"] == LABELS
    container_ports = {p["name"] for c in pod(objects)["containers"] for p in c["ports"]}
    endpoints = {(e["port"], e["path"]) for e in monitor["spec"]["podMetricsEndpoints"]}
    assert endpoints == {("metrics", "/metrics"), ("envoy-metrics", "/stats/prometheus")}
    assert {port for port, _ in endpoints} <= container_ports


def test_a_changed_configuration_gets_a_new_name_and_rolls_the_pods(k8s_dir: Path,
                                                                    objects: list[dict[str, Any]]) -> None:
    before = one(objects, "ConfigMap")["metadata"]["name"]
    changed = k8s_dir.parent / "changed"
    shutil.copytree(k8s_dir, changed)
    (changed / "gateway.yaml").write_text((changed / "gateway.yaml").read_text() + "\n# changed\n")
    after = render(changed)
    name = one(after, "ConfigMap")["metadata"]["name"]
    assert name != before and name.startswith("bedrock-gateway-config-")
    volumes = {v["name"]: v for v in pod(after)["volumes"]}
    assert volumes["config"]["configMap"]["name"] == name
