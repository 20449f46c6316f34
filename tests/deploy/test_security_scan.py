"""Static security scan (checkov) of everything that deploys the gateway: the
Terraform of deploy/ecs, the Kubernetes manifests as kustomize renders them,
the Dockerfiles of docker/, and secrets in deploy/ and docker/. Every finding
must be fixed or suppressed in place with its reason
(``# checkov:skip=ID:reason`` in Terraform and Dockerfiles, a
``checkov.io/skipN: ID=reason`` annotation in Kubernetes manifests).

checkov cannot live in .venv: it pins boto3==1.35.49 and the gateway needs
boto3>=1.36. So `make test` installs the version pinned in
scanner-requirements.txt into a virtualenv of its own (`make scanner`,
var/tools/checkov), and this test runs it from there, offline
(--skip-download: no call to the vendor's platform).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from extproc.keys import mint_key
from tests.deploy.kustomize import render

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"

@pytest.fixture(scope="module")
def checkov() -> Path:
    """checkov, from the virtualenv `make scanner` installs."""
    binary = ROOT / "var" / "tools" / "checkov" / "bin" / "checkov"
    assert binary.exists(), "checkov is not installed: run `make scanner` (`make test` does)"
    return binary


@pytest.fixture(scope="module")
def rendered_k8s(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The manifests as `kubectl apply -k` would send them (with made-up secret inputs)."""
    directory = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, directory)
    (directory / "keys.yaml").write_text(f"team-a: {mint_key()}\n")
    (directory / "admin-token").write_text(mint_key())
    shutil.copy(K8S / "redis.env.example", directory / "redis.env")
    out = tmp_path_factory.mktemp("rendered")
    (out / "bedrock-gateway.yaml").write_text(yaml.safe_dump_all(render(directory), sort_keys=False))
    return out


def _reports(text: str) -> Iterator[dict[str, Any]]:
    """checkov -o json prints one report, a list of reports, or several of either back to back."""
    decoder = json.JSONDecoder()
    position = 0
    while position < len(text):
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            break
        value, position = decoder.raw_decode(text, position)
        yield from (value if isinstance(value, list) else [value])


@pytest.fixture(scope="module")
def scans(checkov: Path, rendered_k8s: Path) -> dict[str, dict[str, Any]]:
    """The scans, in two checkov runs side by side: framework -> merged report.

    The sources (Terraform, Dockerfiles, secrets in deploy/ and docker/) in one
    run; the rendered manifests in another, without the secrets check, since
    the rendered Secrets hold the made-up keys of this test."""
    runs = [
        (["terraform", "dockerfile", "secrets"], [ROOT / "deploy", ROOT / "docker"]),
        (["kubernetes"], [rendered_k8s]),
    ]
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "PYTHONWARNINGS": "ignore"}
    processes = []
    for frameworks, directories in runs:
        command = [str(checkov), "--framework", *frameworks, "--skip-download", "--compact", "-o", "json"]
        for directory in directories:
            command += ["-d", str(directory)]
        processes.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                          env=env, cwd=ROOT))
    reports: dict[str, dict[str, Any]] = {
        framework: {"failed": [], "skipped": [], "passed": 0, "resources": 0, "parsing_errors": 0, "stderr": ""}
        for frameworks, _ in runs for framework in frameworks}
    for process in processes:
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode in (0, 1), f"checkov failed to run:\n{stderr[-3000:]}"
        for report in _reports(stdout):
            merged = reports[report["check_type"]]
            merged["failed"] += report["results"].get("failed_checks", [])
            merged["skipped"] += report["results"].get("skipped_checks", [])
            merged["passed"] += report["summary"]["passed"]
            merged["resources"] += report["summary"].get("resource_count", 0)
            merged["parsing_errors"] += report["summary"]["parsing_errors"]
            merged["stderr"] = stderr[-2000:]
    return reports


def _describe(checks: list[dict[str, Any]]) -> str:
    return "\n".join(f"  {c['check_id']} {c['check_name']}: {c['file_path']} ({c.get('resource')})" for c in checks)


@pytest.mark.parametrize("framework", ["terraform", "kubernetes", "dockerfile", "secrets"])
def test_no_unjustified_finding(scans: dict[str, dict[str, Any]], framework: str) -> None:
    report = scans[framework]
    assert report["parsing_errors"] == 0, report["stderr"]
    failed = report["failed"]
    assert not failed, f"checkov {framework} findings (fix, or skip in place with a reason):\n" + _describe(failed)
    for skipped in report["skipped"]:
        reason = (skipped.get("check_result") or {}).get("suppress_comment", "")
        assert len(reason.strip()) >= 15, f"{skipped['check_id']} in {skipped['file_path']} is skipped without a reason"


def test_the_scans_covered_the_deployment(scans: dict[str, dict[str, Any]]) -> None:
    """Guard against a scan that silently found nothing to check."""
    assert scans["terraform"]["passed"] > 100 and scans["terraform"]["resources"] > 30
    assert scans["kubernetes"]["passed"] > 50
    assert scans["dockerfile"]["passed"] > 10
    checked = {c["file_path"] for c in scans["dockerfile"]["failed"] + scans["dockerfile"]["skipped"]}
    assert "/envoy.Dockerfile" in checked, "the envoy image's Dockerfile must be scanned (its skip is listed)"
