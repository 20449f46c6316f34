"""``python -m bench``: time the guardrails in-process, start the set-ups, check them, measure them interleaved, report.

Order of work, and why:

0. ``guardrail-cost``: the guardrail policies timed in this process
   (:mod:`bench.guardcost`), and ``metering``: the gateway's decision path with
   limits off, on the memory store and on Redis, metering's share, Redis round
   trips and memory per consumer (:mod:`bench.metering`, on a redis-server of
   its own), before any server starts, so none competes for the CPU;
1. start (c), (b), (a) at once on free ports (:mod:`bench.setups`), so rounds
   interleave without restarts; for ``guardrail-latency`` also (d), the
   gateway with guardrails off (only (c) and (d) when it is the only part with servers);
2. send each request the run will measure through each set-up once and check
   the answer, and check with the emulator's request log that (a), (b) and
   (c) made it do the same thing (same path, body bytes and signed headers):
   otherwise the comparison is void;
3. warm each set-up up once per part (connections, caches, the allocator);
4. for each part, ``rounds`` times: every API, and a, b, c in turn:

   * ``messages`` and ``chat``: non-streaming Anthropic ``/v1/messages`` and
     OpenAI ``/v1/chat/completions`` with wrk, at each ``--concurrency``
     (the two APIs alternate inside each round);
   * ``ttft``: streamed requests with :mod:`bench.streaming`, time to first
     token at each ``--ttft-concurrency``;
   * ``cpu``: a long streamed answer, paced, for ``--cpu-seconds``; CPU of
     the ext_proc process and of Envoy per 1,000 events (:mod:`bench.cpu`);
   * ``guardrail-latency``: non-streaming ``/v1/messages`` with a 1 KiB and a
     32 KiB prompt through (c) and (d) in turn, with wrk, at each ``--concurrency``
     (step 2 also checks that (c) refuses a card number and (d) lets it through);

5. print the results as markdown on stdout, write them with every raw run to
   ``var/bench/results.json``. Progress goes to stderr. ``--report FILE``
   prints the tables of a saved run again, from its raw runs.

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

from . import cpu, guardcost, metering, report, setups, streaming, wrk
from .payload import (APIS, GUARDED, LONG_ANSWER_WORDS, MESSAGES, MODEL, PACE_MS, PLAIN, PROMPT_BYTES, STREAM,
                      STREAM_LONG, HttpRequest, Workload)
from .report import CpuRun, GuardRun, Run, TtftRun
from .setups import Setup

OUT_DIR = ROOT / "var" / "bench"
WARMUP_SECONDS = 2
PARTS = ("messages", "chat", "ttft", "cpu", "guardrail-cost", "guardrail-latency", "metering")
ALIASES = {"stream": ("ttft", "cpu"), "guardrails": ("guardrail-cost", "guardrail-latency"), "all": PARTS}
COMPARED = "abc"
"""The set-ups of the parts messages, chat, ttft and cpu; guardrail-latency compares (c) and (d)."""


def _integers(text: str, parser: argparse.ArgumentParser, option: str) -> list[int]:
    try:
        values = [int(n) for n in text.split(",") if n.strip()]
    except ValueError:
        parser.error(f"{option} takes integers separated by commas, e.g. 1,16")
    if not values or min(values) < 1:
        parser.error(f"{option} needs at least one value, each at least 1")
    return values


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="all", metavar="PART,PART",
                        help="parts to run: messages, chat (non-streaming, wrk), ttft, cpu (streaming), "
                             "guardrail-cost (in-process), guardrail-latency (wrk), metering (in-process, "
                             "limits off, memory, Redis); 'stream' = ttft,cpu, "
                             "'guardrails' = guardrail-cost,guardrail-latency (default: all)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every part (default 3)")
    parser.add_argument("--duration", type=int, default=8, metavar="SECONDS",
                        help="length of each wrk run (default 8)")
    parser.add_argument("--concurrency", default="1,16", metavar="N,N",
                        help="wrk connection counts (default 1,16)")
    parser.add_argument("--ttft-requests", type=int, default=200, metavar="N",
                        help="streamed requests per set-up, concurrency and round (default 200)")
    parser.add_argument("--ttft-concurrency", default="1,8", metavar="N,N",
                        help="concurrent streams for time to first token (default 1,8)")
    parser.add_argument("--cpu-seconds", type=float, default=5.0, metavar="SECONDS",
                        help="length of each CPU run (default 5)")
    parser.add_argument("--cpu-concurrency", type=int, default=8, metavar="N",
                        help="concurrent streams in the CPU runs (default 8)")
    parser.add_argument("--guard-repeats", type=int, default=7, metavar="N",
                        help="repetitions of the in-process guardrail timings (default 7)")
    parser.add_argument("--report", type=Path, metavar="RESULTS_JSON",
                        help="run nothing: print the tables of a saved results.json from its raw runs "
                             "(and refresh the cells and summaries it holds)")
    parser.add_argument("--floor", action="store_true",
                        help="with the part messages: also (m), Envoy with bench/minimal_extproc.py, the least work "
                             "any Bedrock gateway's ext_proc must do in Python, and its added latency against (b)'s")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run (under a minute): 1 round, wrk runs of 1 s, 30 streams per TTFT cell, "
                             "CPU runs of 1 s, 3 repetitions of the guardrail timings, metering's small sizes")
    args = parser.parse_args(argv)
    parts: list[str] = []
    for name in (n.strip() for n in args.only.split(",") if n.strip()):
        if name not in PARTS and name not in ALIASES:
            parser.error(f"--only: unknown part {name!r}; choose from {', '.join(PARTS + tuple(ALIASES))}")
        parts += ALIASES.get(name, (name,))
    if not parts:
        parser.error("--only needs at least one part")
    args.parts = [p for p in PARTS if p in parts]
    args.warmup = WARMUP_SECONDS
    if args.quick:
        args.rounds, args.duration, args.warmup, args.ttft_requests, args.cpu_seconds = 1, 1, 1, 30, 1.0
        args.guard_repeats = 3
    args.concurrency = _integers(args.concurrency, parser, "--concurrency")
    args.ttft_concurrency = _integers(args.ttft_concurrency, parser, "--ttft-concurrency")
    if (min(args.duration, args.rounds, args.ttft_requests, args.cpu_concurrency, args.guard_repeats) < 1
            or args.cpu_seconds <= 0):
        parser.error("--duration, --rounds, --ttft-requests, --cpu-concurrency, --cpu-seconds and --guard-repeats "
                     "must be positive")
    return args


_STARTED = time.monotonic()


def _progress(message: str) -> None:
    print(f"bench [{time.monotonic() - _STARTED:4.0f}s]: {message}", file=sys.stderr, flush=True)


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


def _answer_problem(setup: Setup, workload: Workload, body: bytes) -> str | None:
    """Why ``body`` (a 200's) is not the answer ``workload`` expects from ``setup``, or None."""
    if workload.stream:
        events = streaming.read_all(body, streaming.reader_for(setup.key, workload.api))
        if events.error is not None:
            return events.error
        return None if events.first_delta and events.complete else "no content delta, or no end of stream"
    try:
        message = json.loads(body)
    except ValueError:
        return "not JSON"
    if not isinstance(message, dict):
        return "not a JSON object"
    if workload.api == MESSAGES:  # InvokeModel returns the Anthropic message itself
        return None if message.get("type") == "message" else "not an Anthropic message"
    if setup.key in ("c", "d"):
        return None if message.get("object") == "chat.completion" else "not an OpenAI chat completion"
    return None if "message" in message.get("output", {}) else "not a Converse answer"


def check(all_setups: list[Setup], workloads: list[Workload]) -> None:
    """Each workload through each set-up must succeed, and reach the emulator identically."""
    emulator = next(s for s in all_setups if s.key == "c")
    for workload in workloads:
        seen: dict[str, dict[str, Any]] = {}
        for setup in all_setups:
            _emulator(emulator, "DELETE")
            status, body = _send(setup.url, setup.request(workload))
            problem = f"status {status}" if status != 200 else _answer_problem(setup, workload, body)
            if problem is not None:
                raise SystemExit(f"bench: {setup.label}, {workload.name}: {problem}:\n"
                                 f"{body[:2000].decode(errors='replace')}\nlogs: {setup.stack.workdir}")
            records = _emulator(emulator)
            if len(records) != 1:
                raise SystemExit(f"bench: {setup.label}, {workload.name}: the emulator saw {len(records)} requests "
                                 "for one sent")
            seen[setup.key] = _upstream_view(records[0])
        _emulator(emulator, "DELETE")
        reference = seen["c"]
        for key, view in seen.items():
            if view != reference:
                raise SystemExit(
                    f"bench: {workload.name}: set-ups do not give the emulator the same work, so the comparison "
                    f"would be void.\n  (c) gateway sent: {reference}\n  ({key}) sent:       {view}\n"
                    "Update bench/payload.py to send what the gateway now sends."
                )


_CARD_PROMPT = "Please charge the order to my card 4692 7925 1656 5972, thanks."
"""A card number the default policy blocks (a corpus case)."""


def check_guardrails(gateway: Setup, unguarded: Setup) -> None:
    """(c) must refuse a card number (its default policy is on) and (d) must let it through (guardrails off):
    otherwise (c) − (d) would not measure the guardrails."""
    body = json.dumps({"model": MODEL, "max_tokens": 16,
                       "messages": [{"role": "user", "content": _CARD_PROMPT}]}).encode()
    for setup, expected in ((gateway, 400), (unguarded, 200)):
        request = setup.request(GUARDED[PROMPT_BYTES])
        status, answer = _send(setup.url, HttpRequest(request.method, request.path, request.headers, body))
        if status != expected or (expected == 400 and b"card" not in answer):
            raise SystemExit(f"bench: {setup.label} answered a card number with status {status}, expected {expected}"
                             f"{' (naming card data)' if expected == 400 else ''}:\n"
                             f"{answer[:2000].decode(errors='replace')}\nlogs: {setup.stack.workdir}")
    _emulator(gateway, "DELETE")


# -- non-streaming, wrk -------------------------------------------------------------------------------


def measure_wrk(all_setups: list[Setup], apis: list[str], concurrency: list[int], rounds: int, seconds: int,
                warmup: int, workdir: Path) -> list[Run]:
    wrk_bin = wrk.ensure_wrk()
    scripts = workdir / "wrk"
    scripts.mkdir(parents=True, exist_ok=True)
    for api in apis:
        for setup in (s for s in all_setups if api in s.apis):
            _progress(f"warm-up {api} {setup.label}: {warmup}s at concurrency {max(concurrency)}")
            wrk.run(wrk_bin, setup.url, setup.request(PLAIN[api]), max(concurrency), warmup,
                    scripts / f"warmup-{api}-{setup.key}.lua")
    runs = []
    for n in concurrency:
        for round_no in range(1, rounds + 1):
            for api in apis:
                for setup in (s for s in all_setups if api in s.apis):
                    script = scripts / f"{api}-c{n}-r{round_no}-{setup.key}.lua"
                    try:
                        result = wrk.run(wrk_bin, setup.url, setup.request(PLAIN[api]), n, seconds, script)
                    except wrk.WrkError as exc:
                        raise SystemExit(f"bench: {api} {setup.label} at concurrency {n}: {exc}\n"
                                         f"logs: {setup.stack.workdir}")
                    runs.append(Run(api, setup.key, n, round_no, result))
                    _progress(f"{api} c={n} round {round_no}/{rounds} {setup.label}: p50 {result.p50_ms:.2f} ms, "
                              f"p99 {result.p99_ms:.2f} ms, {result.requests_per_s:.0f} req/s")
    return runs


def measure_guarded(compared: list[Setup], concurrency: list[int], rounds: int, seconds: int, warmup: int,
                    workdir: Path) -> list[GuardRun]:
    """Each prompt size of :data:`GUARDED` through (c) and (d) in turn, with wrk."""
    wrk_bin = wrk.ensure_wrk()
    scripts = workdir / "wrk"
    scripts.mkdir(parents=True, exist_ok=True)
    for size, workload in GUARDED.items():
        for setup in compared:
            _progress(f"warm-up guardrails {size} B {setup.label}: {warmup}s at concurrency {max(concurrency)}")
            wrk.run(wrk_bin, setup.url, setup.request(workload), max(concurrency), warmup,
                    scripts / f"warmup-guarded-{size}-{setup.key}.lua")
    runs = []
    for n in concurrency:
        for round_no in range(1, rounds + 1):
            for size, workload in GUARDED.items():
                for setup in compared:
                    script = scripts / f"guarded-{size}-c{n}-r{round_no}-{setup.key}.lua"
                    try:
                        result = wrk.run(wrk_bin, setup.url, setup.request(workload), n, seconds, script)
                    except wrk.WrkError as exc:
                        raise SystemExit(f"bench: guardrails, {size} B prompt, {setup.label} at concurrency {n}: "
                                         f"{exc}\nlogs: {setup.stack.workdir}")
                    runs.append(GuardRun(size, setup.key, n, round_no, result))
                    _progress(f"guardrails {size} B c={n} round {round_no}/{rounds} {setup.label}: "
                              f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
                              f"{result.requests_per_s:.0f} req/s")
    return runs


# -- streaming --------------------------------------------------------------------------------------


def _streaming_failed(setup: Setup, what: str, exc: Exception) -> SystemExit:
    return SystemExit(f"bench: {what} {setup.label}: {exc}\nlogs: {setup.stack.workdir}")


def measure_ttft(all_setups: list[Setup], apis: list[str], concurrency: list[int], rounds: int,
                 requests: int) -> list[TtftRun]:
    warmup = max(10, requests // 10)
    for api in apis:
        for setup in (s for s in all_setups if api in s.apis):
            _progress(f"warm-up streaming {api} {setup.label}: {warmup} requests at concurrency {max(concurrency)}")
            try:
                streaming.ttft_run(setup.url, setup.request(STREAM[api]), streaming.reader_for(setup.key, api),
                                   warmup, max(concurrency))
            except (streaming.StreamError, OSError, TimeoutError) as exc:
                raise _streaming_failed(setup, f"streaming {api}", exc) from None
    runs = []
    for n in concurrency:
        for round_no in range(1, rounds + 1):
            for api in apis:
                for setup in all_setups:
                    try:
                        exchanges = streaming.ttft_run(setup.url, setup.request(STREAM[api]),
                                                       streaming.reader_for(setup.key, api), requests, n)
                    except (streaming.StreamError, OSError, TimeoutError) as exc:
                        raise _streaming_failed(setup, f"TTFT {api} at concurrency {n}", exc) from None
                    run = TtftRun(api, setup.key, n, round_no, [e.ttft_s * 1000 for e in exchanges],
                                  [e.total_s * 1000 for e in exchanges], [e.events for e in exchanges])
                    runs.append(run)
                    _progress(f"TTFT {api} c={n} round {round_no}/{rounds} {setup.label}: "
                              f"p50 {report.percentile(run.ttft_ms, 50):.2f} ms, "
                              f"p99 {report.percentile(run.ttft_ms, 99):.2f} ms")
    return runs


class _Snapshot:
    """CPU seconds of a set-up's processes and its ext_proc message count, read around a CPU run.

    The admin request for the counter is made outside the measured window:
    before the CPU times at the start, after them at the end.
    """

    def __init__(self, setup: Setup, emulator_pid: int) -> None:
        self.admin = setup.stack.ports.admin
        self.pids = {"extproc": setup.pid("extproc"), "envoy": setup.pid("envoy"), "emulator": emulator_pid}
        self.calls = 0

    def _cpu(self) -> dict[str, float]:
        values = {role: cpu.cpu_seconds(pid) for role, pid in self.pids.items() if pid is not None}
        values["machine"] = cpu.machine_busy_seconds()
        return values

    def _messages(self) -> float:
        count = cpu.envoy_counter(self.admin, cpu.EXT_PROC_MESSAGES)
        return -1.0 if count is None else float(count)

    def __call__(self) -> dict[str, float]:
        self.calls += 1
        if self.calls == 1:  # the start: the counter first
            messages = self._messages()
            return {**self._cpu(), "messages": messages}
        values = self._cpu()  # the end: the CPU times first
        values["messages"] = self._messages()
        return values


def measure_cpu(all_setups: list[Setup], apis: list[str], rounds: int, seconds: float, concurrency: int,
                warmup: float) -> list[CpuRun]:
    emulator_pid = next(s for s in all_setups if s.key == "c").pid("emulator")
    assert emulator_pid is not None
    for api in apis if warmup else ():
        for setup in all_setups:
            _progress(f"warm-up long streams {api} {setup.label}: {warmup:g}s at concurrency {concurrency}")
            try:
                streaming.load_run(setup.url, setup.request(STREAM_LONG[api]), setup.request(STREAM[api]),
                                   streaming.reader_for(setup.key, api), concurrency, warmup, dict)
            except (streaming.StreamError, OSError, TimeoutError) as exc:
                raise _streaming_failed(setup, f"long streams {api}", exc) from None
    runs = []
    for round_no in range(1, rounds + 1):
        for api in apis:
            for setup in all_setups:
                try:
                    result = streaming.load_run(setup.url, setup.request(STREAM_LONG[api]),
                                                setup.request(STREAM[api]), streaming.reader_for(setup.key, api),
                                                concurrency, seconds, _Snapshot(setup, emulator_pid))
                except (streaming.StreamError, OSError, TimeoutError) as exc:
                    raise _streaming_failed(setup, f"CPU {api}", exc) from None
                used = {role: result.after[role] - result.before[role] for role in result.before if role != "messages"}
                used["client"] = result.client_cpu_s
                messages = None if result.before["messages"] < 0 else int(result.after["messages"]
                                                                          - result.before["messages"])
                run = CpuRun(api, setup.key, round_no, result.seconds, result.responses, result.events, used, messages)
                runs.append(run)
                extproc = (f"ext_proc {used['extproc'] * 1e6 / result.events:.0f} µs/event, "
                           if run.setup != "a" else "")
                _progress(f"CPU {api} round {round_no}/{rounds} {setup.label}: {result.responses} streams, "
                          f"{result.events} events, {extproc}Envoy {used['envoy'] * 1e6 / result.events:.0f} µs/event")
    return runs


# -- the run --------------------------------------------------------------------------------------------


def _git_revision() -> str | None:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty.strip() else "")


def _loadavg() -> list[float]:
    """The machine's 1, 5 and 15-minute load averages: how busy it was besides the benchmark."""
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


class _Terminated(BaseException):
    """SIGTERM: unwinds through every cleanup, like Ctrl-C's KeyboardInterrupt."""


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    if args.report:
        return report_only(args.report)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored (`cmd &`)
    wrk_apis = [api for api in APIS if api in args.parts]  # the parts "messages" and "chat" are the API names
    guard_latency = "guardrail-latency" in args.parts
    if wrk_apis or guard_latency:
        wrk.ensure_wrk()  # before starting anything: a missing wrk should cost nothing
    keys = COMPARED if set(args.parts) & {"messages", "chat", "ttft", "cpu"} else ""
    floor = args.floor and MESSAGES in wrk_apis
    keys = "".join(sorted(set(keys + ("cd" if guard_latency else "") + ("m" if floor else ""))))
    workloads = [PLAIN[api] for api in wrk_apis]
    workloads += [STREAM[api] for api in APIS] if "ttft" in args.parts else []
    workloads += [STREAM_LONG[api] for api in APIS] if "cpu" in args.parts else []
    workdir = OUT_DIR / "run"
    shutil.rmtree(workdir, ignore_errors=True)
    started = time.time()
    loadavg_start = _loadavg()
    runs: list[Run] = []
    ttft_runs: list[TtftRun] = []
    cpu_runs: list[CpuRun] = []
    guard_cost: dict[str, Any] | None = None
    metering_results: dict[str, Any] | None = None
    guard_runs: list[GuardRun] = []
    guard_inprocess: dict[int, float] = {}
    labels: dict[str, str] = {}
    ports: dict[str, int] = {}
    try:
        _progress(f"parts: {', '.join(args.parts)}")
        if "guardrail-cost" in args.parts:  # in this process, before any server starts
            _progress(f"guardrail cost: {args.guard_repeats} repetitions of every policy on every body")
            guard_cost = guardcost.measure(args.guard_repeats, _progress)
        if "metering" in args.parts:  # in this process too, and its own redis-server
            metering_results = metering.measure(args.quick, _progress)
        if keys:
            _progress(f"starting set-ups {', '.join(f'({k})' for k in keys)} (logs in {workdir})")
            with setups.running(workdir, keys) as all_setups:
                compared = [s for s in all_setups if s.key in COMPARED]
                if workloads:
                    check(compared, workloads)
                    _progress(f"(a), (b) and (c) answer {len(workloads)} kinds of request, and give the emulator "
                              "the same")
                if guard_latency:
                    guarded = [s for s in all_setups if s.key in "cd"]
                    check(guarded, list(GUARDED.values()))
                    check_guardrails(*guarded)
                    _progress("(c) and (d) give the emulator the same for each prompt; (c) refuses a card number, "
                              "(d) lets it through")
                minimal = [s for s in all_setups if s.key == "m"]
                if minimal:
                    check([*compared, *minimal], [PLAIN[MESSAGES]])
                    _progress("(m) answers messages and gives the emulator what (c) gives it")
                if wrk_apis:
                    runs = measure_wrk([*compared, *minimal], wrk_apis, args.concurrency, args.rounds, args.duration,
                                       args.warmup, workdir)
                if "ttft" in args.parts:
                    ttft_runs = measure_ttft(compared, list(APIS), args.ttft_concurrency, args.rounds,
                                             args.ttft_requests)
                if "cpu" in args.parts:
                    cpu_runs = measure_cpu(compared, list(APIS), args.rounds, args.cpu_seconds,
                                           args.cpu_concurrency, 0 if args.quick else 1.0)
                if guard_latency:
                    guard_runs = measure_guarded(guarded, args.concurrency, args.rounds, args.duration, args.warmup,
                                                 workdir)
                    guard_inprocess = {size: guardcost.request_ms(workload.client_body())
                                       for size, workload in GUARDED.items()}
                labels = {s.key: s.label for s in all_setups}
                ports = {s.key: s.stack.ports.gateway for s in all_setups}
                _progress("stopping")
    except (KeyboardInterrupt, _Terminated) as exc:
        _progress("interrupted; everything started has been stopped")
        return 128 + (signal.SIGTERM if isinstance(exc, _Terminated) else signal.SIGINT)

    results: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "revision": _git_revision(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg_start": loadavg_start,
                    "loadavg_end": _loadavg()},
        "settings": {"parts": args.parts, "rounds": args.rounds, "duration_s": args.duration,
                     "concurrency": args.concurrency, "warmup_s": args.warmup, "prompt_bytes": PROMPT_BYTES,
                     "ttft_requests": args.ttft_requests, "ttft_concurrency": args.ttft_concurrency,
                     "cpu_seconds": args.cpu_seconds, "cpu_concurrency": args.cpu_concurrency,
                     "cpu_pace_ms": PACE_MS, "cpu_answer_words": LONG_ANSWER_WORDS,
                     "guard_repeats": args.guard_repeats, "guarded_prompt_bytes": list(GUARDED), "ports": ports},
        "setups": labels,
    }
    if runs:
        results["runs"] = [{"api": r.api, "setup": r.setup, "concurrency": r.concurrency, "round": r.round,
                            **r.result.as_dict()} for r in runs]
    if ttft_runs:
        results["ttft"] = {"runs": [r.as_dict() for r in ttft_runs]}
    if cpu_runs:
        results["cpu"] = {"runs": [vars(r) for r in cpu_runs]}
    if guard_cost:
        results["guardrail_cost"] = guard_cost
    if metering_results:
        results["metering"] = metering_results
    if guard_runs:
        results["guardrail_latency"] = {"inprocess_request_ms": guard_inprocess,
                                        "runs": [{"prompt_bytes": r.prompt_bytes, "setup": r.setup,
                                                  "concurrency": r.concurrency, "round": r.round,
                                                  **r.result.as_dict()} for r in guard_runs]}
    print(render(results))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    _progress(f"results written to {OUT_DIR / 'results.json'}")
    return 0


