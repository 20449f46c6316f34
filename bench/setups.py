"""The set-ups, started side by side on free ports and sharing one emulator.

All of them run at once so that rounds can interleave a, b, c (and c, d) without
restarts (the machine is shared: interleaving spreads its noise evenly).
Every process is a :class:`devstack.Stack` child, so starting, logging and
stopping are the same code ``make run`` and the tests use; this module only
decides what each Envoy (and gateway) runs:

(a) envoy.yaml with the ports changed (:func:`devstack.envoy_config`) and
    then the ext_proc filter removed, derived here at run time so that no
    second copy of the bootstrap lives in git;
(b) envoy.yaml with the ports changed, its extproc cluster pointing at
    :mod:`bench.noop_extproc`;
(c) the real stack, with a keys file holding one freshly minted key;
(d) only for the guardrail-latency part: the real gateway again (its own Envoy and
    extproc, (c)'s emulator), its configuration the built-in one but for
    ``guardrail_policies.default`` with no detectors: guardrails off;
(m) only with ``--floor``: envoy.yaml with the ports changed, its extproc cluster pointing at
    :mod:`bench.minimal_extproc` (the least work any such gateway must do), against (c)'s emulator.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devstack import EMULATOR_ACCESS_KEY_ID, EMULATOR_SECRET_ACCESS_KEY, Ports, Stack, envoy_config
from extproc.keys import mint_key

from .minimal_extproc import KEY_VARIABLE
from .payload import APIS, MESSAGES, HttpRequest, Workload

EXT_PROC_FILTER = "envoy.filters.http.ext_proc"
GUARDRAILS_OFF = {"guardrail_policies": {"default": {"detectors": {}}}}
"""Set-up (d)'s gateway configuration: the built-in one, but the default guardrail policy has no detectors."""


@dataclass
class Setup:
    key: str
    """``a``, ``b``, ``c`` or ``d``."""
    label: str
    stack: Stack
    request: Callable[[Workload], HttpRequest]
    """What this set-up's client sends for a workload; made anew for each run (signatures expire)."""
    apis: frozenset[str] = frozenset(APIS)
    """The APIs it serves (the minimal ext_proc of (m) serves only Anthropic messages)."""

    @property
    def url(self) -> str:
        return self.stack.url

    def pid(self, role: str) -> int | None:
        """The process id of this set-up's ``envoy``, ``extproc`` (the gateway's or the no-op) or ``emulator``."""
        names = {"envoy": ["envoy"], "extproc": ["extproc", "noop-extproc"], "emulator": ["emulator"]}[role]
        for name in names:
            process = self.stack.processes.get(name)
            if process is not None:
                return process.popen.pid
        return None


