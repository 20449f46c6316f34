"""Build the gateway's Grafana dashboards (``grafana/dashboards/*.json``) from this one module.

The JSON files are committed, since Grafana provisions them from disk, and a
test checks that they equal what this module generates, so edit here and run::

    .venv/bin/python grafana/build_dashboards.py          # write the JSON files
    .venv/bin/python grafana/build_dashboards.py --check  # exit 1 if they are stale

Every query reads the datasource ``victoriametrics`` (provisioned in
``grafana/provisioning/datasources/``) and filters by the variables
``$consumer`` and ``$model`` wherever the metric has those labels. Metric
names and labels are those of ``extproc/metrics.py`` (Prometheus counters
carry ``_total``, histograms ``_bucket/_sum/_count``) and Envoy's
``/stats/prometheus`` (counters without ``_total``, times in milliseconds).
README "Monitoring" says what each panel answers; keep it in step.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "victoriametrics"}
TAGS = ["bedrock-gateway"]

OVERVIEW_UID = "gateway-overview"
CONSUMER_UID = "gateway-consumer"

# Selectors shared by the queries, so every panel filters the same way.
CM = 'consumer=~"$consumer",model=~"$model"'
M = 'model=~"$model"'
C = 'consumer=~"$consumer"'
CM_5XX = CM + ',status_class="5xx"'
CM_4XX = CM + ',status_class="4xx"'
M_THROTTLED = M + ',error_type="ThrottlingException"'
RI = "$__rate_interval"
EXTPROC_CLUSTER = 'envoy_cluster_name="extproc"'
BEDROCK_CLUSTERS = 'envoy_cluster_name=~"bedrock_.*"'
LISTENER = 'envoy_http_conn_manager_prefix="gateway"'


def rate(metric: str, selector: str = "", by: str = "", window: str = RI) -> str:
    """``sum [by (...)] (rate(metric{selector}[window]))``."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric}{{{selector}}}[{window}]))"


def ratio(numerator: str, denominator: str) -> str:
    """``numerator / denominator`` that is 0, not empty, where the numerator has no series (no errors yet)."""
    return f"({numerator} or {denominator} * 0) / {denominator}"


def quantile(q: float, histogram: str, selector: str = "", by: str = "") -> str:
    """A quantile of a histogram over the rate interval, optionally per label."""
    grouping = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({grouping}) (rate({histogram}_bucket{{{selector}}}[{RI}])))"


@dataclass
class Target:
    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False

    def model(self, ref_id: str) -> dict[str, Any]:
        target: dict[str, Any] = {
            "datasource": DATASOURCE, "refId": ref_id, "editorMode": "code", "expr": self.expr,
            "legendFormat": self.legend or "__auto", "range": not self.instant, "instant": self.instant,
        }
        if self.table:
            target["format"] = "table"
        return target


@dataclass
class Panel:
    kind: str
    """Grafana panel type: timeseries, stat, gauge, table."""
    title: str
    description: str
    targets: list[Target]
    unit: str = "short"
    width: int = 12
    height: int = 8
    thresholds: list[tuple[float | None, str]] = field(default_factory=lambda: [(None, "green")])
    extra: dict[str, Any] = field(default_factory=dict)
    """Merged last into the panel model (options, overrides, transformations)."""


@dataclass
class Row:
    title: str


def ts(title: str, description: str, *targets: Target, unit: str = "short", width: int = 12,
       stacked: bool = False, **extra: Any) -> Panel:
    panel = Panel("timeseries", title, description, list(targets), unit=unit, width=width, extra=extra)
    panel.extra.setdefault("_stacked", stacked)
    return panel


def stat(title: str, description: str, target: Target, unit: str,
         thresholds: list[tuple[float | None, str]] | None = None, width: int = 4) -> Panel:
    return Panel("stat", title, description, [target], unit=unit, width=width, height=4,
                 thresholds=thresholds or [(None, "green")])


def percentiles(histogram: str, selector: str) -> list[Target]:
    return [Target(quantile(q, histogram, selector), f"p{round(q * 100)}") for q in (0.5, 0.9, 0.99)]


def _thresholds(steps: list[tuple[float | None, str]]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for value, color in steps]}


