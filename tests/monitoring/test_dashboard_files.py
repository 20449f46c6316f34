"""The dashboards and Grafana provisioning as files: generated, consistent, and true to the metric contract.

That every query runs and the core panels show data is checked against a real
VictoriaMetrics after real traffic, in test_dashboards.py.
"""

from __future__ import annotations

import re

import pytest
import yaml

from tests.monitoring.support import (
    DASHBOARDS,
    DATASOURCE_UID,
    GRAFANA,
    builder,
    contract_problems,
    dashboards,
    families,
    panels,
    readme_section,
    selectors,
)

UIDS = ("gateway-overview", "gateway-consumer")
UNFILTERED = {
    ("gateway-overview", "Throttled share by model"): "Bedrock's quotas are per account, and the upstream error "
    "counter has no consumer label: the share is of all consumers' requests",
}
"""Panels that deliberately ignore a variable their metric could be filtered by, and why."""


def test_committed_json_is_what_the_generator_builds() -> None:
    build = builder()
    for name, make in build.DASHBOARDS.items():
        assert (DASHBOARDS / name).read_text() == build.render(make), (
            f"grafana/dashboards/{name} is stale: run .venv/bin/python grafana/build_dashboards.py")
    assert sorted(p.name for p in DASHBOARDS.glob("*.json")) == sorted(build.DASHBOARDS)
    assert build.main(["--check"]) == 0


def test_provisioning_matches_the_agreed_paths() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "victoriametrics.yaml").read_text())
    (source,) = datasources["datasources"]
    assert (source["uid"], source["type"]) == (DATASOURCE_UID, "prometheus")
    assert source["url"] == "http://victoria-metrics:8428"
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "gateway.yaml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_both_dashboards_exist_with_their_variables() -> None:
    found = dashboards()
    assert sorted(found) == sorted(UIDS)
    for uid in UIDS:
        variables = {v["name"]: v for v in found[uid]["templating"]["list"]}
        assert list(variables) == ["consumer", "model"], uid
        for variable in variables.values():
            assert variable["datasource"]["uid"] == DATASOURCE_UID
            assert variable["query"].startswith("label_values(gateway_requests_total")
    assert found["gateway-overview"]["templating"]["list"][0]["includeAll"] is True
    assert found["gateway-consumer"]["templating"]["list"][0]["multi"] is False, "the drill-down is one consumer"
    assert "$consumer" in found["gateway-consumer"]["templating"]["list"][1]["query"], "models follow the consumer"


@pytest.mark.parametrize("uid", UIDS)
def test_layout_ids_and_datasource(uid: str) -> None:
    dashboard = dashboards()[uid]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    titles = [p["title"] for p in panels(dashboard)]
    assert len(titles) == len(set(titles)), "panel titles must be unique (README and tests name panels by title)"
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        cover = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                 for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not cells & cover, f"{panel['title']} overlaps another panel"
        cells |= cover
    for panel in panels(dashboard):
        assert panel["description"], f"{panel['title']}: every panel says what it answers"
        assert panel["datasource"]["uid"] == DATASOURCE_UID
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE_UID
            assert target["expr"].strip()
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs))


@pytest.mark.parametrize("uid", UIDS)
def test_queries_follow_the_metric_contract(uid: str) -> None:
    """Names and labels exist in extproc/metrics.py, and every query filters by the variables it can."""
    known = families()
    problems: list[str] = []
    for panel in panels(dashboards()[uid]):
        for target in panel["targets"]:
            expr, where = target["expr"], f"{uid} / {panel['title']}"
            problems += contract_problems(expr, where)
            for name, matchers in selectors(expr):
                family = known.get(name)
                if family is None:
                    continue
                for label in ("consumer", "model"):
                    if (uid, panel["title"]) in UNFILTERED and label == "consumer":
                        continue
                    if label in family.labels and matchers.get(label) != f"=~${label}":
                        problems.append(f'{where}: {name} is not filtered by {label}=~"${label}"')
            variables = set(re.findall(r"\$\{?(\w+)", expr))
            assert variables <= {"consumer", "model", "__rate_interval", "__range"}, where
    assert not problems, "\n".join(problems)


def test_readme_describes_every_panel() -> None:
    section = readme_section("Monitoring")
    missing = [f"{d['title']}: {p['title']}" for d in dashboards().values() for p in panels(d)
               if p["title"] not in section]
    assert not missing, "README Monitoring does not describe:\n" + "\n".join(missing)
