"""Prometheus metrics served on :9464 ``/metrics``.

Labels are bounded: consumers and models come from configuration, routes from
a fixed enum, statuses are folded into classes. Nothing derived from request
content becomes a label.
"""

from __future__ import annotations

from prometheus_client import Counter

REQUESTS = Counter(
    "gateway_requests", "Requests finished, by consumer, route, model alias and status class",
    ["consumer", "route", "model", "status_class"],
)
TOKENS = Counter(
    "gateway_tokens", "Tokens Bedrock reported, by type (input, output, cache_read, cache_write)",
    ["consumer", "route", "model", "type"],
)
AUTH_FAILURES = Counter(
    "gateway_auth_failures", "Requests refused for a missing or unknown API key", ["route", "reason"]
)
GUARDRAIL_ACTIONS = Counter(
    "gateway_guardrail_actions", "Guardrail findings acted on, by consumer, policy, detector and action",
    ["consumer", "policy", "detector", "action"],
)
