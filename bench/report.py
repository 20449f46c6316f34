"""From raw runs to the numbers we judge the gateway by: medians, percentiles, overheads, ratios.

Non-streaming (wrk): each cell (API × set-up × concurrency) is the median over
rounds of p50, p99 and requests/s taken separately: with three interleaved
rounds on a noisy shared machine, one disturbed run then moves nothing.
Overheads are differences of those medians against (a); the headline is
(c − a) / (b − a) of p50, the gateway's added latency in units of what a
do-nothing ext_proc adds.

Time to first token: each round's requests give a p50 and a p99 (200
requests a round by default); a cell is the median over rounds, like wrk's, so
one disturbed round moves nothing (the percentiles of all rounds pooled are
kept in the JSON too). Added TTFT is again against (a), and judged the same way.

Guardrail latency (wrk): the gateway with its default guardrail policy (c)
against the same gateway with guardrails off (d), cells as for the
non-streaming requests (median over rounds), and (c) − (d): what the default
policy adds.

The two in-process parts keep their figures next to their measurements:
:mod:`bench.guardcost` (guardrail cost per KB) and :mod:`bench.metering`
(the decision path with limits off, on the memory store and on Redis: µs per
request, median over interleaved rounds, and the ratios to limits off;
metering's share; Redis round trips and memory per consumer; memory held).

CPU: each round gives CPU milliseconds per 1,000 events the client received
(and per stream); a cell is the median over rounds, like wrk's. The
comparison across set-ups is made per stream (the same streams, the same
upstream work), then expressed per 1,000 Bedrock events (the frames (a)'s
client counted), because the gateway's OpenAI client receives one event fewer
per stream than Bedrock sent.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .payload import APIS, CHAT, MESSAGES
from .wrk import WrkResult

TARGET = 1.3
API_LABELS = {MESSAGES: "messages", CHAT: "chat"}


def _order(keys: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Distinct keys (api, concurrency, setup…), grouped by API in :data:`APIS` order, else as first seen."""
    unique = list(dict.fromkeys(keys))
    return sorted(unique, key=lambda k: (APIS.index(k[0]), unique.index(k)))


def _signed(ms: float) -> str:
    return f"{ms:+.2f}"


def _ratio(added: float, floor: float) -> float | None:
    """``added / floor``; undefined when the floor is ≤ 0 (below the noise): the ratio would be noise or infinite."""
    return added / floor if floor > 0 else None


def _verdict(ratio: float | None) -> str:
    if ratio is None:
        return "n/a (the no-op added ≤ 0: below the noise)"
    return f"{ratio:.2f} (target ≤ {TARGET}) " + ("ok" if ratio <= TARGET else "MISSED")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100), linear between the closest ranks."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# -- non-streaming, wrk --------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    api: str
    setup: str
    concurrency: int
    round: int
    result: WrkResult


@dataclass(frozen=True)
class Cell:
    api: str
    setup: str
    label: str
    concurrency: int
    p50_ms: float
    p99_ms: float
    requests_per_s: float


def cells(runs: list[Run], labels: dict[str, str]) -> list[Cell]:
    """Median per (API, concurrency, set-up)."""
    out = []
    for api, concurrency, setup in _order((r.api, r.concurrency, r.setup) for r in runs):
        mine = [r.result for r in runs if (r.api, r.concurrency, r.setup) == (api, concurrency, setup)]
        out.append(Cell(api, setup, labels[setup], concurrency,
                        statistics.median(r.p50_ms for r in mine),
                        statistics.median(r.p99_ms for r in mine),
                        statistics.median(r.requests_per_s for r in mine)))
    return out