def without_ext_proc(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` (a parsed envoy.yaml) with the ext_proc filter and everything that only serves it removed.

    Besides the HTTP filter: its per-route ``disabled`` entries, the extproc
    cluster, and the ``/health`` check's requirement that this cluster be
    healthy (with no cluster, ``/health`` simply answers 200 once Envoy is up).
    """
    resources = config["static_resources"]
    (listener,) = resources["listeners"]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    filters = manager["http_filters"]
    if not any(f["name"] == EXT_PROC_FILTER for f in filters):
        raise ValueError(f"envoy.yaml has no {EXT_PROC_FILTER} filter: the benchmark's set-up (a) needs updating")
    manager["http_filters"] = [f for f in filters if f["name"] != EXT_PROC_FILTER]
    for host in manager["route_config"]["virtual_hosts"]:
        for route in host["routes"]:
            per_filter = route.get("typed_per_filter_config", {})
            per_filter.pop(EXT_PROC_FILTER, None)
            if not per_filter:
                route.pop("typed_per_filter_config", None)
    for http_filter in manager["http_filters"]:
        typed = http_filter.get("typed_config", {})
        typed.get("cluster_min_healthy_percentages", {}).pop("extproc", None)
        if "cluster_min_healthy_percentages" in typed and not typed["cluster_min_healthy_percentages"]:
            del typed["cluster_min_healthy_percentages"]
    resources["clusters"] = [c for c in resources["clusters"] if c["name"] != "extproc"]
    return config


def direct_envoy_config(ports: Ports, workdir: Path) -> Path:
    """Set-up (a)'s bootstrap, written to ``workdir``."""
    config = without_ext_proc(yaml.safe_load(envoy_config(ports, workdir).read_text()))
    path = workdir / "envoy-without-ext-proc.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@contextlib.contextmanager
def _starting(stack: Stack, what: str, cleanup: contextlib.ExitStack) -> Iterator[None]:
    """Start ``stack``'s processes inside this block, its stop already registered with ``cleanup``.

    Registered first so that an interruption (Ctrl-C, SIGTERM) halfway through
    starting leaves nothing behind; a failure shows the logs, like :meth:`Stack.start`.
    """
    cleanup.callback(stack.stop)
    stack.workdir.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except Exception as exc:
        logs = "\n".join(f"--- {p.name} ---\n{p.tail()}" for p in stack.processes.values())
        stack.stop()
        raise RuntimeError(f"set-up {what} did not start ({exc}); logs:\n{logs}") from None


def _keys_file(workdir: Path) -> tuple[str, Path]:
    """A freshly minted API key, and the keys file (in ``workdir``) that holds it."""
    workdir.mkdir(parents=True, exist_ok=True)
    api_key = mint_key()
    keys_file = workdir / "keys.yaml"
    keys_file.write_text(f"bench: {api_key}\n")
    keys_file.chmod(0o600)
    return api_key, keys_file


def start_gateway(workdir: Path, cleanup: contextlib.ExitStack) -> Setup:
    """(c): Envoy + extproc + the emulator all set-ups share."""
    api_key, keys_file = _keys_file(workdir)
    # The built-in catalogue and default policy: a GATEWAY_CONFIG from the caller's shell must not change them.
    stack = Stack(workdir=workdir, ports=Ports.free(), env={"GATEWAY_KEYS_FILE": str(keys_file), "GATEWAY_CONFIG": None})
    cleanup.callback(stack.stop)
    stack.start()  # stops what it started and shows the logs if it fails
    return Setup("c", "(c) gateway", stack, lambda workload: workload.gateway_request(api_key))


def _emulator_env(emulator_url: str) -> dict[str, str | None]:
    """What Stack gives an extproc whose emulator it starts itself (see Stack.extproc_env), for (c)'s emulator."""
    return {"AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": emulator_url,
            "AWS_ACCESS_KEY_ID": EMULATOR_ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": EMULATOR_SECRET_ACCESS_KEY,
            "AWS_SESSION_TOKEN": None, "AWS_PROFILE": None}


def start_unguarded(workdir: Path, emulator_url: str, cleanup: contextlib.ExitStack) -> Setup:
    """(d): the gateway as (c), against (c)'s emulator, with :data:`GUARDRAILS_OFF` as its configuration."""
    api_key, keys_file = _keys_file(workdir)
    config = workdir / "gateway.yaml"
    config.write_text(yaml.safe_dump(GUARDRAILS_OFF, sort_keys=False))
    env = {"GATEWAY_KEYS_FILE": str(keys_file), "GATEWAY_CONFIG": str(config), **_emulator_env(emulator_url)}
    stack = Stack(workdir=workdir, ports=Ports.free(), env=env, with_emulator=False)
    cleanup.callback(stack.stop)
    stack.start()
    return Setup("d", "(d) gateway, guardrails off", stack, lambda workload: workload.gateway_request(api_key))


def start_noop(workdir: Path, emulator_authority: str, cleanup: contextlib.ExitStack) -> Setup:
    """(b): envoy.yaml (ports only changed) with the no-op ext_proc."""
    stack = Stack(workdir=workdir, ports=Ports.free(), with_emulator=False)
    with _starting(stack, "(b)", cleanup):
        stack.spawn("noop-extproc",
                    [sys.executable, "-m", "bench.noop_extproc", "--listen", f"127.0.0.1:{stack.ports.extproc}"])
        stack.start_envoy()
        stack.wait_healthy()  # only once Envoy's gRPC health check has seen the no-op SERVING
    return Setup("b", "(b) envoy + no-op ext_proc", stack, lambda workload: workload.signed(emulator_authority))


def start_minimal(workdir: Path, emulator_url: str, cleanup: contextlib.ExitStack) -> Setup:
    """(m), with ``--floor``: envoy.yaml (ports only changed) with :mod:`bench.minimal_extproc`, against (c)'s
    emulator."""
    api_key = mint_key()
    stack = Stack(workdir=workdir, ports=Ports.free(), with_emulator=False)
    env = {KEY_VARIABLE: api_key, "GATEWAY_CONFIG": None, **_emulator_env(emulator_url)}
    with _starting(stack, "(m)", cleanup):
        stack.spawn("noop-extproc",  # the name Setup.pid looks for: the process in the ext_proc's place
                    [sys.executable, "-m", "bench.minimal_extproc", "--listen", f"127.0.0.1:{stack.ports.extproc}"],
                    env=env)
        stack.start_envoy()
        stack.wait_healthy()
    return Setup("m", "(m) envoy + minimal ext_proc", stack, lambda workload: workload.gateway_request(api_key),
                 frozenset({MESSAGES}))


def start_direct(workdir: Path, emulator_authority: str, cleanup: contextlib.ExitStack) -> Setup:
    """(a): envoy.yaml without the ext_proc filter, straight to the emulator."""
    stack = Stack(workdir=workdir, ports=Ports.free(), with_emulator=False)
    with _starting(stack, "(a)", cleanup):
        stack.start_envoy(direct_envoy_config(stack.ports, workdir))
        stack.wait_healthy()
    return Setup("a", "(a) envoy → emulator", stack, lambda workload: workload.signed(emulator_authority))


@contextlib.contextmanager
def running(workdir: Path, keys: str = "abc") -> Iterator[list[Setup]]:
    """Start (c), then those of (d), (b), (a) and (m) in ``keys`` against (c)'s emulator; stop them all on the
    way out, however it goes. The set-ups come in the order a, b, c, d, m.

    Stops run in reverse: (m), (a), (b), (d), then (c), whose emulator the others use.
    """
    with contextlib.ExitStack() as cleanup:
        gateway = start_gateway(workdir / "c-gateway", cleanup)
        emulator = f"127.0.0.1:{gateway.stack.ports.emulator}"
        started = {"c": gateway}
        if "d" in keys:
            started["d"] = start_unguarded(workdir / "d-unguarded", gateway.stack.emulator_url, cleanup)
        if "b" in keys:
            started["b"] = start_noop(workdir / "b-noop", emulator, cleanup)
        if "a" in keys:
            started["a"] = start_direct(workdir / "a-direct", emulator, cleanup)
        if "m" in keys:
            started["m"] = start_minimal(workdir / "m-minimal", gateway.stack.emulator_url, cleanup)
        yield [started[k] for k in sorted(started)]
