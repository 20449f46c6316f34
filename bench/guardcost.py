"""What a guardrail policy costs per KB of request, in this process: no servers, no network.

:meth:`Guard.inspect` (``request=True``, what the gateway calls on every
request body) is timed on the three bodies of :mod:`bench.guardtext`, for the
default policy (built in, on for every consumer), a policy with every
detector on (injection and deny included, with the corpus's deny lists), and
each detector alone. A detector alone still computes what it depends on
(``phone``: card, IBAN and e-mail, so their digits are never phone numbers;
``card_security``: card), as it does in the gateway.

Each timed call gets a freshly parsed body (``inspect`` redacts in place, so
a body is used once); the parse is timed too, because the gateway parses a
body once more for its guardrails whenever its policy has detectors. The
fixed cost of a call is measured on a one-line message, many calls in a row.
Repetitions are interleaved (every policy and body in turn, then again), and
each figure is the median over them: the machine is shared, so one disturbed
repetition moves nothing.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from extproc import jsonwire
from extproc.config import GuardrailPolicy, _default_guardrail_policies
from extproc.guardrails.detectors import DETECTORS
from extproc.guardrails.enforce import Guard

from .guardtext import (DENY_KEYWORDS, DENY_PATTERNS, agent_body, body_bytes, dense_body, prose_body, small_body,
                        strings_in)

INPUTS: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {
    "prose": ("support prose, nothing to find", prose_body),
    "corpus": ("labelled corpus, dense", dense_body),
    "agent": ("coding-agent request (Claude Code-sized)", agent_body),
}
DEFAULT = "default"
EVERYTHING = "every detector"
FIXED_CALLS = 200
"""Calls in a row on the one-line message, per policy and repetition."""


def policies() -> dict[str, GuardrailPolicy]:
    """The default policy, every detector on, then each detector alone (its action as in the default policy,
    else ``redact``; ``block`` costs what ``redact`` does, since ``inspect`` redacts blocked spans too)."""
    default = _default_guardrail_policies()["default"]
    actions = {name: default.detectors.get(name, "redact") for name in DETECTORS}
    deny = {"deny_keywords": DENY_KEYWORDS, "deny_patterns": DENY_PATTERNS}
    out = {DEFAULT: default, EVERYTHING: GuardrailPolicy(detectors=actions, **deny)}
    for name in DETECTORS:
        out[name] = GuardrailPolicy(detectors={name: actions[name]}, **(deny if name == "deny" else {}))
    return out


def _timed_inspect(guard: Guard, raw: bytes) -> tuple[float, float]:
    """Seconds to parse ``raw`` and seconds for ``guard`` to inspect the result."""
    start = time.perf_counter()
    body = jsonwire.load_object(raw)
    parsed = time.perf_counter()
    guard.inspect(body, request=True)
    return parsed - start, time.perf_counter() - parsed


def _timed_fixed(guard: Guard, raw: bytes) -> float:
    body = jsonwire.load_object(raw)  # nothing to find: inspect leaves it unchanged, so it can be reused
    start = time.perf_counter()
    for _ in range(FIXED_CALLS):
        guard.inspect(body, request=True)
    return time.perf_counter() - start


def request_ms(raw: bytes, calls: int = 21) -> float:
    """Median milliseconds the default policy takes on the request body ``raw`` in this process (parse and
    inspect, as the gateway does): what the guardrail-latency part's (c) − (d) should come to."""
    guard = Guard(DEFAULT, policies()[DEFAULT])
    return statistics.median(sum(_timed_inspect(guard, raw)) for _ in range(calls)) * 1e3


def measure(repeats: int, progress: Callable[[str], None]) -> dict[str, Any]:
    """Every policy on every body, ``repeats`` times interleaved; raw seconds for :func:`cells`."""
    raws = {key: body_bytes(make()) for key, (_, make) in INPUTS.items()}
    small = body_bytes(small_body())
    guards = {name: Guard(name, policy) for name, policy in policies().items()}
    # One untimed call each (warm-up) that also counts the findings.
    findings = {name: {key: len(guard.inspect(jsonwire.load_object(raw), request=True).actions)
                       for key, raw in raws.items()} for name, guard in guards.items()}
    for name, key in ((EVERYTHING, "prose"), (DEFAULT, "agent")):
        if findings[name][key]:
            raise SystemExit(f"bench: the {INPUTS[key][0]} body should give the {name} policy nothing to find, but it "
                             f"finds {findings[name][key]}: fix bench/guardtext.py")
    runs: list[dict[str, Any]] = []
    fixed: list[dict[str, Any]] = []
    for repeat in range(1, repeats + 1):
        for name, guard in guards.items():
            for key, raw in raws.items():
                parse_s, inspect_s = _timed_inspect(guard, raw)
                runs.append({"policy": name, "input": key, "repeat": repeat, "inspect_s": inspect_s,
                             "parse_s": parse_s})
            fixed.append({"policy": name, "repeat": repeat, "calls": FIXED_CALLS,
                          "seconds": _timed_fixed(guard, small)})
        progress(f"guardrail cost: repetition {repeat}/{repeats} done")
    return {
        "repeats": repeats,
        "inputs": {key: {"label": INPUTS[key][0], "bytes": len(raw), "strings": strings_in(jsonwire.load(raw))}
                   for key, raw in raws.items()},
        "fixed_body_bytes": len(small),
        "findings": findings,
        "runs": runs,
        "fixed": fixed,
    }