def summary(table: list[Cell]) -> list[dict[str, Any]]:
    """Per API and concurrency: what (b) and (c) add over (a), and (c) against (b)."""
    out = []
    for api, concurrency in dict.fromkeys((c.api, c.concurrency) for c in table):
        by = {c.setup: c for c in table if (c.api, c.concurrency) == (api, concurrency)}
        a, b, c = by["a"], by["b"], by["c"]
        noop_added = b.p50_ms - a.p50_ms
        gateway_added = c.p50_ms - a.p50_ms
        out.append({
            "api": api,
            "concurrency": concurrency,
            "noop_added_p50_ms": noop_added,
            "gateway_added_p50_ms": gateway_added,
            "noop_added_p99_ms": b.p99_ms - a.p99_ms,
            "gateway_added_p99_ms": c.p99_ms - a.p99_ms,
            "gateway_over_noop_latency_p50": c.p50_ms / b.p50_ms,
            "gateway_over_noop_throughput": c.requests_per_s / b.requests_per_s,
            "added_latency_ratio": _ratio(gateway_added, noop_added),
            "target": TARGET,
            **({"minimal_added_p50_ms": by["m"].p50_ms - a.p50_ms,
                "minimal_added_latency_ratio": _ratio(by["m"].p50_ms - a.p50_ms, noop_added)} if "m" in by else {}),
        })
    return out


def markdown(table: list[Cell], overheads: list[dict[str, Any]]) -> str:
    lines = ["### Non-streaming requests (wrk)", "",
             "Latency and throughput of one request with a 1 KiB prompt and a short answer; "
             "each cell is the median over rounds.", "",
             "| API | set-up | concurrency | p50 ms | p99 ms | requests/s |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {API_LABELS[c.api]} | {c.label} | {c.concurrency} | {c.p50_ms:.2f} | {c.p99_ms:.2f} "
              f"| {c.requests_per_s:.0f} |" for c in table]
    lines += ["", "What the no-op ext_proc (b) and the gateway (c) add to Envoy alone (a), and the gateway "
              "against the no-op.", "",
              "| API | concurrency | (b)−(a) p50 ms | (c)−(a) p50 ms | (b)−(a) p99 ms | (c)−(a) p99 ms "
              "| (c)/(b) p50 latency | (c)/(b) throughput |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {API_LABELS[s['api']]} | {s['concurrency']} | {_signed(s['noop_added_p50_ms'])} "
              f"| {_signed(s['gateway_added_p50_ms'])} | {_signed(s['noop_added_p99_ms'])} "
              f"| {_signed(s['gateway_added_p99_ms'])} | {s['gateway_over_noop_latency_p50']:.2f} "
              f"| {s['gateway_over_noop_throughput']:.2f} |" for s in overheads]
    lines.append("")
    for s in overheads:
        lines.append(f"- {API_LABELS[s['api']]}, concurrency {s['concurrency']}: gateway added latency / "
                     f"no-op ext_proc added latency = {_verdict(s['added_latency_ratio'])}")
    for s in (s for s in overheads if "minimal_added_latency_ratio" in s):
        ratio = s["minimal_added_latency_ratio"]
        lines.append(f"- {API_LABELS[s['api']]}, concurrency {s['concurrency']}, the floor: (m) minimal ext_proc added "
                     f"latency / no-op ext_proc added latency = {'n/a' if ratio is None else f'{ratio:.2f}'}")
    return "\n".join(lines)


# -- streaming: time to first token ----------------------------------------------------------------


@dataclass
class TtftRun:
    api: str
    setup: str
    concurrency: int
    round: int
    ttft_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)
    events: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"api": self.api, "setup": self.setup, "concurrency": self.concurrency, "round": self.round,
                "requests": len(self.ttft_ms), "ttft_p50_ms": percentile(self.ttft_ms, 50),
                "ttft_p99_ms": percentile(self.ttft_ms, 99), "events_per_stream": statistics.median(self.events),
                "ttft_ms": [round(v, 3) for v in self.ttft_ms], "total_ms": [round(v, 3) for v in self.total_ms],
                "events": self.events}


@dataclass(frozen=True)
class TtftCell:
    api: str
    setup: str
    label: str
    concurrency: int
    requests: int
    ttft_p50_ms: float
    ttft_p99_ms: float
    total_p50_ms: float
    events_per_stream: float
    pooled_ttft_p50_ms: float
    pooled_ttft_p99_ms: float