def panel_model(panel: Panel, panel_id: int, grid: dict[str, int]) -> dict[str, Any]:
    refs = [chr(ord("A") + i) for i in range(len(panel.targets))]
    defaults: dict[str, Any] = {"unit": panel.unit, "thresholds": _thresholds(panel.thresholds)}
    model: dict[str, Any] = {
        "id": panel_id, "type": panel.kind, "title": panel.title, "description": panel.description,
        "datasource": DATASOURCE, "gridPos": grid,
        "targets": [t.model(ref) for t, ref in zip(panel.targets, refs, strict=True)],
    }
    extra = dict(panel.extra)
    if panel.kind == "timeseries":
        stacked = extra.pop("_stacked", False)
        defaults["color"] = {"mode": "palette-classic"}
        defaults["custom"] = {
            "drawStyle": "line", "lineWidth": 1, "fillOpacity": 20 if stacked else 5, "showPoints": "never",
            "spanNulls": False, "stacking": {"mode": "normal" if stacked else "none", "group": "A"},
        }
        model["options"] = {
            "legend": {"showLegend": True, "displayMode": "list", "placement": "bottom", "calcs": []},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    elif panel.kind in ("stat", "gauge"):
        defaults["color"] = {"mode": "thresholds"}
        model["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "orientation": "auto",
        }
        if panel.kind == "stat":
            model["options"].update(colorMode="value", graphMode="area", justifyMode="auto", textMode="auto")
        else:
            defaults.update(min=0, max=1)
            model["options"].update(showThresholdLabels=False, showThresholdMarkers=True)
    elif panel.kind == "table":
        model["options"] = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    model["fieldConfig"] = {"defaults": defaults, "overrides": extra.pop("overrides", [])}
    model.update(extra)
    return model


def variable_consumer(multi: bool) -> dict[str, Any]:
    query = "label_values(gateway_requests_total, consumer)"
    return {
        "name": "consumer", "label": "Consumer", "type": "query", "datasource": DATASOURCE,
        "query": query, "definition": query, "refresh": 2, "sort": 1, "regex": "",
        "multi": multi, "includeAll": multi, **({"allValue": ".*"} if multi else {}),
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]} if multi else {},
        "options": [], "hide": 0,
    }


def variable_model() -> dict[str, Any]:
    query = 'label_values(gateway_requests_total{consumer=~"$consumer"}, model)'
    return {
        "name": "model", "label": "Model", "type": "query", "datasource": DATASOURCE,
        "query": query, "definition": query, "refresh": 2, "sort": 1, "regex": "",
        "multi": True, "includeAll": True, "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "options": [], "hide": 0,
    }


def dashboard(uid: str, title: str, description: str, items: list[Panel | Row], variables: list[dict[str, Any]],
              links: list[dict[str, Any]]) -> dict[str, Any]:
    """Lay panels out left to right in rows of 24 columns, each Row starting a new line."""
    panels: list[dict[str, Any]] = []
    x = y = line_height = 0
    next_id = 1
    for item in items:
        if isinstance(item, Row):
            y += line_height
            x = line_height = 0
            panels.append({"id": next_id, "type": "row", "title": item.title, "collapsed": False, "panels": [],
                           "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})
            y += 1
        else:
            if x + item.width > 24:
                y += line_height
                x = line_height = 0
            panels.append(panel_model(item, next_id, {"h": item.height, "w": item.width, "x": x, "y": y}))
            x += item.width
            line_height = max(line_height, item.height)
        next_id += 1
    return {
        "uid": uid, "title": title, "description": description, "tags": TAGS, "editable": True,
        "graphTooltip": 1, "timezone": "browser", "schemaVersion": 39, "version": 1, "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"}, "timepicker": {}, "fiscalYearStartMonth": 0, "liveNow": False,
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard",
        }]},
        "templating": {"list": variables},
        "links": links,
        "panels": panels,
    }


def _link(title: str, uid: str) -> dict[str, Any]:
    return {"title": title, "type": "link", "url": f"/d/{uid}", "icon": "dashboard", "includeVars": True,
            "keepTime": True, "asDropdown": False, "targetBlank": False, "tags": [], "tooltip": ""}


