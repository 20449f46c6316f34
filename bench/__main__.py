"""``python -m bench``: start the three set-ups, check them, measure them interleaved, report.

Order of work, and why:

1. start (c), (b), (a) at once on free ports (:mod:`bench.setups`), so rounds
   interleave without restarts;
2. send one request through each and check the answer, and check with the
   emulator's request log that (a) and (c) made it do the same thing (same
   path, body bytes and signed headers): otherwise the comparison is void;
3. warm each set-up up once (connections, caches, the allocator);
4. for each concurrency, ``rounds`` times: a, b, c in turn;
5. print the medians as markdown on stdout, write them with every raw run to
   ``var/bench/results.json``. Progress goes to stderr.

Everything started is stopped on the way out, including on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

from devstack import ROOT

from . import report, setups, wrk
from .payload import PROMPT_BYTES, HttpRequest
from .report import Run
from .setups import Setup

OUT_DIR = ROOT / "var" / "bench"
WARMUP_SECONDS = 2


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8, metavar="SECONDS", help="length of each run (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per concurrency (default 3)")
    parser.add_argument("--concurrency", default="1,16", metavar="N,N",
                        help="comma-separated connection counts (default 1,16)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round of 3 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration = 1, 3
    try:
        args.concurrency = [int(n) for n in args.concurrency.split(",") if n.strip()]
    except ValueError:
        parser.error("--concurrency takes integers separated by commas, e.g. 1,16")
    if not args.concurrency or min(args.concurrency) < 1 or args.duration < 1 or args.rounds < 1:
        parser.error("--concurrency, --duration and --rounds must be at least 1")
    return args


def _progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _send(url: str, request: HttpRequest) -> tuple[int, bytes]:
    """One request with urllib (the ``Host`` header given is sent as is)."""
    http = urllib.request.Request(url + request.path, data=request.body, method=request.method,
                                  headers=dict(request.headers))
    try:
        with urllib.request.urlopen(http, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _emulator(setup: Setup, method: str = "GET") -> list[dict[str, Any]]:
    """The emulator's request log (``GET``), or clear it (``DELETE``)."""
    http = urllib.request.Request(f"{setup.stack.emulator_url}/_emulator/requests", method=method)
    with urllib.request.urlopen(http, timeout=5) as response:
        return json.load(response) if method == "GET" else []


def _upstream_view(record: dict[str, Any]) -> dict[str, Any]:
    """What decides the emulator's work for one request: path, body bytes, signed header names."""
    authorization = record["headers"].get("authorization", "")
    signed = authorization.partition("SignedHeaders=")[2].partition(",")[0]
    return {"path": record["path"], "body_sha256": record["body_sha256"], "signed_headers": signed,
            "signature_valid": record["signature_valid"], "status": record["status"]}


def check(all_setups: list[Setup]) -> None:
    """One request through each set-up must succeed, and reach the emulator identically."""
    emulator = next(s for s in all_setups if s.key == "c")
    seen: dict[str, dict[str, Any]] = {}
    for setup in all_setups:
        _emulator(emulator, "DELETE")
        status, body = _send(setup.url, setup.request())
        try:
            message = json.loads(body)
        except ValueError:
            message = None
        if status != 200 or not isinstance(message, dict) or message.get("type") != "message":
            raise SystemExit(f"bench: {setup.label} answered {status}, not an Anthropic message:\n"
                             f"{body[:2000].decode(errors='replace')}\nlogs: {setup.stack.workdir}")
        records = _emulator(emulator)
        if len(records) != 1:
            raise SystemExit(f"bench: {setup.label}: the emulator saw {len(records)} requests for one sent")
        seen[setup.key] = _upstream_view(records[0])
    _emulator(emulator, "DELETE")
    reference = seen["c"]
    for key, view in seen.items():
        if view != reference:
            raise SystemExit(
                "bench: set-ups do not give the emulator the same work, so the comparison would be void.\n"
                f"  (c) gateway sent: {reference}\n  ({key}) sent:       {view}\n"
                "Update bench/payload.py to send what the gateway now sends."
            )


def measure(all_setups: list[Setup], concurrency: list[int], rounds: int, seconds: int, workdir: Path) -> list[Run]:
    wrk_bin = wrk.ensure_wrk()
    scripts = workdir / "wrk"
    scripts.mkdir(parents=True, exist_ok=True)
    for setup in all_setups:
        _progress(f"warm-up {setup.label}: {WARMUP_SECONDS}s at concurrency {max(concurrency)}")
        wrk.run(wrk_bin, setup.url, setup.request(), max(concurrency), WARMUP_SECONDS,
                scripts / f"warmup-{setup.key}.lua")
    runs = []
    for n in concurrency:
        for round_no in range(1, rounds + 1):
            for setup in all_setups:
                script = scripts / f"c{n}-r{round_no}-{setup.key}.lua"
                try:
                    result = wrk.run(wrk_bin, setup.url, setup.request(), n, seconds, script)
                except wrk.WrkError as exc:
                    raise SystemExit(f"bench: {setup.label} at concurrency {n}: {exc}\nlogs: {setup.stack.workdir}")
                runs.append(Run(setup.key, n, round_no, result))
                _progress(f"c={n} round {round_no}/{rounds} {setup.label}: p50 {result.p50_ms:.2f} ms, "
                          f"p99 {result.p99_ms:.2f} ms, {result.requests_per_s:.0f} req/s")
    return runs


def _git_revision() -> str | None:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty.strip() else "")


class _Terminated(BaseException):
    """SIGTERM: unwinds through every cleanup, like Ctrl-C's KeyboardInterrupt."""


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored (`cmd &`)
    wrk.ensure_wrk()  # before starting anything: a missing wrk should cost nothing
    workdir = OUT_DIR / "run"
    shutil.rmtree(workdir, ignore_errors=True)
    started = time.time()
    try:
        _progress(f"starting the three set-ups (logs in {workdir})")
        with setups.running(workdir) as all_setups:
            check(all_setups)
            _progress("all three set-ups answer, and give the emulator the same request")
            runs = measure(all_setups, args.concurrency, args.rounds, args.duration, workdir)
            labels = {s.key: s.label for s in all_setups}
            ports = {s.key: s.stack.ports.gateway for s in all_setups}
            _progress("stopping")
    except (KeyboardInterrupt, _Terminated) as exc:
        _progress("interrupted; everything started has been stopped")
        return 128 + (signal.SIGTERM if isinstance(exc, _Terminated) else signal.SIGINT)
    table = report.cells(runs, labels)
    overheads = report.summary(table)
    print(report.markdown(table, overheads))
    results = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "revision": _git_revision(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "settings": {"duration_s": args.duration, "rounds": args.rounds, "concurrency": args.concurrency,
                     "warmup_s": WARMUP_SECONDS, "prompt_bytes": PROMPT_BYTES, "ports": ports},
        "setups": labels,
        "cells": [vars(c) for c in table],
        "summary": overheads,
        "runs": [{"setup": r.setup, "concurrency": r.concurrency, "round": r.round, **r.result.as_dict()}
                 for r in runs],
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    _progress(f"results written to {OUT_DIR / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
