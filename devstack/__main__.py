"""``make run``: the whole gateway in the foreground; Ctrl-C stops everything it started.

- Bedrock: ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` if set (no emulator is
  started), else the local emulator on :8090 with its development credentials.
- Configuration: ``GATEWAY_CONFIG`` if set, else ``config/gateway.yaml``.
- Keys: ``GATEWAY_KEYS_FILE`` if set, else ``var/dev-keys.yaml``, created on
  first run with one key for consumer ``dev`` (printed below, never committed).
- Metrics: VictoriaMetrics on :8428 scraping Envoy and the extproc, when the
  ``victoria-metrics`` binary is installed.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

import yaml

from extproc.keys import mint_key

from . import ROOT, Ports, Stack

VAR = ROOT / "var"


def _dev_keys() -> str:
    path = VAR / "dev-keys.yaml"
    if not path.exists():
        VAR.mkdir(exist_ok=True)
        path.write_text(f"# Local development keys (git-ignored). consumer: key\ndev: {mint_key()}\n")
        path.chmod(0o600)
    return str(path)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM stops the stack the same way Ctrl-C does."""
    raise KeyboardInterrupt


def main() -> int:
    env: dict[str, str | None] = {}
    env["GATEWAY_CONFIG"] = os.environ.get("GATEWAY_CONFIG", str(ROOT / "config" / "gateway.yaml"))
    env["GATEWAY_KEYS_FILE"] = os.environ.get("GATEWAY_KEYS_FILE") or _dev_keys()
    with_emulator = not os.environ.get("AWS_ENDPOINT_URL_BEDROCK_RUNTIME")
    stack = Stack(workdir=VAR, ports=Ports(), env=env, with_emulator=with_emulator, foreground=True)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        stack.start()
        vm = shutil.which("victoria-metrics")
        if vm:
            stack.spawn("victoria-metrics", [vm, "-httpListenAddr=127.0.0.1:8428", f"-storageDataPath={VAR / 'vm'}",
                                              f"-promscrape.config={ROOT / 'config' / 'scrape.yaml'}"])
        keys_file = str(env["GATEWAY_KEYS_FILE"])
        keys = yaml.safe_load(Path(keys_file).read_text()) or {}
        upstream = "the Bedrock emulator on :8090" if with_emulator else os.environ["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"]
        print(f"\ngateway ready on {stack.url} -> {upstream}"
              f"{'; VictoriaMetrics on :8428' if vm else ''}. Ctrl-C stops it.", file=sys.stderr)
        if "dev" in keys and keys_file.startswith(str(VAR)):
            print(f"local dev key (from {keys_file}): {keys['dev']}\n", file=sys.stderr)
        while all(p.popen.poll() is None for p in stack.processes.values()):
            time.sleep(0.5)
        dead = [p.name for p in stack.processes.values() if p.popen.poll() is not None]
        print(f"stopping: {', '.join(dead)} exited", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
