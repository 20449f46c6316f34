"""Real clients (installed from their registry by ``make test``) driven through the gateway.

The gateway stack is the integration tests' own fixtures, re-exposed here:
``stack`` (Envoy + extproc + Bedrock emulator on free ports), ``keys`` and
``emulator``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import Stack
from tests.clients.wiretap import Relay, Tripwire
from tests.integration.conftest import emulator, keys, stack  # noqa: F401  (fixtures, re-exposed)

CLIENTS = Path(__file__).resolve().parent
CLAUDE = CLIENTS / "node_modules" / ".bin" / "claude"


@pytest.fixture(scope="session")
def claude_bin() -> Path:
    """The Claude Code pinned in package.json, as `make test` installs it (npm ci)."""
    if not CLAUDE.exists():
        pytest.fail(f"{CLAUDE} is missing: run `make test` (or `make clients`), which installs it with npm ci")
    return CLAUDE


@pytest.fixture
def relay(stack: Stack) -> Iterator[Relay]:
    relay = Relay(stack.url).start()
    yield relay
    relay.stop()


@pytest.fixture
def tripwire() -> Iterator[Tripwire]:
    tripwire = Tripwire()
    yield tripwire
    tripwire.stop()


class RequestLog:
    """The extproc's usage records (``"record": "usage"`` JSON lines), from a point on."""

    def __init__(self, stack: Stack) -> None:
        self.path = stack.processes["extproc"].log
        self.offset = self.path.stat().st_size

    def records(self) -> list[dict]:
        with self.path.open("rb") as log:
            log.seek(self.offset)
            lines = log.read().decode("utf-8", "replace").splitlines()
        parsed = (json.loads(line) for line in lines if line.startswith("{"))
        return [record for record in parsed if record.get("record") == "usage"]

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict]:
        """At least ``count`` records (a stream's record is written once the stream has ended)."""
        deadline = time.monotonic() + timeout
        while len(records := self.records()) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return records


@pytest.fixture
def request_log(stack: Stack) -> RequestLog:
    return RequestLog(stack)
