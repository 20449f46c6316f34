"""JSON-lines writers for usage records and the audit log, off the event loop.

A record is handed over as a dict (a queue put, microseconds) and serialized
and written by one background thread, so neither ``json.dumps`` nor a slow
disk sits between a client and its answer. :meth:`JsonLines.close` drains the
queue before returning; the server calls it after its graceful drain, which is
why no record is lost on SIGTERM.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("extproc.records")

_STOP = object()


class JsonLines:
    """Append one JSON object per line to stdout and/or a file."""

    def __init__(self, name: str, *, stdout: bool, file: str | None) -> None:
        self.name = name
        self._stdout = stdout
        self._path = Path(file) if file else None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self._stdout or self._path is not None

    def start(self) -> JsonLines:
        if self.enabled and self._thread is None:
            handle = self._path.open("a", encoding="utf-8") if self._path else None  # fail at start, not later
            self._thread = threading.Thread(target=self._run, args=(handle,), name=f"{self.name}-writer", daemon=True)
            self._thread.start()
        return self

    def write(self, record: dict[str, Any]) -> None:
        if self._thread is not None:
            self._queue.put(record)

    def close(self) -> None:
        """Write everything queued so far, then stop the writer thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    def _run(self, handle: IO[str] | None) -> None:
        try:
            while True:
                item = self._queue.get()
                batch = [item]
                while item is not _STOP and not self._queue.empty():  # write bursts together
                    item = self._queue.get()
                    batch.append(item)
                lines = "".join(json.dumps(r, separators=(",", ":"), default=str) + "\n" for r in batch if r is not _STOP)
                if lines:
                    self._emit(handle, lines)
                if batch[-1] is _STOP:
                    return
        finally:
            if handle is not None:
                handle.close()

    def _emit(self, handle: IO[str] | None, lines: str) -> None:
        try:
            if self._stdout:
                _write_all(sys.stdout.fileno(), lines.encode("utf-8"))
            if handle is not None:
                handle.write(lines)
                handle.flush()
        except OSError as exc:  # a full disk must not stop the gateway; say so in the log
            log.error("cannot write records", extra={"records": self.name, "error": str(exc)})


def _write_all(fd: int, data: bytes) -> None:
    """One ``write`` per batch where the OS allows, so lines from stderr logs sharing the file never split a record."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
