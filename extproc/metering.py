"""The end of a request: metrics, the usage record, the audit entry and the limits charge.

Everything here runs once per request, after its answer has left (see
``Gateway.finish``). Tokens come from Bedrock's own usage fields, each type
kept apart, counted exactly once; a request refused before Bedrock has zero
tokens and zero cost, never a charge. The usage record (README "Usage
records") is the durable, billable line; the metrics are its aggregate view.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import metrics
from .config import Limits, Policy, Settings
from .limits.enforce import Limiter
from .records import JsonLines

if TYPE_CHECKING:
    from .gateway import RequestState


class Meter:
    def __init__(self, records: JsonLines, audit: JsonLines | None, limiter: Limiter, audit_max_chars: int,
                 worker_index: int | None = None) -> None:
        self.records = records.start()
        self.worker = {"worker": worker_index} if worker_index is not None else {}
        """Under ``--workers``, which worker wrote a record (to see how load spreads)."""
        self.audit = audit.start() if audit is not None else None
        self.limiter = limiter
        self.audit_max_chars = audit_max_chars

    @classmethod
    def from_settings(cls, settings: Settings, limiter: Limiter, worker_index: int | None = None) -> Meter:
        config = settings.config
        records = JsonLines("usage", stdout=config.usage_records.stdout, file=config.usage_records.file)
        audit = JsonLines("audit", stdout=False, file=config.audit.file) if config.audit.file else None
        return cls(records, audit, limiter, config.audit.max_chars, worker_index)

    def audits(self, policy: Policy) -> bool:
        return self.audit is not None and policy.audit

    def opened(self, state: RequestState) -> None:
        metrics.bound(metrics.IN_FLIGHT, state.route.label).inc()
        state.in_flight = True

    def closed(self, state: RequestState, limits: Limits | None) -> None:
        """The request's stream ended: what cannot wait for :meth:`finish`, which may come later.

        It leaves the in-flight gauge; under active limits it is charged now, because the
        consumer's next request, maybe a millisecond later, must find its concurrency lease
        free and its tokens counted. Metrics, records and an unlimited consumer's usage
        totals are :meth:`finish`'s.
        """
        if state.in_flight:
            state.in_flight = False
            metrics.bound(metrics.IN_FLIGHT, state.route.label).dec()
        if limits is not None and limits.active:
            self._settle(state, limits)

    def _settle(self, state: RequestState, limits: Limits | None) -> None:
        """Charge the request to its consumer's limits and usage totals, once."""
        if state.settled or not state.consumer:
            return
        state.settled = True
        if state.stream is not None:
            state.usage = state.stream.usage
        self.limiter.settle(state.consumer, state.model.alias if state.model else "", state.limit_id,
                            limits if limits and limits.active else None, state.usage, _cost(state))

    def keep_answer(self, state: RequestState, chunk: bytes) -> None:
        """Collect what the client receives, up to the audit cap (only for audited consumers)."""
        kept = state.audit_answer
        if kept is not None and chunk and sum(map(len, kept)) < self.audit_max_chars * 4:
            kept.append(chunk)

    def finish(self, state: RequestState, limits: Limits | None) -> None:
        now = time.monotonic()
        usage, partial, error = state.usage, False, state.error
        if state.stream is not None:
            usage = state.usage = state.stream.usage
            partial = not state.stream.complete
            error = error or state.stream.error
            if state.stream.error and not state.upstream_error:
                state.upstream_error = _error_label(state.stream.error)
        if state.upstream_started is not None and not state.response_done:
            # Sent to Bedrock (and billed there), but the client left before the answer ended.
            partial = True
            error = error or "client_disconnected"
        status = state.status if state.status is not None else 499
        model = state.model.alias if state.model else ""
        consumer = state.consumer or ""
        route = state.route.label
        cost = _cost(state)
        duration = now - state.started

        self.closed(state, limits)
        metrics.bound(metrics.REQUESTS, consumer, route, model, f"{status // 100}xx").inc()
        for token_type, count in usage.as_dict().items():
            if count:
                metrics.bound(metrics.TOKENS, consumer, route, model, token_type).inc(count)
        if cost:
            metrics.bound(metrics.COST, consumer, route, model).inc(cost)
        metrics.bound(metrics.REQUEST_DURATION, consumer, route, model).observe(duration)
        if state.upstream_started is not None and state.response_done:
            metrics.bound(metrics.UPSTREAM_DURATION, route, model).observe(now - state.upstream_started)
        if state.first_token is not None and state.upstream_started is not None:
            first_token = state.first_token - state.upstream_started
            metrics.bound(metrics.TIME_TO_FIRST_TOKEN, consumer, route, model).observe(first_token)
        if state.upstream_error:
            metrics.bound(metrics.UPSTREAM_ERRORS, route, model, state.upstream_error).inc()

        record: dict[str, Any] = {
            "record": "usage",
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "request_id": state.request_id,
            "consumer": consumer,
            "route": route,
            "model": model,
            "bedrock_model": state.model.bedrock_id if state.model else "",
            "status": status,
            "error": error,
            "tokens": usage.as_dict(),
            "cost_usd": round(cost, 8),
            "partial": partial,
            "duration_ms": _ms(duration),
            "upstream_ms": _ms(now - state.upstream_started) if state.upstream_started is not None else None,
            "first_byte_ms": _between(state.upstream_started, state.first_byte),
            "first_token_ms": _between(state.upstream_started, state.first_token),
            "user_agent": state.headers.get("user-agent", ""),
            "session_id": state.session_id,
            "end_user": state.chat_request.user if state.chat_request and state.chat_request.user else "",
            "guardrails": state.guardrails,
            **state.adjustments.as_log(),
            **self.worker,
        }
        self.records.write(record)
        if self.audit is not None and state.audit_prompt is not None:
            self.audit.write(self._audit_entry(state, record))
        self._settle(state, limits)

    def _audit_entry(self, state: RequestState, record: dict[str, Any]) -> dict[str, Any]:
        cap = self.audit_max_chars
        prompt = json.dumps(state.audit_prompt, ensure_ascii=False)
        answer = b"".join(state.audit_answer or ()).decode("utf-8", "replace")
        return {
            "record": "audit", "time": record["time"], "request_id": state.request_id, "consumer": record["consumer"],
            "route": record["route"], "model": record["model"], "status": record["status"],
            "prompt": prompt[:cap], "prompt_truncated": len(prompt) > cap,
            "answer": answer[:cap], "answer_truncated": len(answer) > cap,
        }

    def close(self) -> None:
        self.records.close()
        if self.audit is not None:
            self.audit.close()


def _cost(state: RequestState) -> float:
    """What the request's tokens cost at its model's catalogue prices (its usage final)."""
    return state.usage.cost_usd(state.model.entry.prices) if state.model else 0.0


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _between(start: float | None, end: float | None) -> float | None:
    return _ms(end - start) if start is not None and end is not None else None


def _error_label(code: str) -> str:
    """A stream's error as a bounded metric label: Bedrock's exception names as Bedrock spells them."""
    if code.lower().endswith("exception"):
        return code[0].upper() + code[1:]
    return code
