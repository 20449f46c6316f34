"""``extproc serve --workers N``: N processes on one port, one supervisor.

Python runs one request's work at a time per process, so more cores need more
processes. Each worker is a full ``extproc serve`` bound with SO_REUSEPORT to
the same port (the kernel spreads Envoy's connections over them). The
supervisor owns what must exist once: ``/metrics`` (the workers' metrics
summed by prometheus-client's multiprocess mode), ``/healthz``, the admin API
and the signals: SIGTERM/SIGINT are passed on and awaited (each worker drains
and writes its last records), SIGHUP checks the configuration and then
reloads every worker, and a worker that dies is started again.

Limits must be exact across workers, so several workers need the Redis
backend; ``memory`` is refused with a clear error rather than silently
giving each worker its own counters.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .config import ConfigError, Settings, config_source
from .gateway import Reloaded
from .keys import load_settings_and_keys

log = logging.getLogger("extproc.workers")

RESTART_BACKOFF_SECONDS = 1.0
READY_FILE_VARIABLE = "EXTPROC_READY_FILE"
"""A worker creates the file this names once it serves; the supervisor is ready when every worker is."""


def check_settings(settings: Settings, workers: int) -> None:
    """What would otherwise fail in every worker, again and again: refused here, once, clearly."""
    for what, path in (("usage_records.file", settings.config.usage_records.file),
                       ("audit.file", settings.config.audit.file)):
        if path:
            try:
                open(path, "a", encoding="utf-8").close()
            except OSError as exc:
                raise ConfigError(f"{what}: cannot append to {path}: {exc.strerror}") from None
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, not {workers}")
    if workers > 1 and settings.config.limits.backend != "redis":
        raise ConfigError(f"--workers {workers} needs `limits: {{backend: redis}}`: with the in-memory backend each "
                          "worker would keep its own counters and limits would not hold")


class Supervisor:
    def __init__(self, workers: int, worker_argv: list[str], grace_seconds: float, drain_delay_seconds: float) -> None:
        self.count = workers
        self.worker_argv = worker_argv
        self.stop_timeout = grace_seconds + drain_delay_seconds + 5
        self.metrics_dir = Path(tempfile.mkdtemp(prefix="extproc-metrics-"))
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.stopping = False
        self.serving = threading.Event()
        """Set while every worker runs and serves: ``/healthz`` is 503 until then, and while one is restarted."""

    def ready_file(self, index: int) -> Path:
        return self.metrics_dir / "ready" / str(index)

    def environment(self, index: int) -> dict[str, str]:
        # EXTPROC_WORKERS=1: a worker must serve, not supervise workers of its own.
        return {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir), "EXTPROC_WORKERS": "1",
                READY_FILE_VARIABLE: str(self.ready_file(index))}

    def start_worker(self, index: int) -> None:
        self.ready_file(index).parent.mkdir(exist_ok=True)
        self.ready_file(index).unlink(missing_ok=True)
        argv = [sys.executable, "-m", "extproc", *self.worker_argv, "--worker-index", str(index)]
        process = subprocess.Popen(argv, env=self.environment(index))
        self.processes[index] = process
        log.info("worker started", extra={"worker": index, "pid": process.pid})

    def signal_all(self, sig: signal.Signals) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(sig)

    def all_alive(self) -> bool:
        return all(process.poll() is None for process in self.processes.values())

    async def watch(self) -> None:
        """Start a worker again when one exits while the supervisor is not stopping."""
        from prometheus_client import multiprocess

        while not self.stopping:
            for index, process in list(self.processes.items()):
                code = process.poll()
                if code is not None and not self.stopping:
                    self.serving.clear()
                    log.error("worker exited; starting it again", extra={"worker": index, "pid": process.pid,
                                                                        "exit_code": code})
                    multiprocess.mark_process_dead(process.pid, str(self.metrics_dir))
                    await asyncio.sleep(RESTART_BACKOFF_SECONDS)
                    if not self.stopping:
                        self.start_worker(index)
            ready = all(p.poll() is None and self.ready_file(i).exists() for i, p in self.processes.items())
            if ready != self.serving.is_set() and not self.stopping:
                self.serving.set() if ready else self.serving.clear()
            await asyncio.sleep(0.2)

    async def stop(self, sig: signal.Signals) -> None:
        self.stopping = True
        self.signal_all(sig)
        deadline = time.monotonic() + self.stop_timeout
        while time.monotonic() < deadline and not all(p.poll() is not None for p in self.processes.values()):
            await asyncio.sleep(0.1)
        for index, process in self.processes.items():
            if process.poll() is None:
                log.error("worker did not stop in time; killing it", extra={"worker": index, "pid": process.pid})
                process.kill()
                process.wait()

    async def reload(self) -> Reloaded:
        """Check the new configuration here first, so a bad file never reaches a worker; then SIGHUP them."""
        source = config_source()
        try:
            settings, keys = await asyncio.to_thread(load_settings_and_keys)
        except ConfigError as exc:
            log.error("reload refused", extra={"error": str(exc)})
            return Reloaded(False, str(exc), 0, 0, source)
        self.signal_all(signal.SIGHUP)
        log.info("reload sent to workers", extra={"workers": len(self.processes)})
        return Reloaded(True, f"configuration and keys reloaded by {len(self.processes)} workers",
                        len(settings.config.consumers), len(keys), source)


async def supervise(supervisor: Supervisor, settings: Settings, metrics_listen: str) -> int:
    """Run the workers until SIGTERM/SIGINT; returns the exit code."""
    from prometheus_client import CollectorRegistry, multiprocess

    from .admin import admin_server
    from .limits.enforce import open_store
    from .metrics_http import MetricsServer

    store = open_store(settings)  # the workers' shared Redis: usage totals for the admin API
    admin = admin_server(settings, store, supervisor.reload)
    if admin:
        await admin.start()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(supervisor.metrics_dir))
    metrics_server = MetricsServer(metrics_listen, registry, serving=supervisor.serving).start()
    for index in range(supervisor.count):
        supervisor.start_worker(index)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda sig=sig: (received.append(sig), stop.set()))
    reloads: set[asyncio.Task[object]] = set()
    loop.add_signal_handler(signal.SIGHUP, lambda: reloads.add(loop.create_task(supervisor.reload())))
    watcher = loop.create_task(supervisor.watch())
    log.info("supervisor serving", extra={"workers": supervisor.count, "metrics": metrics_listen})
    await stop.wait()
    supervisor.serving.clear()
    await supervisor.stop(received[0])
    watcher.cancel()
    if admin:
        await admin.stop()
    await store.close()
    metrics_server.stop()
    shutil.rmtree(supervisor.metrics_dir, ignore_errors=True)
    log.info("supervisor stopped")
    return 0
