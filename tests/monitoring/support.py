"""What the monitoring tests share: the dashboards, the alert rules, the metric contract, the tools."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from devstack import ROOT
from extproc import metrics

GRAFANA = ROOT / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
RULES = GRAFANA / "alerts" / "gateway-rules.yaml"
RULE_TESTS = GRAFANA / "alerts" / "gateway-rules.test.yaml"
DATASOURCE_UID = "victoriametrics"

# Debian packages the checks need; .ci/run installs them.
TOOLS = {"promtool": "prometheus", "vmalert": "victoria-metrics", "victoria-metrics": "victoria-metrics"}


def tool(name: str) -> str:
    """A system binary the monitoring checks need: missing is a failure, not a skip."""
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found: install the Debian package {TOOLS[name]} (.ci/run does)")
    return found


def builder() -> ModuleType:
    """``grafana/build_dashboards.py`` (a script, not a package)."""
    spec = importlib.util.spec_from_file_location("build_dashboards", GRAFANA / "build_dashboards.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def dashboards() -> dict[str, dict[str, Any]]:
    """The committed dashboards by uid."""
    loaded = [json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))]
    return {d["uid"]: d for d in loaded}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel with queries (rows excluded, panels inside collapsed rows included)."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def readme_section(title: str) -> str:
    """The text of one ``## `` section of README.md."""
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f'README.md has no "## {title}" section'
    return match.group(1)


@dataclass(frozen=True)
class Family:
    """One metric of extproc/metrics.py as the exposition names it."""

    name: str
    kind: str
    labels: frozenset[str]


def families() -> dict[str, Family]:
    """Every exposed series name (``_total``, ``_bucket``, …) of extproc/metrics.py → its family."""
    found: dict[str, Family] = {}
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        name, kind, labels = value._name, value._type, frozenset(value._labelnames)
        if kind == "counter":
            found[f"{name}_total"] = Family(name, kind, labels)
        elif kind == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                found[name + suffix] = Family(name, kind, labels | {"le"} if suffix == "_bucket" else labels)
        else:
            found[name] = Family(name, kind, labels)
    return found


SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
GATEWAY_NAME = re.compile(r"\bgateway_[a-z0-9_]+")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def selectors(expr: str) -> list[tuple[str, dict[str, str]]]:
    """``metric{label="value",...}`` occurrences: (metric, {label: operator+value})."""
    return [(name, {label: op + value for label, op, value in MATCHER.findall(body)})
            for name, body in SELECTOR.findall(expr)]


def contract_problems(expr: str, where: str) -> list[str]:
    """Names and labels in ``expr`` that extproc/metrics.py does not have (Envoy's and ``up`` are checked live)."""
    known = families()
    problems = []
    names = set(GATEWAY_NAME.findall(expr))
    for name in sorted(names - set(known)):
        problems.append(f"{where}: {name} is not a metric of extproc/metrics.py")
    for name, matchers in selectors(expr):
        if name in known:
            for label in sorted(set(matchers) - known[name].labels - {"job", "instance"}):
                problems.append(f"{where}: {name} has no label {label!r}")
    if names and names <= set(known) and not re.search(r"\b(envoy_|up\b)", expr):
        available = set().union(*(known[n].labels for n in names)) | {"job", "instance"}
        for group in GROUPING.findall(expr):
            for label in (part.strip() for part in group.split(",") if part.strip()):
                if label not in available:
                    problems.append(f"{where}: grouping by {label!r}, which none of {sorted(names)} has")
    return problems
