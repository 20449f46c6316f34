"""``/metrics`` for Prometheus and ``/healthz`` for probes, on :9464, on a thread off the event loop."""

from __future__ import annotations

import http.server
import threading

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest


class MetricsServer:
    """Serves ``registry`` (the process's own, or the workers' sum under ``--workers``)."""

    def __init__(self, listen: str, registry: CollectorRegistry = REGISTRY,
                 serving: threading.Event | None = None) -> None:
        self.serving = serving or threading.Event()
        """Set while the process serves traffic: ``/healthz`` answers 200, else 503 (draining)."""
        serving = self.serving

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                if self.path == "/metrics":
                    status, ctype, body = 200, CONTENT_TYPE_LATEST, generate_latest(registry)
                elif self.path == "/healthz":
                    ok = serving.is_set()
                    status, ctype, body = (200 if ok else 503), "text/plain", (b"ok\n" if ok else b"draining\n")
                else:
                    status, ctype, body = 404, "text/plain", b"not found\n"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server API
                """Scrapes are not worth a log line each."""

        self._server = http.server.ThreadingHTTPServer(split_address(listen), Handler)
        self._server.daemon_threads = True

    def start(self) -> MetricsServer:
        threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``) as a socket address; an empty host means 127.0.0.1."""
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)
