"""From raw runs to the numbers we judge the gateway by: medians, overheads, ratios.

Each cell (set-up × concurrency) is the median over rounds of p50, p99 and
requests/s taken separately: with three interleaved rounds on a noisy shared
machine, one disturbed run then moves nothing. Overheads are differences of
those medians against (a); the headline is (c − a) / (b − a) of p50, the
gateway's added latency in units of what a do-nothing ext_proc adds.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from .wrk import WrkResult

TARGET = 1.3


@dataclass(frozen=True)
class Run:
    setup: str
    concurrency: int
    round: int
    result: WrkResult


@dataclass(frozen=True)
class Cell:
    setup: str
    label: str
    concurrency: int
    p50_ms: float
    p99_ms: float
    requests_per_s: float


def cells(runs: list[Run], labels: dict[str, str]) -> list[Cell]:
    """Median per (set-up, concurrency), in the order set-ups and concurrencies were first run."""
    keys = list(dict.fromkeys((r.concurrency, r.setup) for r in runs))
    out = []
    for concurrency, setup in keys:
        mine = [r.result for r in runs if (r.concurrency, r.setup) == (concurrency, setup)]
        out.append(Cell(setup, labels[setup], concurrency,
                        statistics.median(r.p50_ms for r in mine),
                        statistics.median(r.p99_ms for r in mine),
                        statistics.median(r.requests_per_s for r in mine)))
    return out


def summary(table: list[Cell]) -> list[dict[str, Any]]:
    """Per concurrency: what (b) and (c) add over (a), and (c) against (b)."""
    out = []
    for concurrency in dict.fromkeys(c.concurrency for c in table):
        by = {c.setup: c for c in table if c.concurrency == concurrency}
        a, b, c = by["a"], by["b"], by["c"]
        noop_added = b.p50_ms - a.p50_ms
        gateway_added = c.p50_ms - a.p50_ms
        out.append({
            "concurrency": concurrency,
            "noop_added_p50_ms": noop_added,
            "gateway_added_p50_ms": gateway_added,
            "noop_added_p99_ms": b.p99_ms - a.p99_ms,
            "gateway_added_p99_ms": c.p99_ms - a.p99_ms,
            "gateway_over_noop_latency_p50": c.p50_ms / b.p50_ms,
            "gateway_over_noop_throughput": c.requests_per_s / b.requests_per_s,
            # Undefined when the no-op adds nothing measurable: the ratio would be noise or infinite.
            "added_latency_ratio": gateway_added / noop_added if noop_added > 0 else None,
            "target": TARGET,
        })
    return out


def _signed(ms: float) -> str:
    return f"{ms:+.2f}"


def markdown(table: list[Cell], overheads: list[dict[str, Any]]) -> str:
    lines = ["| set-up | concurrency | p50 ms | p99 ms | requests/s |", "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {c.label} | {c.concurrency} | {c.p50_ms:.2f} | {c.p99_ms:.2f} | {c.requests_per_s:.0f} |"
              for c in table]
    lines += ["", "| concurrency | (b)−(a) p50 ms | (c)−(a) p50 ms | (b)−(a) p99 ms | (c)−(a) p99 ms "
              "| (c)/(b) p50 latency | (c)/(b) throughput |",
              "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {s['concurrency']} | {_signed(s['noop_added_p50_ms'])} | {_signed(s['gateway_added_p50_ms'])} "
              f"| {_signed(s['noop_added_p99_ms'])} | {_signed(s['gateway_added_p99_ms'])} "
              f"| {s['gateway_over_noop_latency_p50']:.2f} | {s['gateway_over_noop_throughput']:.2f} |"
              for s in overheads]
    lines.append("")
    for s in overheads:
        ratio = s["added_latency_ratio"]
        value = f"{ratio:.2f}" if ratio is not None else "n/a (the no-op added ≤ 0 ms: below the noise)"
        verdict = "" if ratio is None else (" ok" if ratio <= TARGET else " MISSED")
        lines.append(f"concurrency {s['concurrency']}: gateway added latency / no-op ext_proc added latency = "
                     f"{value} (target ≤ {TARGET}){verdict}")
    return "\n".join(lines)
