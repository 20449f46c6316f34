"""A real gateway for the integration tests: Envoy + extproc + Bedrock emulator on free ports.

One stack serves the whole session; tests that kill or restart a process
start their own with :func:`make_stack`.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from devstack import ROOT, Ports, Stack
from extproc.keys import hash_key, mint_key


@dataclass(frozen=True)
class Keys:
    alpha: str
    """Known only from the keys file: gets the default policy (every model)."""
    haiku_only: str
    """Configured by hash with a policy allowing only haiku."""


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys(alpha=mint_key(), haiku_only=mint_key())


def write_gateway_files(directory: Path, keys: Keys, config: dict | None = None) -> dict[str, str | None]:
    directory.mkdir(parents=True, exist_ok=True)
    # The example configuration (so it is exercised too), with this session's consumers.
    config_data = yaml.safe_load((ROOT / "config" / "gateway.yaml").read_text())
    config_data["policies"] = {"default": {"models": ["*"]}, "haiku-only": {"models": ["haiku"]}}
    config_data["consumers"] = {"reports": {"policy": "haiku-only", "key_sha256": hash_key(keys.haiku_only)}}
    config_data.update(config or {})
    config_file = directory / "gateway.yaml"
    config_file.write_text(yaml.safe_dump(config_data, sort_keys=False))
    keys_file = directory / "keys.yaml"
    keys_file.write_text(f"alpha: {keys.alpha}\n")
    return {"GATEWAY_CONFIG": str(config_file), "GATEWAY_KEYS_FILE": str(keys_file)}


class Emulator:
    """The emulator's inspection endpoint: what reached "Bedrock"."""

    def __init__(self, url: str) -> None:
        self.url = url

    def requests(self) -> list[dict]:
        with urllib.request.urlopen(f"{self.url}/_emulator/requests", timeout=5) as response:
            return json.load(response)

    def clear(self) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/_emulator/requests", method="DELETE"), timeout=5)


@pytest.fixture
def make_stack(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[Callable[..., Stack]]:
    """Start a private stack (for tests that stop or restart its processes)."""
    stacks: list[Stack] = []

    def make(env: dict[str, str | None] | None = None, emulator_args: list[str] | None = None,
             config: dict | None = None) -> Stack:
        workdir = tmp_path_factory.mktemp("stack")
        stack = Stack(workdir=workdir, ports=Ports.free(),
                      env={**write_gateway_files(workdir, keys, config), **(env or {})},
                      emulator_args=emulator_args or [])
        stacks.append(stack)
        return stack.start()

    yield make
    for stack in stacks:
        stack.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("gateway")
    stack = Stack(workdir=workdir, ports=Ports.free(), env=write_gateway_files(workdir, keys)).start()
    yield stack
    stack.stop()


@pytest.fixture
def emulator(stack: Stack) -> Emulator:
    emulator = Emulator(stack.emulator_url)
    emulator.clear()
    return emulator


def request_records(stack: Stack) -> list[dict]:
    """The extproc's usage records (JSON lines with ``"record": "usage"`` on its stdout), oldest first."""
    lines = stack.processes["extproc"].log.read_text().splitlines()
    return [r for r in (json.loads(line) for line in lines if line.startswith("{")) if r.get("record") == "usage"]


def wait_for_records(stack: Stack, match: Callable[[dict], bool], timeout: float = 10.0) -> list[dict]:
    """Records matching ``match``, waiting for the first (they are written when a request's stream closes)."""
    deadline = time.monotonic() + timeout
    while not (found := [r for r in request_records(stack) if match(r)]):
        assert time.monotonic() < deadline, "no matching request record was written"
        time.sleep(0.1)
    return found


def record_of(stack: Stack, request_id: str) -> dict:
    """The one record of a request (there must be exactly one)."""
    (record,) = wait_for_records(stack, lambda r: r["request_id"] == request_id)
    return record