@dataclass(frozen=True)
class CostCell:
    policy: str
    us_per_kb: dict[str, float]
    """Per input: median inspect time over repetitions, µs per 1,000 bytes of body."""
    ms_per_body: dict[str, float]
    fixed_us: float | None
    findings: dict[str, int]


def _median_by(rows: list[dict[str, Any]], field: str) -> float:
    return statistics.median(r[field] for r in rows)


def cells(results: dict[str, Any]) -> list[CostCell]:
    """One row per policy (in the order measured), then the parse as the last row (policy ``parse``)."""
    inputs = results["inputs"]
    kb = {key: spec["bytes"] / 1000 for key, spec in inputs.items()}
    out = []
    for name in dict.fromkeys(r["policy"] for r in results["runs"]):
        mine = [r for r in results["runs"] if r["policy"] == name]
        seconds = {key: _median_by([r for r in mine if r["input"] == key], "inspect_s") for key in inputs}
        fixed = [f["seconds"] / f["calls"] for f in results["fixed"] if f["policy"] == name]
        out.append(CostCell(name, {k: s * 1e6 / kb[k] for k, s in seconds.items()},
                            {k: s * 1e3 for k, s in seconds.items()},
                            statistics.median(fixed) * 1e6 if fixed else None, results["findings"][name]))
    parse = {key: _median_by([r for r in results["runs"] if r["input"] == key], "parse_s") for key in inputs}
    out.append(CostCell("parse", {k: s * 1e6 / kb[k] for k, s in parse.items()},
                        {k: s * 1e3 for k, s in parse.items()}, None, {}))
    return out


def summary(table: list[CostCell]) -> dict[str, Any]:
    by = {c.policy: c for c in table}
    return {"default_us_per_kb": by[DEFAULT].us_per_kb, "every_detector_us_per_kb": by[EVERYTHING].us_per_kb,
            "default_fixed_us": by[DEFAULT].fixed_us, "every_detector_fixed_us": by[EVERYTHING].fixed_us,
            "default_ms_per_agent_request": by[DEFAULT].ms_per_body["agent"],
            "every_detector_ms_per_agent_request": by[EVERYTHING].ms_per_body["agent"],
            "parse_us_per_kb": by["parse"].us_per_kb}


def _us(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def markdown(table: list[CostCell], results: dict[str, Any]) -> str:
    inputs = results["inputs"]
    prose, corpus, agent = inputs["prose"], inputs["corpus"], inputs["agent"]
    lines = ["### Guardrails: cost per KB (in-process)", "",
             f"`Guard.inspect` on a request body in this process (no servers), µs per KB (1,000 bytes of JSON) of "
             f"{prose['bytes'] / 1000:.1f} KB of support prose with nothing to find, "
             f"{corpus['bytes'] / 1000:.1f} KB of the labelled corpus (a finding on most lines), and a "
             f"{agent['bytes'] / 1000:.1f} KB coding-agent request (system prompt, tool schemas, a user turn: "
             f"{agent['strings']} strings); fixed cost: one call on a one-line message; median of "
             f"{results['repeats']} interleaved repetitions; a detector alone also runs those it depends on "
             "(phone: card, IBAN, e-mail; card_security: card).", "",
             "| policy | prose µs/KB | corpus µs/KB | corpus findings | agent request µs/KB | agent request ms "
             "| fixed µs/call |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for c in table:
        name = {DEFAULT: "default (built in)", EVERYTHING: "every detector", "parse": "body parse, paid once more "
                "when a policy has detectors"}.get(c.policy, f"`{c.policy}` alone")
        fixed = "–" if c.fixed_us is None else f"{c.fixed_us:.1f}"
        found = str(c.findings["corpus"]) if c.findings else "–"
        lines.append(f"| {name} | {_us(c.us_per_kb['prose'])} | {_us(c.us_per_kb['corpus'])} | {found} "
                     f"| {_us(c.us_per_kb['agent'])} | {c.ms_per_body['agent']:.2f} | {fixed} |")
    return "\n".join(lines)