def _usage_table(title: str, description: str, by: str, selector: str, link_consumer: bool) -> Panel:
    """Requests, tokens by type and cost over the dashboard's time range, one row per ``by`` group."""
    columns = [
        ("requests", Target(f"sum by ({by}) (increase(gateway_requests_total{{{selector}}}[$__range]))",
                            instant=True, table=True), "short"),
        *[(f"{kind} tokens", Target(
            f'sum by ({by}) (increase(gateway_tokens_total{{{selector},type="{kind}"}}[$__range]))',
            instant=True, table=True), "short") for kind in ("input", "output", "cache_read", "cache_write")],
        ("cost (USD)", Target(f"sum by ({by}) (increase(gateway_cost_usd_total{{{selector}}}[$__range]))",
                              instant=True, table=True), "currencyUSD"),
    ]
    refs = [chr(ord("A") + i) for i in range(len(columns))]
    overrides: list[dict[str, Any]] = [
        {"matcher": {"id": "byName", "options": name},
         "properties": [{"id": "unit", "value": unit}, {"id": "decimals", "value": 4 if unit == "currencyUSD" else 0}]}
        for name, _, unit in columns
    ]
    if link_consumer:
        overrides.append({"matcher": {"id": "byName", "options": "consumer"}, "properties": [{"id": "links", "value": [{
            "title": "Consumer drill-down",
            "url": f"/d/{CONSUMER_UID}?var-consumer=${{__value.raw}}&${{__url_time_range}}",
        }]}]})
    return Panel(
        "table", title, description, [t for _, t, _ in columns], width=24, height=9,
        extra={
            "overrides": overrides,
            "transformations": [
                {"id": "merge", "options": {}},
                {"id": "organize", "options": {
                    "excludeByName": {"Time": True},
                    "renameByName": {f"Value #{ref}": name for ref, (name, _, _) in zip(refs, columns, strict=True)},
                }},
                {"id": "sortBy", "options": {"sort": [{"field": "cost (USD)", "desc": True}]}},
            ],
        },
    )


