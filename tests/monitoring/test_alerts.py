"""The alert rules: promtool checks and unit-tests them, vmalert loads them, each is tested both ways.

Every expression is also run against a real VictoriaMetrics after real
traffic, in test_dashboards.py.
"""

from __future__ import annotations

import subprocess

import yaml

from devstack import ROOT
from tests.monitoring.support import RULE_TESTS, RULES, contract_problems, readme_section, rules, tool

# What the issue asks the alerts to cover, each by at least one of these alerts.
REQUIRED = {
    "error rate": {"GatewayHighErrorRate"},
    "latency": {"GatewaySlowFirstToken", "GatewayExtprocSlow"},
    "extproc down / Envoy upstream unhealthy": {"GatewayExtprocDown", "GatewayExtprocUnhealthyInEnvoy"},
    "throttling from Bedrock": {"GatewayBedrockThrottling"},
    "a consumer near its budget": {"GatewayConsumerNearBudget"},
    "guardrail block spikes": {"GatewayGuardrailBlockSpike"},
}


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def test_promtool_check_rules() -> None:
    result = run([tool("promtool"), "check", "rules", str(RULES)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = run([tool("promtool"), "test", "rules", str(RULE_TESTS)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_vmalert_loads_the_rules() -> None:
    """vmalert parses every expression with MetricsQL and every annotation template (exit 255 otherwise)."""
    result = run([tool("vmalert"), f"-rule={RULES}", "-dryRun", "-loggerLevel=ERROR"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_and_stays_quiet_in_a_unit_test() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in rules()}
    assert names - fired == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown quiet"
    assert fired | quiet <= names, "tests of alerts that do not exist"


def test_rules_are_complete_and_use_the_metric_contract() -> None:
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names))
    for what, alerts in REQUIRED.items():
        assert alerts <= set(names), f"no alert for {what}"
    problems: list[str] = []
    for rule in rules():
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
        problems += contract_problems(rule["expr"], rule["alert"])
    assert not problems, "\n".join(problems)


def test_rules_use_the_scrape_jobs() -> None:
    """``up{job=...}`` in the rules names the jobs of config/scrape.yaml."""
    jobs = {job["job_name"] for job in yaml.safe_load((ROOT / "config" / "scrape.yaml").read_text())["scrape_configs"]}
    assert {"extproc", "envoy"} <= jobs
    text = RULES.read_text()
    assert 'up{job="extproc"}' in text and 'up{job="envoy"}' in text


def test_readme_describes_every_alert() -> None:
    section = readme_section("Monitoring")
    missing = [rule["alert"] for rule in rules() if rule["alert"] not in section]
    assert not missing, f"README Monitoring does not describe {missing}"
