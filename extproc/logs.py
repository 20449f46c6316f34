"""Structured JSON logs on stderr, one object per line, never a secret.

Fields come from ``extra=`` on each call. Keys, AWS secrets, session tokens
and signatures are never passed to the logger in the first place; identifiers
that are useful but sensitive (an AWS access key ID) go through :func:`mask`.
"""

from __future__ import annotations

import json
import logging
import sys
import time

_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update((k, v) for k, v in record.__dict__.items() if k not in _STANDARD)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup(level: str = "INFO") -> None:
    # The logging HOWTO's "Optimization" knobs: the request path logs a line per
    # request, and caller/thread/process lookups are not worth their cost there.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def mask(identifier: str) -> str:
    """Keep only the last four characters: enough to tell two apart in a log."""
    return "…" + identifier[-4:] if len(identifier) > 8 else "…"