def overview() -> dict[str, Any]:
    requests = rate("gateway_requests_total", CM)
    items: list[Panel | Row] = [
        Row("Traffic and errors"),
        stat("Requests per second", "Finished requests per second, all routes (extproc count).",
             Target(requests), "reqps"),
        stat("Error ratio (5xx)", "Share of requests answered 5xx (gateway or Bedrock server errors).",
             Target(ratio(rate("gateway_requests_total", CM_5XX), requests)),
             "percentunit", [(None, "green"), (0.01, "orange"), (0.05, "red")]),
        stat("p95 request duration", "95th percentile from request headers to the end of the answer.",
             Target(quantile(0.95, "gateway_request_duration_seconds", CM)), "s",
             [(None, "green"), (10, "orange"), (30, "red")]),
        stat("Cost in time range", "USD at catalogue prices over the dashboard's time range.",
             Target(f"sum(increase(gateway_cost_usd_total{{{CM}}}[$__range]))"), "currencyUSD"),
        stat("Requests in flight", "Requests whose ext_proc stream is open right now.",
             Target("sum(gateway_in_flight_requests)"), "short"),
        stat("Extproc healthy (Envoy view)",
             "Share of extproc hosts Envoy's gRPC health check sees as healthy; below 100% the gateway fails closed.",
             Target(f"sum(envoy_cluster_membership_healthy{{{EXTPROC_CLUSTER}}}) / "
                    f"sum(envoy_cluster_membership_total{{{EXTPROC_CLUSTER}}})"),
             "percentunit", [(None, "red"), (1, "green")]),
        ts("Requests by status class", "Requests per second, split by status class (2xx, 4xx, 5xx).",
           Target(rate("gateway_requests_total", CM, "status_class"), "{{status_class}}"), unit="reqps", stacked=True),
        ts("Requests by route", "Requests per second per client-facing route (OpenAI, Anthropic, Bedrock-native).",
           Target(rate("gateway_requests_total", CM, "route"), "{{route}}"), unit="reqps", stacked=True),
        ts("Error ratio by route", "Share of each route's requests answered 5xx and 4xx.",
           Target(ratio(rate("gateway_requests_total", CM_5XX, "route"), rate("gateway_requests_total", CM, "route")),
                  "5xx {{route}}"),
           Target(ratio(rate("gateway_requests_total", CM_4XX, "route"), rate("gateway_requests_total", CM, "route")),
                  "4xx {{route}}"),
           unit="percentunit"),
        ts("Errors by consumer", "4xx and 5xx answers per second per consumer (empty consumer: unauthenticated).",
           Target(rate("gateway_requests_total", CM + ',status_class=~"4xx|5xx"', "consumer, status_class"),
                  "{{consumer}} {{status_class}}"), unit="reqps"),
        ts("Authentication failures", "Requests refused 401 per second, by route and reason (missing or invalid key).",
           Target(rate("gateway_auth_failures_total", "", "route, reason"), "{{route}} {{reason}}"), unit="reqps"),
        ts("Upstream errors by type", "Error answers from Bedrock per second by its error type, plus the "
           "gateway's own connection and timeout failures.",
           Target(rate("gateway_upstream_errors_total", M, "error_type"), "{{error_type}}"), unit="reqps"),

        Row("Latency"),
        ts("Request duration percentiles", "p50/p90/p99 from request headers to the end of the answer "
           "(includes the model's generation time).",
           *percentiles("gateway_request_duration_seconds", CM), unit="s", width=8),
        ts("Time to first token percentiles", "Streamed answers: p50/p90/p99 from sending to Bedrock to the "
           "first answer bytes; what a chat user waits for.",
           *percentiles("gateway_time_to_first_token_seconds", CM), unit="s", width=8),
        ts("Upstream duration percentiles", "p50/p90/p99 of Bedrock's part: from sending the request to the end "
           "of Bedrock's answer.",
           *percentiles("gateway_upstream_duration_seconds", M), unit="s", width=8),
        ts("p95 request duration by model", "Which model is slow end to end.",
           Target(quantile(0.95, "gateway_request_duration_seconds", CM, "model"), "{{model}}"), unit="s"),
        ts("p95 time to first token by model", "Which model is slow to start streaming.",
           Target(quantile(0.95, "gateway_time_to_first_token_seconds", CM, "model"), "{{model}}"), unit="s"),

        Row("Tokens and cost"),
        ts("Tokens per second by type", "Tokens Bedrock reported, by type (input, output, cache_read, cache_write).",
           Target(rate("gateway_tokens_total", CM, "type"), "{{type}}"), unit="short", stacked=True, width=8),
        ts("Tokens per second by consumer", "Which teams use the most tokens (all types).",
           Target(rate("gateway_tokens_total", CM, "consumer"), "{{consumer}}"), unit="short", stacked=True, width=8),
        ts("Tokens per second by model", "Which models carry the tokens (all types).",
           Target(rate("gateway_tokens_total", CM, "model"), "{{model}}"), unit="short", stacked=True, width=8),
        ts("Cost per hour by consumer", "Spend rate in USD per hour at catalogue prices, per consumer.",
           Target(f'{rate("gateway_cost_usd_total", CM, "consumer")} * 3600', "{{consumer}}"),
           unit="currencyUSD", stacked=True),
        ts("Cost per hour by model", "Spend rate in USD per hour at catalogue prices, per model.",
           Target(f'{rate("gateway_cost_usd_total", CM, "model")} * 3600', "{{model}}"),
           unit="currencyUSD", stacked=True),
        _usage_table("Usage by consumer and model", "Requests, tokens by type and cost over the time range, one row "
                     "per consumer and model (chargeback); a consumer name opens its drill-down.",
                     "consumer, model", CM, link_consumer=True),

        Row("Limits, budgets and guardrails"),
        ts("Limit rejections", "Requests refused 429 by a consumer limit, per consumer and limit.",
           Target(rate("gateway_limit_rejections_total", C, "consumer, limit"), "{{consumer}} {{limit}}"),
           unit="reqps"),
        ts("Budget used", "Share of each consumer's budget used in its current day or month window (1 = exhausted).",
           Target(f"max by (consumer, budget) (gateway_budget_used_ratio{{{C}}})", "{{consumer}} {{budget}}"),
           unit="percentunit"),
        ts("Guardrail actions", "Guardrail findings acted on per second, by detector and action "
           "(block, redact, monitor).",
           Target(rate("gateway_guardrail_actions_total", C, "detector, action"), "{{detector}} {{action}}"),
           unit="ops"),
        ts("Guardrail blocks by consumer", "Requests and answers blocked per second, per consumer and detector.",
           Target(rate("gateway_guardrail_actions_total", C + ',action="block"', "consumer, detector"),
                  "{{consumer}} {{detector}}"), unit="ops"),

        Row("Bedrock upstream"),
        ts("Throttled share by model", "Share of each model's requests that Bedrock answered ThrottlingException "
           "(its quota is reached). All consumers: Bedrock's quotas are per account.",
           Target(ratio(rate("gateway_upstream_errors_total", M_THROTTLED, "model"),
                        rate("gateway_requests_total", M, "model")), "{{model}}"), unit="percentunit", width=8),
        ts("Upstream errors by model", "Bedrock error answers per second, per model and error type.",
           Target(rate("gateway_upstream_errors_total", M, "model, error_type"), "{{model}} {{error_type}}"),
           unit="reqps", width=8),
        ts("Envoy to Bedrock responses", "Responses per second Envoy got from Bedrock, by status class.",
           Target(rate("envoy_cluster_upstream_rq_xx", BEDROCK_CLUSTERS, "envoy_response_code_class"),
                  "{{envoy_response_code_class}}xx"), unit="reqps", width=8),
        ts("Envoy to Bedrock connection failures", "Connection failures, request timeouts and resets towards "
           "Bedrock, per second.",
           Target(rate("envoy_cluster_upstream_cx_connect_fail", BEDROCK_CLUSTERS), "connect failures"),
           Target(rate("envoy_cluster_upstream_rq_timeout", BEDROCK_CLUSTERS), "timeouts"),
           Target(rate("envoy_cluster_upstream_rq_rx_reset", BEDROCK_CLUSTERS), "resets"),
           unit="ops", width=24),

        Row("Extproc and Envoy"),
        ts("Extproc phase time p99", "99th percentile of the extproc's own time per ext_proc message, by phase: "
           "what the gateway adds to each round trip.",
           Target(quantile(0.99, "gateway_extproc_phase_seconds", "", "phase"), "{{phase}}"), unit="s", width=8),
        ts("Extproc phase time p50", "Median extproc time per ext_proc message, by phase.",
           Target(quantile(0.5, "gateway_extproc_phase_seconds", "", "phase"), "{{phase}}"), unit="s", width=8),
        ts("Extproc messages per second", "ext_proc messages handled per second, by phase.",
           Target(rate("gateway_extproc_phase_seconds_count", "", "phase"), "{{phase}}"), unit="ops", width=8),
        ts("Extproc health", "Healthy and total extproc hosts as Envoy's health check sees them, and whether "
           "VictoriaMetrics can scrape the extproc and Envoy (up).",
           Target(f"sum(envoy_cluster_membership_healthy{{{EXTPROC_CLUSTER}}})", "healthy (Envoy)"),
           Target(f"sum(envoy_cluster_membership_total{{{EXTPROC_CLUSTER}}})", "total (Envoy)"),
           Target('sum by (job) (up{job=~"extproc|envoy"})', "scraped {{job}}"),
           unit="short", width=8),
        ts("Extproc health checks", "Envoy's gRPC health checks of the extproc per second: successes and failures.",
           Target(rate("envoy_cluster_health_check_success", EXTPROC_CLUSTER), "success"),
           Target(rate("envoy_cluster_health_check_failure", EXTPROC_CLUSTER), "failure"),
           Target(rate("envoy_cluster_health_check_network_failure", EXTPROC_CLUSTER), "network failure"),
           unit="ops", width=8),
        ts("Envoy ext_proc stream errors", "ext_proc streams that failed, messages that timed out and header "
           "mutations Envoy refused, per second; each one is a 5xx to a client.",
           Target(rate("envoy_http_ext_proc_streams_failed", LISTENER), "streams failed"),
           Target(rate("envoy_http_ext_proc_message_timeouts", LISTENER), "message timeouts"),
           Target(rate("envoy_http_ext_proc_rejected_header_mutations", LISTENER), "rejected mutations"),
           unit="ops", width=8),
        ts("Envoy responses to clients", "What Envoy answered clients per second, by status class, including "
           "answers the extproc never saw (extproc down, 413).",
           Target(rate("envoy_http_downstream_rq_xx", LISTENER, "envoy_response_code_class"),
                  "{{envoy_response_code_class}}xx"), unit="reqps", stacked=True),
        ts("Envoy request duration percentiles", "p50 and p99 of the whole request as clients see it at Envoy.",
           *[Target(quantile(q, "envoy_http_downstream_rq_time", LISTENER), f"p{round(q * 100)}")
             for q in (0.5, 0.99)], unit="ms"),
        ts("Limits backend errors", "Limit checks and charges that could not reach the shared state (Redis), "
           "by operation (admit, settle) and outcome (fail_open: let through unlimited, fail_closed: refused 503, "
           "lost: a finished request not charged).",
           Target(rate("gateway_limits_backend_errors_total", "", "operation, outcome"), "{{operation}} {{outcome}}"),
           unit="ops", width=24),
    ]
    return dashboard(
        OVERVIEW_UID, "Bedrock gateway: overview",
        "Traffic, errors, latency, tokens and cost, limits, guardrails, Bedrock and the gateway's own health.",
        items, [variable_consumer(multi=True), variable_model()],
        [_link("Consumer drill-down", CONSUMER_UID)],
    )


