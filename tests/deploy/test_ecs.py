"""deploy/ecs checked without Terraform or a cloud: the HCL parsed and its
references resolved, the task definition the module renders validated against
the ECS API's own input shape (botocore's RegisterTaskDefinition model), the
task's wiring (Envoy and the extproc on one localhost, health, drain timing,
secrets), the Bedrock policy checked for least privilege, and the collector
configuration.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import yaml
from botocore.validate import ParamValidator

from devstack import ENVOY_YAML, _bin
from extproc.config import parse_config
from extproc.keys import mint_key
from tests.deploy.terraform import (
    ACCOUNT,
    ECS,
    EXAMPLE,
    MODULE,
    ROOT,
    bedrock_arns,
    bedrock_policy,
    blocks,
    evaluate_local,
    load,
    locals_,
    placeholders,
    render,
    source,
    templatefile_arguments,
    tfvars,
    variable_defaults,
)

DEFAULTS = variable_defaults()
EXAMPLE_VARS = tfvars(EXAMPLE / "terraform.tfvars.example")
REGION = EXAMPLE_VARS["region"]
NAME = EXAMPLE_VARS["name"]
TEMPLATES = ("container_definitions.json.tftpl", "collector.yaml.tftpl", "bedrock_policy.json.tftpl")
BEDROCK_ACTIONS = {"bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream", "bedrock:CountTokens"}
# Fargate's task sizes: cpu units -> allowed memory (MiB).
FARGATE_SIZES = {256: {512, 1024, 2048}, 512: set(range(1024, 4097, 1024)), 1024: set(range(2048, 8193, 1024)),
                 2048: set(range(4096, 16385, 1024)), 4096: set(range(8192, 30721, 1024))}


def arn(service: str, resource: str) -> str:
    return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{resource}"


def shutdown_budget(stop_timeout: int) -> dict[str, int]:
    drain_delay = evaluate_local("extproc_drain_delay_seconds", {})
    return {
        "stop_timeout": stop_timeout,
        "envoy_drain_seconds": DEFAULTS["envoy_drain_seconds"],
        "envoy_stop_timeout_seconds": evaluate_local("envoy_stop_timeout_seconds", {"var.stop_timeout": stop_timeout}),
        "extproc_drain_delay_seconds": drain_delay,
        "extproc_grace_seconds": evaluate_local("extproc_grace_seconds", {
            "var.stop_timeout": stop_timeout, "local.extproc_drain_delay_seconds": drain_delay}),
    }


def collector_config() -> str:
    return render(MODULE / "collector.yaml.tftpl", {
        "region": REGION,
        "remote_write_url": f"https://aps-workspaces.{REGION}.amazonaws.com/workspaces/ws-0example/api/v1/remote_write",
    })


def container_definitions(enable_redis: bool = True, enable_metrics: bool = True, stop_timeout: int | None = None,
                          enable_execute_command: bool = False) -> list[dict[str, Any]]:
    """main.tf's local.container_definitions, with the example's names and made-up ARNs."""
    secrets = [{"name": "GATEWAY_ADMIN_TOKEN", "valueFrom": arn("secretsmanager", f"secret:{NAME}/admin-token-x")}]
    if enable_redis:
        secrets.append({"name": "GATEWAY_REDIS_URL", "valueFrom": arn("secretsmanager", f"secret:{NAME}/redis-url-x")})
    variables = {
        "log_region": REGION,
        "bedrock_region": REGION,
        "extproc_image": EXAMPLE_VARS["extproc_image"],
        "extproc_read_only_root": not enable_execute_command,
        "envoy_image": EXAMPLE_VARS["envoy_image"],
        "collector_image": DEFAULTS["collector_image"],
        "config_parameter_arn": arn("ssm", f"parameter/{NAME}/gateway.yaml"),
        "config_sha256": "0" * 64,
        "keys_secret_arn": arn("secretsmanager", f"secret:{NAME}/keys-x"),
        "extproc_secrets": secrets,
        "envoy_log_group": f"/ecs/{NAME}/envoy",
        "extproc_log_group": f"/ecs/{NAME}/extproc",
        "collector_log_group": f"/ecs/{NAME}/metrics",
        "collector_config": collector_config(),
        "extproc_workers": DEFAULTS["extproc_workers"],
        **shutdown_budget(stop_timeout or DEFAULTS["stop_timeout"]),
    }
    assert set(variables) == templatefile_arguments(MODULE, "container_definitions.json.tftpl")
    rendered = json.loads(render(MODULE / "container_definitions.json.tftpl", variables))
    return [c for c in rendered if c["name"] != "metrics" or enable_metrics]


def task_definition(definitions: list[dict[str, Any]]) -> dict[str, Any]:
    """The RegisterTaskDefinition call of aws_ecs_task_definition.gateway (fields read from the HCL)."""
    resource = blocks(MODULE, "resource")["aws_ecs_task_definition"]["gateway"]
    platform = resource["runtime_platform"][0]
    assert resource["cpu"] == "${var.cpu}" and resource["memory"] == "${var.memory}"
    return {
        "family": NAME,
        "taskRoleArn": f"arn:aws:iam::{ACCOUNT}:role/{NAME}-task",
        "executionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/{NAME}-execution",
        "networkMode": resource["network_mode"],
        "requiresCompatibilities": resource["requires_compatibilities"],
        "cpu": str(DEFAULTS["cpu"]),
        "memory": str(DEFAULTS["memory"]),
        "runtimePlatform": {"operatingSystemFamily": platform["operating_system_family"],
                            "cpuArchitecture": DEFAULTS["cpu_architecture"]},
        "volumes": [{"name": volume["name"]} for volume in resource["volume"]],
        "containerDefinitions": definitions,
    }


def validate(params: dict[str, Any]) -> str:
    model = botocore.session.get_session().get_service_model("ecs")
    shape = model.operation_model("RegisterTaskDefinition").input_shape
    report = ParamValidator().validate(params, shape)
    return report.generate_report() if report.has_errors() else ""


def by_name(definitions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in definitions}


def env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("environment", [])}


# --- HCL: parses, and every reference resolves (what `terraform validate` would check first) ---

def test_all_terraform_parses_and_every_reference_resolves() -> None:
    for path in sorted(ECS.rglob("*.tf")):
        load(path)
    text = source(MODULE)
    variables = set(blocks(MODULE, "variable"))
    assert set(re.findall(r"\bvar\.(\w+)", text)) <= variables
    unused = variables - set(re.findall(r"\bvar\.(\w+)", text))
    assert not unused, f"declared but unused variables: {unused}"
    assert set(re.findall(r"\blocal\.(\w+)", text)) <= set(locals_(MODULE))
    resources = blocks(MODULE, "resource")
    data = blocks(MODULE, "data")
    for kind, name in re.findall(r"(?<![\w.])((?:aws|random)_\w+|terraform_data)\.(\w+)", text):
        assert name in resources.get(kind, {}), f"{kind}.{name} is referenced but not declared"
    for kind, name in re.findall(r"\bdata\.(\w+)\.(\w+)", text):
        assert name in data.get(kind, {}), f"data.{kind}.{name} is referenced but not declared"
    outputs = set(blocks(MODULE, "output"))
    example = source(EXAMPLE)
    assert set(re.findall(r"\bmodule\.gateway\.(\w+)", example)) <= outputs
    assert set(re.findall(r"\bvar\.(\w+)", example)) <= set(blocks(EXAMPLE, "variable"))
    (call,) = [m["gateway"] for m in load(EXAMPLE / "main.tf")["module"]]
    arguments = set(call) - {"source"}
    assert arguments <= variables, f"the example passes unknown inputs: {arguments - variables}"
    required = {name for name, body in blocks(MODULE, "variable").items() if "default" not in body}
    assert required <= arguments, f"the example misses required inputs: {required - arguments}"
    assert set(EXAMPLE_VARS) <= set(blocks(EXAMPLE, "variable"))


def test_templates_use_only_the_checked_subset_and_get_exactly_their_variables() -> None:
    for template in TEMPLATES:
        assert placeholders(MODULE / template) == templatefile_arguments(MODULE, template), template


def test_provider_and_terraform_versions_are_pinned() -> None:
    for directory in (MODULE, EXAMPLE):
        (terraform,) = load(directory / "versions.tf")["terraform"]
        providers = terraform["required_providers"][0]
        assert providers["aws"]["version"] == ">= 6.0, < 7.0"
        assert terraform["required_version"].startswith(">=")


# --- The task definition against the ECS API ---

@pytest.mark.parametrize("enable_redis", [True, False])
@pytest.mark.parametrize("enable_metrics", [True, False])
@pytest.mark.parametrize("enable_execute_command", [False, True])
def test_task_definition_validates_against_the_ecs_api(enable_redis: bool, enable_metrics: bool,
                                                       enable_execute_command: bool) -> None:
    definitions = container_definitions(enable_redis, enable_metrics, enable_execute_command=enable_execute_command)
    assert validate(task_definition(definitions)) == ""
    names = [c["name"] for c in definitions]
    assert names == ["gateway-files", "extproc", "envoy"] + (["metrics"] if enable_metrics else [])
    secrets = {s["name"] for s in by_name(definitions)["extproc"]["secrets"]}
    assert secrets == ({"GATEWAY_ADMIN_TOKEN", "GATEWAY_REDIS_URL"} if enable_redis else {"GATEWAY_ADMIN_TOKEN"})
    # ECS Exec needs a writable root filesystem in the container it enters (the extproc), and only there.
    read_only = {c["name"]: c["readonlyRootFilesystem"] for c in definitions}
    assert read_only.pop("extproc") is (not enable_execute_command)
    assert all(read_only.values())


def test_the_ecs_validation_is_real() -> None:
    """A misspelled field, a wrong type and a missing family are all refused by the model."""
    for breaking in ({"portMapping": []}, {"stopTimeout": "120"}, {"essential": "yes"}):
        definitions = container_definitions()
        definitions[2].update(breaking)
        assert validate(task_definition(definitions)) != "", breaking
    params = task_definition(container_definitions())
    del params["family"]
    assert "Missing required parameter" in validate(params)


def test_fargate_rules_the_api_model_does_not_encode() -> None:
    params = task_definition(container_definitions())
    assert int(params["memory"]) in FARGATE_SIZES[int(params["cpu"])]
    assert params["networkMode"] == "awsvpc" and params["requiresCompatibilities"] == ["FARGATE"]
    volumes = {v["name"] for v in params["volumes"]}
    containers = by_name(params["containerDefinitions"])
    for container in containers.values():
        assert container.get("stopTimeout", 30) <= 120, container["name"]
        assert {m["sourceVolume"] for m in container.get("mountPoints", [])} <= volumes
        assert container["readonlyRootFilesystem"] is True, container["name"]
        assert not container.get("mountPoints") or container["name"] in ("gateway-files", "extproc")
        assert "privileged" not in container and "linuxParameters" not in container
        options = container["logConfiguration"]["options"]
        assert container["logConfiguration"]["logDriver"] == "awslogs"
        assert options["awslogs-region"] == REGION and options["awslogs-group"].startswith(f"/ecs/{NAME}/")
        for dependency in container.get("dependsOn", []):
            target = containers[dependency["containerName"]]
            if dependency["condition"] == "HEALTHY":
                assert "healthCheck" in target
            if dependency["condition"] in ("SUCCESS", "COMPLETE"):
                assert target["essential"] is False
        if "healthCheck" in container:
            check = container["healthCheck"]
            assert check["command"][0] in ("CMD", "CMD-SHELL")
            assert 5 <= check["interval"] <= 300 and 2 <= check["timeout"] <= 60
            assert 1 <= check["retries"] <= 10 and 0 <= check["startPeriod"] <= 300
    # Only the one-shot file writer runs as root (it hands the files to uid 10001): no port, not essential.
    roots = [c["name"] for c in containers.values() if c.get("user", "0").split(":")[0] == "0"
             and c["name"] != "metrics"]
    assert roots == ["gateway-files"]
    assert containers["gateway-files"]["essential"] is False and "portMappings" not in containers["gateway-files"]
    assert [c["name"] for c in containers.values() if c["essential"]] == ["extproc", "envoy"]


def test_envoy_and_the_extproc_share_the_tasks_localhost_as_envoy_yaml_expects() -> None:
    containers = by_name(container_definitions())
    extproc, envoy = containers["extproc"], containers["envoy"]
    bootstrap = yaml.safe_load(ENVOY_YAML.read_text())
    (cluster,) = [c for c in bootstrap["static_resources"]["clusters"] if c["name"] == "extproc"]
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert env(extproc)["EXTPROC_LISTEN"] == f"{address['address']}:{address['port_value']}"
    assert env(extproc)["EXTPROC_METRICS_LISTEN"].startswith("127.0.0.1:"), "scraped in the task, never exposed"
    overlay = yaml.safe_load((ROOT / "deploy" / "envoy" / "container.yaml").read_text())
    (public,) = [item for item in overlay["static_resources"]["listeners"] if item["name"] == "public"]
    port = public["address"]["socket_address"]["port_value"]
    assert [p["containerPort"] for p in envoy["portMappings"]] == [port]
    resources = blocks(MODULE, "resource")
    target_group = resources["aws_lb_target_group"]["gateway"]
    assert target_group["port"] == port and target_group["target_type"] == "ip"
    (balancer,) = resources["aws_ecs_service"]["gateway"]["load_balancer"]
    assert balancer["container_name"] == "envoy" and balancer["container_port"] == port
    rules = resources["aws_vpc_security_group_ingress_rule"]["tasks_from_alb"]
    assert rules["from_port"] == rules["to_port"] == port
    # The users the images were built with.
    envoy_user = re.search(r"(?m)^USER (\S+)", (ROOT / "docker" / "envoy.Dockerfile").read_text()).group(1)
    assert envoy["user"] == envoy_user
    extproc_dockerfile = ROOT / "docker" / "extproc.Dockerfile"
    extproc_user = re.search(r"(?m)^USER (\S+)", extproc_dockerfile.read_text()).group(1)
    assert extproc["user"] == extproc_user
    # The extproc image's own entry point is `extproc serve`; the task does not override it.
    assert "entryPoint" not in extproc and "command" not in extproc and "entryPoint" not in envoy


def test_health_is_wired_to_the_target_group_and_container_order() -> None:
    resources = blocks(MODULE, "resource")
    (check,) = resources["aws_lb_target_group"]["gateway"]["health_check"]
    assert check["path"] == "/health" and check["matcher"] == "200" and check["port"] == "traffic-port"
    containers = by_name(container_definitions())
    assert containers["envoy"]["dependsOn"] == [{"containerName": "extproc", "condition": "HEALTHY"}]
    assert containers["extproc"]["dependsOn"] == [{"containerName": "gateway-files", "condition": "SUCCESS"}]
    command = containers["extproc"]["healthCheck"]["command"]
    assert command[:3] == ["CMD", "python", "-c"] and "grpc_health" in command[3]
    service = resources["aws_ecs_service"]["gateway"]
    assert service["deployment_minimum_healthy_percent"] == 100 and service["deployment_maximum_percent"] == 200
    (breaker,) = service["deployment_circuit_breaker"]
    assert breaker == {"enable": True, "rollback": True}


@pytest.mark.parametrize("stop_timeout", [30, 60, 120])
def test_shutdown_fits_the_stop_timeout(stop_timeout: int) -> None:
    containers = by_name(container_definitions(stop_timeout=stop_timeout))
    envoy, extproc = containers["envoy"], containers["extproc"]
    envoy_env, extproc_env = env(envoy), env(extproc)
    assert envoy["stopTimeout"] == extproc["stopTimeout"] == stop_timeout
    assert int(envoy_env["ENVOY_DRAIN_SECONDS"]) < int(envoy_env["ENVOY_STOP_TIMEOUT_SECONDS"]) < stop_timeout
    drain_delay, grace = int(extproc_env["EXTPROC_DRAIN_DELAY_SECONDS"]), int(extproc_env["EXTPROC_GRACE_SECONDS"])
    assert 0 < drain_delay and 0 < grace and drain_delay + grace < stop_timeout
    validation = blocks(MODULE, "variable")["stop_timeout"]["validation"][0]["condition"]
    assert "var.stop_timeout >= 30" in validation and "var.stop_timeout <= 120" in validation


def test_load_balancer_timeouts_outlast_envoys() -> None:
    bootstrap = yaml.safe_load(ENVOY_YAML.read_text())
    (listener,) = bootstrap["static_resources"]["listeners"]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    envoy_idle = int(manager["stream_idle_timeout"].rstrip("s"))
    assert DEFAULTS["alb_idle_timeout"] >= envoy_idle
    assert DEFAULTS["deregistration_delay"] >= 60
    listeners = blocks(MODULE, "resource")["aws_lb_listener"]
    assert set(listeners) == {"https"}, "no plain-HTTP listener: an API key must never travel in clear text"
    assert listeners["https"]["protocol"] == "HTTPS" and "TLS13" in listeners["https"]["ssl_policy"]


def test_secrets_reach_the_containers_only_through_ecs_secrets() -> None:
    containers = by_name(container_definitions())
    files = containers["gateway-files"]
    assert {s["name"]: s["valueFrom"] for s in files["secrets"]} == {
        "GATEWAY_CONFIG_YAML": arn("ssm", f"parameter/{NAME}/gateway.yaml"),
        "GATEWAY_KEYS_YAML": arn("secretsmanager", f"secret:{NAME}/keys-x"),
    }
    assert "GATEWAY_CONFIG_SHA256" in env(files), "a configuration change must change the task definition"
    for container in containers.values():
        for name, value in env(container).items():
            assert not re.search(r"(?i)token|password|secret|key$", name) or name == "GATEWAY_KEYS_FILE", name
            assert "rediss://" not in value and "redis://" not in value
    extproc_env = env(containers["extproc"])
    assert extproc_env["GATEWAY_CONFIG"] == "/run/gateway/gateway.yaml"
    assert extproc_env["GATEWAY_KEYS_FILE"] == "/run/gateway/keys.yaml"
    mounts = {m["containerPath"]: m for m in containers["extproc"]["mountPoints"]}
    assert mounts["/run/gateway"]["readOnly"] is True


def test_the_file_writer_writes_what_the_extproc_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the gateway-files container's script (paths moved to a temporary directory), then
    `extproc config check` on its output, as the container's last step does."""
    files = by_name(container_definitions())["gateway-files"]
    assert files["entryPoint"] == ["python", "-c"]
    (script,) = files["command"]
    assert script.count('"/run/gateway"') == 1 and script.count('"/run/extproc-tmp"') == 1 and "os.execvp" in script
    (tmp_path / "tmp").mkdir()
    config_text = (EXAMPLE / "gateway.yaml").read_text()
    keys_text = f'{{"team-a": "{mint_key()}", "team-b": "{mint_key()}"}}'  # the console's key/value JSON
    monkeypatch.setenv("GATEWAY_CONFIG_YAML", config_text)
    monkeypatch.setenv("GATEWAY_KEYS_YAML", keys_text)
    chowned: list[tuple[str, int, int]] = []
    monkeypatch.setattr(os, "chown", lambda path, uid, gid: chowned.append((Path(path).name, uid, gid)))
    executed: list[list[str]] = []
    monkeypatch.setattr(os, "execvp", lambda file, args: executed.append(list(args)))
    moved = script.replace('"/run/gateway"', repr(str(tmp_path))).replace('"/run/extproc-tmp"',
                                                                          repr(str(tmp_path / "tmp")))
    exec(compile(moved, "gateway-files", "exec"), {})  # noqa: S102
    assert (tmp_path / "gateway.yaml").read_text() == config_text
    assert (tmp_path / "keys.yaml").read_text() == keys_text
    for name in ("gateway.yaml", "keys.yaml"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o400
    user = by_name(container_definitions())["extproc"]["user"]
    assert sorted(chowned) == sorted((n, *map(int, user.split(":"))) for n in ("gateway.yaml", "keys.yaml", "tmp"))
    assert (tmp_path / "tmp").stat().st_mode & 0o777 == 0o700
    # The extproc's /tmp is the volume handed over here.
    extproc = by_name(container_definitions())["extproc"]
    extproc_mounts = {m["containerPath"]: m["sourceVolume"] for m in extproc["mountPoints"]}
    file_mounts = {m["sourceVolume"]: m["containerPath"] for m in files["mountPoints"]}
    assert file_mounts[extproc_mounts["/tmp"]] == "/run/extproc-tmp"
    assert file_mounts[extproc_mounts["/run/gateway"]] == "/run/gateway"
    assert executed == [["extproc", "config", "check"]]
    files_env = env(files)
    check = subprocess.run(
        [_bin("extproc"), *executed[0][1:]], capture_output=True, text=True, timeout=60,
        env={**os.environ, "GATEWAY_CONFIG": str(tmp_path / Path(files_env["GATEWAY_CONFIG"]).name),
             "GATEWAY_KEYS_FILE": str(tmp_path / Path(files_env["GATEWAY_KEYS_FILE"]).name)})
    assert check.returncode == 0, check.stderr
    assert "2 keys" in check.stdout


def test_example_configuration_fits_the_deployment() -> None:
    config = parse_config((EXAMPLE / "gateway.yaml").read_text(), "gateway.yaml")
    assert DEFAULTS["enable_redis"] is True and config.limits.backend == "redis"
    assert EXAMPLE_VARS["max_count"] > 1
    checks = blocks(MODULE, "resource")["terraform_data"]["checks"]["lifecycle"][0]["precondition"]
    conditions = " ".join(c["condition"] for c in checks)
    assert "var.enable_redis || var.max_count == 1" in conditions
    assert "var.extproc_workers == 1 || var.enable_redis" in conditions
    assert env(by_name(container_definitions())["extproc"])["EXTPROC_WORKERS"] == "1"
    assert 'local.limits_backend == (var.enable_redis ? "redis" : "memory")' in conditions


def test_collector_scrapes_both_metric_endpoints_of_its_own_task() -> None:
    config = yaml.safe_load(collector_config())
    scrape = {job["job_name"]: job for job in config["receivers"]["prometheus"]["config"]["scrape_configs"]}
    extproc_metrics = env(by_name(container_definitions())["extproc"])["EXTPROC_METRICS_LISTEN"]
    assert scrape["extproc"]["static_configs"][0]["targets"] == [extproc_metrics]
    assert scrape["extproc"]["metrics_path"] == "/metrics"
    admin = yaml.safe_load(ENVOY_YAML.read_text())["admin"]["address"]["socket_address"]
    assert scrape["envoy"]["static_configs"][0]["targets"] == [f"{admin['address']}:{admin['port_value']}"]
    assert scrape["envoy"]["metrics_path"] == "/stats/prometheus"
    exporter = config["exporters"]["prometheusremotewrite"]
    assert exporter["endpoint"].endswith("/api/v1/remote_write") and exporter["auth"]["authenticator"] == "sigv4auth"
    assert exporter["resource_to_telemetry_conversion"]["enabled"] is True, "tasks must not overwrite each other"
    assert config["extensions"]["sigv4auth"] == {"region": REGION, "service": "aps"}
    pipeline = config["service"]["pipelines"]["metrics"]
    assert pipeline == {"receivers": ["prometheus"], "processors": ["resourcedetection", "batch"],
                        "exporters": ["prometheusremotewrite"]}
    assert "ecs" in config["processors"]["resourcedetection"]["detectors"]
    metrics = by_name(container_definitions())["metrics"]
    assert yaml.safe_load(env(metrics)["AOT_CONFIG_CONTENT"]) == config
    assert metrics["essential"] is False, "losing metrics must not stop the gateway"


# --- IAM ---

def example_policy(guardrails: list[str] | None = None) -> dict[str, Any]:
    arns = bedrock_arns(REGION, EXAMPLE_VARS["bedrock_inference_profile_ids"],
                        EXAMPLE_VARS["bedrock_foundation_model_ids"], EXAMPLE_VARS["bedrock_model_regions"])
    assert set(arns) | {"guardrail_arns"} == templatefile_arguments(MODULE, "bedrock_policy.json.tftpl")
    return bedrock_policy(arns, guardrails or [])


def test_arn_formats_mirror_the_module() -> None:
    text = source(MODULE)
    for expected in (
        '"arn:${local.partition}:bedrock:${local.bedrock_region}:${local.account_id}:inference-profile/${id}"',
        '"arn:${local.partition}:bedrock:${region}::foundation-model/${id}"',
        '"arn:${local.partition}:bedrock:${local.bedrock_region}::foundation-model/${id}"',
        "statement if length(statement.Resource) > 0",
    ):
        assert expected in text, expected


def test_bedrock_policy_is_least_privilege() -> None:
    policy = example_policy()
    assert policy["Version"] == "2012-10-17"
    actions: set[str] = set()
    resources: set[str] = set()
    for statement in policy["Statement"]:
        assert set(statement) == {"Sid", "Effect", "Action", "Resource"}, "no NotAction, NotResource or Principal"
        assert statement["Effect"] == "Allow"
        assert all("*" not in a and "?" not in a for a in statement["Action"])
        assert all("*" not in r and "?" not in r for r in statement["Resource"])
        actions |= set(statement["Action"])
        resources |= set(statement["Resource"])
    assert actions == BEDROCK_ACTIONS
    profiles = {f"arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/{p}"
                for p in EXAMPLE_VARS["bedrock_inference_profile_ids"]}
    models = {f"arn:aws:bedrock:{r}::foundation-model/{m}"
              for r in EXAMPLE_VARS["bedrock_model_regions"] for m in EXAMPLE_VARS["bedrock_foundation_model_ids"]}
    assert resources == profiles | models
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert set(by_sid["CountTokens"]["Action"]) == {"bedrock:CountTokens"}
    assert all(f":{REGION}::" in r for r in by_sid["CountTokens"]["Resource"]), "count tokens in the home region only"
    assert set(by_sid["InvokeThroughInferenceProfiles"]["Resource"]) == profiles
    # Exactly the models the example configuration can call: nothing unused, nothing missing.
    config = parse_config((EXAMPLE / "gateway.yaml").read_text(), "gateway.yaml")
    bedrock_ids = {entry.bedrock_id for entry in config.models.catalogue.values()}
    base_ids = {entry.base_id for entry in config.models.catalogue.values()}
    assert set(EXAMPLE_VARS["bedrock_inference_profile_ids"]) == bedrock_ids
    assert set(EXAMPLE_VARS["bedrock_foundation_model_ids"]) == base_ids


def test_guardrails_are_allowed_only_when_configured() -> None:
    assert "ApplyGuardrails" not in {s["Sid"] for s in example_policy()["Statement"]}
    guardrail = arn("bedrock", "guardrail/abc123def456")
    statements = {s["Sid"]: s for s in example_policy([guardrail])["Statement"]}
    assert statements["ApplyGuardrails"]["Action"] == ["bedrock:ApplyGuardrail"]
    assert statements["ApplyGuardrails"]["Resource"] == [guardrail]


def test_no_other_policy_grants_a_wildcard_resource_unless_justified() -> None:
    """Policy documents in HCL: "*" resources only where AWS offers nothing narrower, each with its reason."""
    documents = blocks(MODULE, "data")["aws_iam_policy_document"]
    wildcard = {name for name, body in documents.items()
                for statement in body.get("statement", []) if "*" in statement.get("resources", [])}
    assert wildcard == {"kms", "task_exec"}
    text = "\n".join(p.read_text() for p in MODULE.glob("*.tf"))
    for name in wildcard:
        block = text[text.index(f'data "aws_iam_policy_document" "{name}"'):]
        block = block[:block.index("\n}\n")]
        assert "checkov:skip=CKV_AWS_356:" in block and "checkov:skip=CKV_AWS_111:" in block
    for name, body in documents.items():
        for statement in body.get("statement", []):
            assert all("*" not in action for action in statement["actions"] if name != "kms"), (name, statement)
    execution = documents["execution_secrets"]["statement"]
    assert {s["sid"]: s["actions"] for s in execution} == {
        "ReadGatewaySecrets": ["secretsmanager:GetSecretValue"],
        "ReadGatewayConfig": ["ssm:GetParameters"],
        "DecryptGatewaySecrets": ["kms:Decrypt"],
    }
    roles = blocks(MODULE, "resource")["aws_iam_role"]
    assert set(roles) == {"task", "execution"}
    task_trust = documents["task_assume"]["statement"][0]
    assert {c["variable"] for c in task_trust["condition"]} == {"aws:SourceAccount", "aws:SourceArn"}


def test_no_access_key_shaped_strings_anywhere_in_deploy() -> None:
    pattern = re.compile(r"AKIA[0-9A-Z]{16}")
    for path in [*ROOT.joinpath("deploy").rglob("*"), *ROOT.joinpath("docker").rglob("*")]:
        if path.is_file():
            assert not pattern.search(path.read_text(errors="replace")), path