def render(results: dict[str, Any]) -> str:
    """The markdown report of ``results``' raw runs; their cells and summaries are (re)written into ``results``."""
    labels, settings = results["setups"], results["settings"]
    sections = [f"## make bench: {results['revision']}, {results['machine']['cpus']} CPUs, "
                f"{settings['rounds']} round(s), started {results['started_at']}"]
    if results.get("runs"):
        runs = [Run(r["api"], r["setup"], r["concurrency"], r["round"],
                    wrk.WrkResult(r["p50_ms"], r["p99_ms"], r["requests_per_s"], r["requests"]))
                for r in results["runs"]]
        table = report.cells(runs, labels)
        overheads = report.summary(table)
        sections.append(report.markdown(table, overheads))
        results["cells"], results["summary"] = [vars(c) for c in table], overheads
    if results.get("ttft"):
        ttft_runs = [TtftRun(r["api"], r["setup"], r["concurrency"], r["round"], r["ttft_ms"], r["total_ms"],
                             r.get("events") or [r["events_per_stream"]] * len(r["ttft_ms"]))
                     for r in results["ttft"]["runs"]]
        table_ttft = report.ttft_cells(ttft_runs, labels)
        overheads_ttft = report.ttft_summary(table_ttft)
        sections.append(report.ttft_markdown(table_ttft, overheads_ttft))
        results["ttft"].update(cells=[vars(c) for c in table_ttft], summary=overheads_ttft)
    if results.get("cpu"):
        cpu_runs = [CpuRun(**r) for r in results["cpu"]["runs"]]
        table_cpu = report.cpu_cells(cpu_runs, labels)
        overheads_cpu = report.cpu_summary(table_cpu)
        sections.append(report.cpu_markdown(table_cpu, overheads_cpu, settings["cpu_concurrency"],
                                            settings["cpu_pace_ms"], settings["cpu_answer_words"]))
        results["cpu"].update(cells=[c.as_dict() for c in table_cpu], summary=overheads_cpu)
    if results.get("guardrail_cost"):
        cost = results["guardrail_cost"]
        table_cost = guardcost.cells(cost)
        sections.append(guardcost.markdown(table_cost, cost))
        cost.update(cells=[vars(c) for c in table_cost], summary=guardcost.summary(table_cost))
    if results.get("guardrail_latency"):
        guard_runs = [GuardRun(r["prompt_bytes"], r["setup"], r["concurrency"], r["round"],
                               wrk.WrkResult(r["p50_ms"], r["p99_ms"], r["requests_per_s"], r["requests"]))
                      for r in results["guardrail_latency"]["runs"]]
        table_guard = report.guard_cells(guard_runs, labels)
        inprocess = {int(size): ms for size, ms in results["guardrail_latency"].get("inprocess_request_ms", {}).items()}
        overheads_guard = report.guard_summary(table_guard, inprocess)
        sections.append(report.guard_markdown(table_guard, overheads_guard))
        results["guardrail_latency"].update(cells=[vars(c) for c in table_guard], summary=overheads_guard)
    if results.get("metering"):
        measured = results["metering"]
        table_metering = metering.cells(measured)
        sections.append(metering.markdown(table_metering, measured))
        measured.update(cells=[vars(c) for c in table_metering], summary=metering.summary(table_metering, measured))
    return "\n\n".join(sections)


def report_only(path: Path) -> int:
    """``--report FILE``: the tables of a saved run, from its raw runs; the file's cells and summaries refreshed."""
    results = json.loads(path.read_text())
    print(render(results))
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