def ttft_cells(runs: list[TtftRun], labels: dict[str, str]) -> list[TtftCell]:
    """Per (API, concurrency, set-up): the median over rounds of each round's percentiles."""
    out = []
    for api, concurrency, setup in _order((r.api, r.concurrency, r.setup) for r in runs):
        mine = [r for r in runs if (r.api, r.concurrency, r.setup) == (api, concurrency, setup)]
        pooled = [v for r in mine for v in r.ttft_ms]
        out.append(TtftCell(
            api, setup, labels[setup], concurrency, len(pooled),
            statistics.median(percentile(r.ttft_ms, 50) for r in mine),
            statistics.median(percentile(r.ttft_ms, 99) for r in mine),
            statistics.median(percentile(r.total_ms, 50) for r in mine),
            statistics.median(v for r in mine for v in r.events),
            percentile(pooled, 50), percentile(pooled, 99),
        ))
    return out


def ttft_summary(table: list[TtftCell]) -> list[dict[str, Any]]:
    out = []
    for api, concurrency in dict.fromkeys((c.api, c.concurrency) for c in table):
        by = {c.setup: c for c in table if (c.api, c.concurrency) == (api, concurrency)}
        a, b, c = by["a"], by["b"], by["c"]
        out.append({
            "api": api,
            "concurrency": concurrency,
            "noop_added_ttft_p50_ms": b.ttft_p50_ms - a.ttft_p50_ms,
            "gateway_added_ttft_p50_ms": c.ttft_p50_ms - a.ttft_p50_ms,
            "noop_added_ttft_p99_ms": b.ttft_p99_ms - a.ttft_p99_ms,
            "gateway_added_ttft_p99_ms": c.ttft_p99_ms - a.ttft_p99_ms,
            "added_ttft_ratio_p50": _ratio(c.ttft_p50_ms - a.ttft_p50_ms, b.ttft_p50_ms - a.ttft_p50_ms),
            "added_ttft_ratio_p99": _ratio(c.ttft_p99_ms - a.ttft_p99_ms, b.ttft_p99_ms - a.ttft_p99_ms),
            "target": TARGET,
        })
    return out


