"""A throwaway real ``redis-server`` for tests: its own port and directory, no persistence.

Tests of the Redis store kill it, pause it and start it again on the same
port, to check what the gateway does when its shared state goes away.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """``redis-server`` on 127.0.0.1; ``start()`` returns once it answers PING."""

    def __init__(self, password: str | None = None) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server; .ci/run does); "
                               "the Redis store tests need a real one")
        self.executable = executable
        self.password = password
        self.port = _free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="redis-test-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self._process is not None, "not started"
        return self._process.pid

    @property
    def log(self) -> Path:
        return Path(self._dir.name) / "redis.log"

    def client(self) -> redis.Redis:
        """A plain synchronous client, for tests to inspect the server."""
        return redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=5)

    def start(self, timeout: float = 10.0) -> RedisServer:
        command = [self.executable, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", self._dir.name,
                   "--save", "", "--appendonly", "no", "--daemonize", "no"]
        if self.password:
            command += ["--requirepass", self.password]
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._process.returncode}: {self.log.read_text()[-2000:]}")
            try:
                with self.client() as probe:
                    if probe.ping():
                        return self
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"redis-server did not answer PING on port {self.port} within {timeout}s")
                time.sleep(0.02)

    def stop(self) -> None:
        """Shut down cleanly (SIGTERM)."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """Die at once (SIGKILL), as a crashed or lost Redis would."""
        self._end(signal.SIGKILL)

    def pause(self) -> None:
        """Stop answering without closing connections (SIGSTOP): a hung Redis."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def close(self) -> None:
        """Stop it and remove its directory."""
        self.kill()
        self._dir.cleanup()

    def _end(self, sig: signal.Signals) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(sig)
        self._process.send_signal(signal.SIGCONT)  # a paused server handles SIGTERM only once resumed
        self._process.wait(timeout=10)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
