"""The extproc as an installable package: the wheel pip builds, what it holds, and its console scripts.

The wheel is built from a copy of the Docker build context (the repository
without what .dockerignore leaves out), as docker/extproc.Dockerfile builds
it, so this also shows that the context holds everything the build needs.
It is built without build isolation (the virtualenv's setuptools and
grpcio-tools, no network); the images build with isolation.
"""

from __future__ import annotations

import configparser
import fnmatch
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from devstack import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def ignored(relative: str, patterns: list[str]) -> bool:
    """.dockerignore matching for the patterns this project uses: a pattern that matches a directory
    leaves out everything under it; `**/name` matches at any depth."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        pattern = pattern.rstrip("/")
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatchcase(part, pattern[3:]) for part in parts):
                return True
        elif any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            return True
    return False


def copy_build_context(target: Path) -> None:
    patterns = dockerignore_patterns()
    for directory, subdirs, files in os.walk(ROOT):
        base = Path(directory).relative_to(ROOT)
        subdirs[:] = [d for d in subdirs if not ignored((base / d).as_posix(), patterns)]
        for name in files:
            relative = (base / name).as_posix()
            if not ignored(relative, patterns):
                (target / base).mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / relative, target / relative)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    context = tmp_path_factory.mktemp("context")
    copy_build_context(context)
    # An in-tree copy of generated code (editable installs write one) must not be what the wheel ships.
    shutil.rmtree(context / "extproc" / "_proto", ignore_errors=True)
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", str(out),
         str(context)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = out.glob("*.whl")
    return built


def test_build_context_leaves_out_local_state() -> None:
    patterns = dockerignore_patterns()
    for path in (".venv/bin/python", "var/dev-keys.yaml", ".git/HEAD", "tests/clients/node_modules/x",
                 "extproc/__pycache__/cli.cpython-311.pyc", "bedrock_gateway.egg-info/PKG-INFO"):
        assert ignored(path, patterns), path
    for path in ("pyproject.toml", "setup.py", "README.md", "extproc/cli.py", "bedrock_emulator/app.py",
                 "protos/bedrock_gateway/admin/v1/admin.proto", "envoy/envoy.yaml", "deploy/envoy/container.yaml"):
        assert not ignored(path, patterns), path


def test_wheel_is_named_for_the_project(wheel: Path) -> None:
    name = PYPROJECT["project"]["name"].replace("-", "_")
    assert wheel.name == f"{name}-{PYPROJECT['project']['version']}-py3-none-any.whl"


def test_wheel_declares_the_console_scripts(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (entry_points,) = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
        parser = configparser.ConfigParser()
        parser.read_string(archive.read(entry_points).decode())
    scripts = dict(parser["console_scripts"])
    assert scripts["extproc"] == "extproc.cli:main"
    assert scripts["bedrock-emulator"] == "bedrock_emulator.__main__:main"
    assert scripts == PYPROJECT["project"]["scripts"]


def test_wheel_holds_the_packages_and_the_compiled_protos(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for module in ("extproc/__init__.py", "extproc/cli.py", "extproc/server.py", "extproc/gateway.py",
                   "extproc/bedrock/sigv4.py", "bedrock_emulator/__main__.py"):
        assert module in names, module
    for proto in sorted((ROOT / "protos").rglob("*.proto")):
        stem = proto.relative_to(ROOT / "protos").with_suffix("").as_posix()
        for suffix in ("_pb2.py", "_pb2_grpc.py"):
            assert f"extproc/_proto/{stem}{suffix}" in names, f"{proto.name} was not compiled into the wheel"
    assert not [n for n in names if n.startswith(("tests/", "var/", "bench/")) or "__pycache__" in n]
    assert not [n for n in names if n.endswith((".yaml", ".pem", ".key")) and "keys" in n.lower()]


def test_wheel_metadata_lists_the_dependencies(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        text = archive.read(metadata).decode()
    required = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Requires-Dist:")]
    unconditional = {_normal(r) for r in required if "extra ==" not in r}
    assert unconditional == {_normal(d) for d in PYPROJECT["project"]["dependencies"]}


def _normal(requirement: str) -> tuple[str, str]:
    parsed = Requirement(requirement)
    return parsed.name.lower().replace("_", "-"), str(SpecifierSet(str(parsed.specifier)))


def test_installed_wheel_runs_its_console_script(wheel: Path, tmp_path: Path) -> None:
    """Installed (without dependencies, which this virtualenv has), `extproc` runs from the wheel's own files."""
    target = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target),
                             str(wheel)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    script = target / "bin" / "extproc"
    assert script.is_file()
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, env=env, timeout=60,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "serve" in run.stdout and "keys" in run.stdout
    where = subprocess.run(
        [sys.executable, "-c",
         "import extproc, extproc._proto; print(extproc.__file__); print(extproc._proto.__file__)"],
        capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(str(target)) for line in where.stdout.split()), where.stdout