def ttft_markdown(table: list[TtftCell], overheads: list[dict[str, Any]]) -> str:
    lines = ["### Streaming: time to first token", "",
             "Client-side time from sending a streamed request (the 1 KiB prompt of the non-streaming "
             "requests) to the first content delta: an SSE delta for (c), a Bedrock delta frame for (a) "
             "and (b); median over rounds of each round's percentiles.", "",
             "| API | set-up | concurrency | requests | TTFT p50 ms | TTFT p99 ms | whole stream p50 ms "
             "| events/stream |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {API_LABELS[c.api]} | {c.label} | {c.concurrency} | {c.requests} | {c.ttft_p50_ms:.2f} "
              f"| {c.ttft_p99_ms:.2f} | {c.total_p50_ms:.2f} | {c.events_per_stream:g} |" for c in table]
    lines += ["", "Added time to first token over Envoy alone (a): the no-op ext_proc (b) against the gateway (c).",
              "",
              "| API | concurrency | (b)−(a) p50 ms | (c)−(a) p50 ms | (b)−(a) p99 ms | (c)−(a) p99 ms "
              "| (c−a)/(b−a) p50 | (c−a)/(b−a) p99 |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]

    def ratio(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    lines += [f"| {API_LABELS[s['api']]} | {s['concurrency']} | {_signed(s['noop_added_ttft_p50_ms'])} "
              f"| {_signed(s['gateway_added_ttft_p50_ms'])} | {_signed(s['noop_added_ttft_p99_ms'])} "
              f"| {_signed(s['gateway_added_ttft_p99_ms'])} | {ratio(s['added_ttft_ratio_p50'])} "
              f"| {ratio(s['added_ttft_ratio_p99'])} |" for s in overheads]
    lines.append("")
    for s in overheads:
        lines.append(f"- {API_LABELS[s['api']]}, concurrency {s['concurrency']}: gateway added TTFT / no-op "
                     f"ext_proc added TTFT (p50) = {_verdict(s['added_ttft_ratio_p50'])}")
    return "\n".join(lines)


# -- streaming: CPU per event -------------------------------------------------------------------------

ROLES = ("extproc", "envoy", "emulator")


@dataclass(frozen=True)
class CpuRun:
    api: str
    setup: str
    round: int
    seconds: float
    streams: int
    events: int
    cpu_s: dict[str, float]
    """CPU seconds used during the run by each process role (``extproc`` absent for (a)), by the ``client``
    (this process) and by the whole ``machine`` (everything busy, other users' work included)."""
    extproc_messages: int | None
    """Messages Envoy sent to the ext_proc service during the run (None for (a))."""


@dataclass(frozen=True)
class CpuCell:
    """One (API, set-up): counts summed over its rounds, CPU figures the median of the rounds' own."""

    api: str
    setup: str
    label: str
    rounds: tuple[CpuRun, ...]

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.rounds)

    @property
    def streams(self) -> int:
        return sum(r.streams for r in self.rounds)

    @property
    def events(self) -> int:
        return sum(r.events for r in self.rounds)

    @property
    def events_per_stream(self) -> float:
        return self.events / self.streams

    @property
    def messages_per_stream(self) -> float | None:
        messages = [r.extproc_messages for r in self.rounds]
        return None if None in messages else sum(m or 0 for m in messages) / self.streams

    def ms_per_1k_events(self, role: str) -> float | None:
        if role not in self.rounds[0].cpu_s:
            return None
        return statistics.median(r.cpu_s[role] * 1e6 / r.events for r in self.rounds)

    def us_per_stream(self, role: str) -> float:
        return statistics.median(r.cpu_s.get(role, 0.0) * 1e6 / r.streams for r in self.rounds)

    @property
    def others_cpus(self) -> float | None:
        """CPUs' worth of work the machine did besides this set-up and the client, during a run (median)."""
        if "machine" not in self.rounds[0].cpu_s:
            return None
        def others(run: CpuRun) -> float:
            ours = sum(v for role, v in run.cpu_s.items() if role != "machine")
            return max(0.0, run.cpu_s["machine"] - ours) / run.seconds

        return statistics.median(others(r) for r in self.rounds)

    def as_dict(self) -> dict[str, Any]:
        roles = self.rounds[0].cpu_s
        return {"api": self.api, "setup": self.setup, "label": self.label, "rounds": len(self.rounds),
                "seconds": self.seconds, "streams": self.streams, "events": self.events,
                "events_per_stream": self.events_per_stream, "streams_per_s": self.streams / self.seconds,
                "others_cpus": self.others_cpus, "extproc_messages_per_stream": self.messages_per_stream,
                "cpu_ms_per_1k_events": {role: self.ms_per_1k_events(role) for role in roles},
                "cpu_us_per_stream": {role: self.us_per_stream(role) for role in roles}}


def cpu_cells(runs: list[CpuRun], labels: dict[str, str]) -> list[CpuCell]:
    """Each (API, set-up) with its rounds."""
    return [CpuCell(api, setup, labels[setup], tuple(r for r in runs if (r.api, r.setup) == (api, setup)))
            for api, setup in _order((r.api, r.setup) for r in runs)]


def cpu_summary(table: list[CpuCell]) -> list[dict[str, Any]]:
    """Per API: added CPU over (a), per stream, in ms per 1,000 Bedrock events."""
    out = []
    for api in dict.fromkeys(c.api for c in table):
        by = {c.setup: c for c in table if c.api == api}
        a, b, c = by["a"], by["b"], by["c"]
        per_1k = 1 / a.events_per_stream  # µs per stream → ms per 1,000 Bedrock events

        def added(cell: CpuCell) -> float:
            return cell.us_per_stream("extproc") + cell.us_per_stream("envoy") - a.us_per_stream("envoy")

        out.append({
            "api": api,
            "bedrock_events_per_stream": a.events_per_stream,
            "extproc_noop_ms_per_1k": b.us_per_stream("extproc") * per_1k,
            "extproc_gateway_ms_per_1k": c.us_per_stream("extproc") * per_1k,
            "extproc_gateway_over_noop": _ratio(c.us_per_stream("extproc"), b.us_per_stream("extproc")),
            "envoy_noop_added_ms_per_1k": (b.us_per_stream("envoy") - a.us_per_stream("envoy")) * per_1k,
            "envoy_gateway_added_ms_per_1k": (c.us_per_stream("envoy") - a.us_per_stream("envoy")) * per_1k,
            "noop_added_ms_per_1k": added(b) * per_1k,
            "gateway_added_ms_per_1k": added(c) * per_1k,
            "added_cpu_ratio": _ratio(added(c), added(b)),
        })
    return out


def cpu_markdown(table: list[CpuCell], overheads: list[dict[str, Any]], concurrency: int, pace_ms: int,
                 words: int) -> str:
    def ms(value: float | None) -> str:
        return "–" if value is None else f"{value:.1f}"

    lines = ["### Streaming: CPU per 1,000 events", "",
             f"CPU (user+sys) per 1,000 events the client received, streaming a long answer "
             f"(`[[emulator:words={words}]]`) with frames {pace_ms} ms apart (one ext_proc message per frame), "
             f"{concurrency} streams at a time; events are SSE events for (c), Bedrock frames for (a) and (b); "
             "median over rounds; the last column is the CPUs the machine's other work used meanwhile.", "",
             "| API | set-up | streams | streams/s | events/stream | ext_proc msgs/stream | ext_proc ms "
             "| Envoy ms | ext_proc + Envoy ms | emulator ms | other load (CPUs) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for c in table:
        extproc, envoy = c.ms_per_1k_events("extproc"), c.ms_per_1k_events("envoy")
        both = (extproc or 0.0) + (envoy or 0.0)
        messages = "–" if c.messages_per_stream is None else f"{c.messages_per_stream:.1f}"
        lines.append(f"| {API_LABELS[c.api]} | {c.label} | {c.streams} | {c.streams / c.seconds:.0f} "
                     f"| {c.events_per_stream:g} | {messages} | {ms(extproc)} | {ms(envoy)} | {ms(both)} "
                     f"| {ms(c.ms_per_1k_events('emulator'))} "
                     f"| {'–' if c.others_cpus is None else f'{c.others_cpus:.2f}'} |")
    lines += ["", "CPU added over Envoy alone (a), compared per stream and given in ms per 1,000 Bedrock events: "
              "the ext_proc process, Envoy's extra work, and both.", "",
              "| API | ext_proc (b) ms | ext_proc (c) ms | ext_proc (c)/(b) | Envoy (b)−(a) ms | Envoy (c)−(a) ms "
              "| total (b)−(a) ms | total (c)−(a) ms | (c−a)/(b−a) |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]

    def ratio(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    lines += [f"| {API_LABELS[s['api']]} | {s['extproc_noop_ms_per_1k']:.1f} | {s['extproc_gateway_ms_per_1k']:.1f} "
              f"| {ratio(s['extproc_gateway_over_noop'])} | {s['envoy_noop_added_ms_per_1k']:+.1f} "
              f"| {s['envoy_gateway_added_ms_per_1k']:+.1f} | {s['noop_added_ms_per_1k']:+.1f} "
              f"| {s['gateway_added_ms_per_1k']:+.1f} | {ratio(s['added_cpu_ratio'])} |" for s in overheads]
    return "\n".join(lines)


# -- guardrails: the default policy's added latency (wrk) --------------------------------------------


@dataclass(frozen=True)
class GuardRun:
    prompt_bytes: int
    setup: str
    concurrency: int
    round: int
    result: WrkResult


@dataclass(frozen=True)
class GuardCell:
    prompt_bytes: int
    setup: str
    label: str
    concurrency: int
    p50_ms: float
    p99_ms: float
    requests_per_s: float


def guard_cells(runs: list[GuardRun], labels: dict[str, str]) -> list[GuardCell]:
    """Median per (prompt size, concurrency, set-up), smaller prompts first."""
    keys = sorted(dict.fromkeys((r.prompt_bytes, r.concurrency, r.setup) for r in runs),
                  key=lambda k: (k[0], k[1], k[2]))
    out = []
    for size, concurrency, setup in keys:
        mine = [r.result for r in runs if (r.prompt_bytes, r.concurrency, r.setup) == (size, concurrency, setup)]
        out.append(GuardCell(size, setup, labels[setup], concurrency,
                             statistics.median(r.p50_ms for r in mine),
                             statistics.median(r.p99_ms for r in mine),
                             statistics.median(r.requests_per_s for r in mine)))
    return out


def guard_summary(table: list[GuardCell], inprocess_ms: dict[int, float]) -> list[dict[str, Any]]:
    """Per prompt size and concurrency: what the default policy (c) adds over guardrails off (d), next to what
    parsing and inspecting the request costs in-process (``inprocess_ms``, by prompt size)."""
    out = []
    for size, concurrency in dict.fromkeys((c.prompt_bytes, c.concurrency) for c in table):
        by = {c.setup: c for c in table if (c.prompt_bytes, c.concurrency) == (size, concurrency)}
        c, d = by["c"], by["d"]
        out.append({
            "prompt_bytes": size,
            "concurrency": concurrency,
            "guardrails_added_p50_ms": c.p50_ms - d.p50_ms,
            "guardrails_added_p99_ms": c.p99_ms - d.p99_ms,
            "guarded_over_unguarded_latency_p50": c.p50_ms / d.p50_ms,
            "guarded_over_unguarded_throughput": c.requests_per_s / d.requests_per_s,
            "inprocess_request_ms": inprocess_ms.get(size),
        })
    return out


def _kib(size: int) -> str:
    return f"{size / 1024:g} KiB"


def guard_markdown(table: list[GuardCell], overheads: list[dict[str, Any]]) -> str:
    lines = ["### Guardrails: added latency of the default policy (wrk)", "",
             "Non-streaming `/v1/messages` with a short answer, through the gateway as shipped, its default "
             "guardrail policy on (c), and through the same gateway with guardrails off (d: "
             "`guardrail_policies.default.detectors: {}`); prompts of plain prose with nothing to find; "
             "each cell is the median over rounds.", "",
             "| prompt | set-up | concurrency | p50 ms | p99 ms | requests/s |",
             "| ---: | --- | ---: | ---: | ---: | ---: |"]
    labels = {"c": "(c) gateway, default policy"}
    lines += [f"| {_kib(c.prompt_bytes)} | {labels.get(c.setup, c.label)} | {c.concurrency} | {c.p50_ms:.2f} "
              f"| {c.p99_ms:.2f} | {c.requests_per_s:.0f} |" for c in table]
    lines += ["", "What the default guardrail policy adds: (c) − (d), (c) against (d), and, for scale, what parsing "
              "and inspecting that request body with the default policy takes in the benchmark's own process.", "",
              "| prompt | concurrency | (c)−(d) p50 ms | (c)−(d) p99 ms | (c)/(d) p50 latency "
              "| (c)/(d) throughput | in-process ms |",
              "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]

    def ms(value: float | None) -> str:
        return "–" if value is None else f"{value:.2f}"

    lines += [f"| {_kib(s['prompt_bytes'])} | {s['concurrency']} | {_signed(s['guardrails_added_p50_ms'])} "
              f"| {_signed(s['guardrails_added_p99_ms'])} | {s['guarded_over_unguarded_latency_p50']:.2f} "
              f"| {s['guarded_over_unguarded_throughput']:.2f} | {ms(s['inprocess_request_ms'])} |"
              for s in overheads]
    return "\n".join(lines)
