"""Prometheus metrics served on :9464 ``/metrics``.

Labels are bounded: consumers and models come from configuration, routes from
a fixed enum, statuses are folded into classes, error types and limits come
from fixed sets. Nothing derived from request content becomes a label.
With ``extproc serve --workers N`` every worker writes prometheus-client's
multiprocess files and the supervisor serves their sum, so each gauge names
how its values across workers combine.

README "Metrics" lists every name, type and label; keep it in step.
"""

from __future__ import annotations

from functools import lru_cache

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_PHASE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1)

REQUESTS = Counter(
    "gateway_requests", "Requests finished, by consumer, route, model alias and status class",
    ["consumer", "route", "model", "status_class"],
)
TOKENS = Counter(
    "gateway_tokens", "Tokens Bedrock reported, by type (input, output, cache_read, cache_write)",
    ["consumer", "route", "model", "type"],
)
COST = Counter(
    "gateway_cost_usd", "What the tokens cost at the catalogue's prices, in USD", ["consumer", "route", "model"],
)
REQUEST_DURATION = Histogram(
    "gateway_request_duration_seconds", "From the request's headers to the end of its answer, as the extproc saw it",
    ["consumer", "route", "model"], buckets=_LATENCY_BUCKETS,
)
UPSTREAM_DURATION = Histogram(
    "gateway_upstream_duration_seconds", "From sending the request to Bedrock to the end of Bedrock's answer",
    ["route", "model"], buckets=_LATENCY_BUCKETS,
)
TIME_TO_FIRST_TOKEN = Histogram(
    "gateway_time_to_first_token_seconds", "Streamed answers: from sending to Bedrock to the first answer bytes",
    ["consumer", "route", "model"], buckets=_LATENCY_BUCKETS,
)
PHASE_DURATION = Histogram(
    "gateway_extproc_phase_seconds", "Time the extproc spent deciding one ext_proc message, by phase",
    ["phase"], buckets=_PHASE_BUCKETS,
)
IN_FLIGHT = Gauge(
    "gateway_in_flight_requests", "Requests whose ext_proc stream is open", ["route"], multiprocess_mode="livesum",
)
AUTH_FAILURES = Counter(
    "gateway_auth_failures", "Requests refused for a missing or unknown API key", ["route", "reason"]
)
GUARDRAIL_ACTIONS = Counter(
    "gateway_guardrail_actions", "Guardrail findings acted on, by consumer, policy, detector and action",
    ["consumer", "policy", "detector", "action"],
)
LIMIT_REJECTIONS = Counter(
    "gateway_limit_rejections", "Requests refused (429) by a consumer limit", ["consumer", "limit"],
)
UPSTREAM_ERRORS = Counter(
    "gateway_upstream_errors", "Error answers from Bedrock by its error type (or the gateway's: connection, timeout)",
    ["route", "model", "error_type"],
)
BUDGET_USED = Gauge(
    "gateway_budget_used_ratio", "Share of a consumer's budget used in its current day or month window",
    ["consumer", "budget"], multiprocess_mode="livemostrecent",
)
LIMITS_BACKEND_ERRORS = Counter(
    "gateway_limits_backend_errors", "Limit checks and charges that could not reach the shared state",
    ["operation", "outcome"],
)


@lru_cache(maxsize=16_384)
def bound(metric: MetricWrapperBase, *labels: str) -> MetricWrapperBase:
    """``metric.labels(*labels)``, remembered: label sets are few (bounded above) and every request
    touches about ten, where ``labels()`` costs microseconds each on the request path."""
    return metric.labels(*labels)