def consumer() -> dict[str, Any]:
    requests = rate("gateway_requests_total", CM)
    items: list[Panel | Row] = [
        Row("Summary"),
        stat("Requests per second", "This consumer's finished requests per second.", Target(requests), "reqps"),
        stat("Error ratio (5xx)", "Share of this consumer's requests answered 5xx.",
             Target(ratio(rate("gateway_requests_total", CM_5XX), requests)),
             "percentunit", [(None, "green"), (0.01, "orange"), (0.05, "red")]),
        stat("Client error ratio (4xx)", "Share answered 4xx: refused by policy, limits, guardrails or validation.",
             Target(ratio(rate("gateway_requests_total", CM_4XX), requests)),
             "percentunit", [(None, "green"), (0.1, "orange"), (0.25, "red")]),
        stat("p95 request duration", "95th percentile of this consumer's request durations.",
             Target(quantile(0.95, "gateway_request_duration_seconds", CM)), "s",
             [(None, "green"), (10, "orange"), (30, "red")]),
        stat("Tokens in time range", "All token types over the dashboard's time range.",
             Target(f"sum(increase(gateway_tokens_total{{{CM}}}[$__range]))"), "short"),
        stat("Cost in time range", "USD at catalogue prices over the dashboard's time range.",
             Target(f"sum(increase(gateway_cost_usd_total{{{CM}}}[$__range]))"), "currencyUSD"),
        ts("Requests by route and status", "Requests per second per route and status class.",
           Target(rate("gateway_requests_total", CM, "route, status_class"), "{{route}} {{status_class}}"),
           unit="reqps", stacked=True),
        ts("Requests by model", "Requests per second per model.",
           Target(rate("gateway_requests_total", CM, "model"), "{{model}}"), unit="reqps", stacked=True),
        ts("Request duration percentiles", "p50/p90/p99 of this consumer's request durations.",
           *percentiles("gateway_request_duration_seconds", CM), unit="s"),
        ts("Time to first token percentiles", "p50/p90/p99 of this consumer's time to first token (streams).",
           *percentiles("gateway_time_to_first_token_seconds", CM), unit="s"),

        Row("Tokens and cost"),
        ts("Tokens per second by model and type", "Tokens Bedrock reported for this consumer, per model and type.",
           Target(rate("gateway_tokens_total", CM, "model, type"), "{{model}} {{type}}"), unit="short", stacked=True),
        ts("Cost per hour by model", "This consumer's spend rate in USD per hour, per model.",
           Target(f'{rate("gateway_cost_usd_total", CM, "model")} * 3600', "{{model}}"),
           unit="currencyUSD", stacked=True),
        _usage_table("Usage by model and route", "Requests, tokens by type and cost over the time range, one row "
                     "per model and route.", "model, route", CM, link_consumer=False),

        Row("Limits, budget and guardrails"),
        Panel("gauge", "Budget used", "Share of each of this consumer's budgets used in the current window.",
              [Target(f"max by (budget) (gateway_budget_used_ratio{{{C}}})", "{{budget}}")], unit="percentunit",
              width=8, thresholds=[(None, "green"), (0.8, "orange"), (0.9, "red")]),
        ts("Limit rejections", "Requests refused 429 per second, by limit.",
           Target(rate("gateway_limit_rejections_total", C, "limit"), "{{limit}}"), unit="reqps", width=8),
        ts("Guardrail actions", "Guardrail findings acted on per second, by detector and action.",
           Target(rate("gateway_guardrail_actions_total", C, "detector, action"), "{{detector}} {{action}}"),
           unit="ops", width=8),
    ]
    return dashboard(
        CONSUMER_UID, "Bedrock gateway: consumer",
        "One consumer (team): its traffic, latency, tokens and cost, budget, limits and guardrails.",
        items, [variable_consumer(multi=False), variable_model()],
        [_link("Overview", OVERVIEW_UID)],
    )


DASHBOARDS = {"gateway-overview.json": overview, "gateway-consumer.json": consumer}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed file differs from the output")
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path, text = OUT / name, render(build)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            OUT.mkdir(exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"stale dashboards (run python grafana/build_dashboards.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
