"""Reading compose.yaml (through docker-compose itself) and the Dockerfiles, for tests/stack."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack import ROOT

COMPOSE = ROOT / "compose.yaml"
COMPOSE_BEDROCK = ROOT / "compose.bedrock.yaml"
ENVOY_OVERLAY = ROOT / "deploy" / "envoy" / "container.yaml"

# DESIGN.md "Ports": what a developer finds on 127.0.0.1, with `make run` or with compose.
CONTRACT_PORTS = {8080: "gateway", 9901: "envoy admin stats", 50051: "extproc grpc", 9464: "extproc metrics",
                  8090: "bedrock emulator", 8428: "victoria-metrics", 3000: "grafana"}


def docker_compose() -> str:
    """docker-compose: Debian's package (Compose v1.29), which .ci/run installs; no Docker engine is needed."""
    found = shutil.which("docker-compose")
    if not found:
        pytest.skip("docker-compose is not installed (Debian: apt-get install docker-compose; .ci/run does)")
    return found


def compose_config(*files: Path, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """``docker-compose -f ... config``: the files validated, merged and interpolated, as compose would run them."""
    args = [docker_compose()]
    for path in files:
        args += ["-f", str(path)]
    # Only what compose needs, so that the caller's shell (its AWS_* or GRAFANA_*) cannot leak in.
    base = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "LC_ALL") if key in os.environ}
    result = subprocess.run([*args, "config"], capture_output=True, text=True, env={**base, **env}, cwd=ROOT,
                            timeout=60)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def resolved(*files: Path, env: dict[str, str]) -> dict[str, Any]:
    return yaml.safe_load(compose_config(*files, env=env).stdout)


def published(service: dict[str, Any]) -> dict[int, tuple[str, int]]:
    """Host port -> (host address, container port) of a resolved service (docker-compose v1 prints short syntax)."""
    ports: dict[int, tuple[str, int]] = {}
    for entry in service.get("ports", []):
        if isinstance(entry, dict):  # long syntax (compose v2)
            ports[int(entry["published"])] = (entry.get("host_ip", ""), int(entry["target"]))
            continue
        spec = entry.split("/")[0]
        host_ip, host_port, container_port = spec.rsplit(":", 2) if spec.count(":") == 2 else ("", *spec.split(":"))
        ports[int(host_port)] = (host_ip, int(container_port))
    return ports


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str, bool]]:
    """(host path, container path, read-only) of every bind mount of a resolved service."""
    mounts = []
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            if entry.get("type") == "bind":
                mounts.append((Path(entry["source"]), entry["target"], bool(entry.get("read_only"))))
            continue
        parts = entry.split(":")
        if parts[0].startswith(("/", ".")):
            mounts.append((Path(parts[0]), parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
    return mounts


def named_volumes(service: dict[str, Any]) -> dict[str, str]:
    """Named volume -> container path of a resolved service."""
    found = {}
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            if entry.get("type") == "volume":
                found[entry["source"]] = entry["target"]
            continue
        source, target = entry.split(":")[:2]
        if not source.startswith(("/", ".")):
            found[source] = target
    return found


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


def dockerfile_stages(path: Path) -> list[Stage]:
    """The stages of a Dockerfile, ARG defaults before the first FROM substituted into FROM lines."""
    text = re.sub(r"\\\n", "", "\n".join(line for line in path.read_text().splitlines()
                                           if not line.lstrip().startswith("#")) + "\n")
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        keyword, _, rest = line.strip().partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            image, *alias = rest.split()
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), image)
            stages.append(Stage(base=image, name=alias[-1] if alias else None))
        elif stages:
            stages[-1].instructions.append((keyword, rest))
    return stages


def exec_form(args: str) -> list[str]:
    """An instruction's JSON (exec) form, e.g. ENTRYPOINT ["extproc", "serve"]."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(item, str) for item in value), args
    return value


def healthcheck_command(stage: Stage) -> list[str]:
    """The CMD of the stage's HEALTHCHECK, in exec form."""
    healthcheck = stage.last("HEALTHCHECK")
    assert healthcheck, "no HEALTHCHECK"
    _, _, command = healthcheck.partition("CMD ")
    return exec_form(command.strip())


def env_of(stage: Stage) -> dict[str, str]:
    """ENV key=value pairs of a stage (the form these Dockerfiles use)."""
    env = {}
    for args in stage.all("ENV"):
        for item in re.findall(r"(\w+)=(\S+)", args):
            env[item[0]] = item[1]
    return env
