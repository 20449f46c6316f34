"""Limits as the gateway applies them: admit before Bedrock, settle after, 429s clients understand.

The :class:`Limiter` owns the store and the policy for an unreachable store
(fail open: let the request through unlimited; fail closed: 503), counts
both in ``gateway_limits_backend_errors_total``, and charges each request after
its answer has left (in a background task when the store is Redis). Rate-limit headers
follow each API's convention so the official SDKs' retry logic works: OpenAI's
``x-ratelimit-*`` (reset as a duration), Anthropic's ``anthropic-ratelimit-*``
(reset as an RFC 3339 time), and ``retry-after`` in whole seconds for all.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime

from .. import metrics
from ..config import Limits, LimitsBackend, Settings
from ..errors import Api, GatewayError, Kind
from ..usage import Usage
from . import Quota, Store, StoreUnavailable, Verdict
from .memory import MemoryStore

log = logging.getLogger("extproc.limits")

SETTLE_ATTEMPTS = 4
SETTLE_RETRY_SECONDS = 1.2
"""Just over a store's back-off after a failure (1 s), so a retry really reaches Redis again."""

_LIMIT_NAMES = {
    "requests_per_minute": "requests per minute",
    "tokens_per_minute": "tokens per minute",
    "concurrent_requests": "concurrent requests",
    "usd_per_day": "daily budget (USD)",
    "usd_per_month": "monthly budget (USD)",
    "tokens_per_day": "daily token budget",
    "tokens_per_month": "monthly token budget",
}


def open_store(settings: Settings) -> Store:
    """The store ``limits.backend`` names."""
    backend = settings.config.limits
    if backend.backend == "redis":
        from .redis_store import RedisStore

        return RedisStore(settings.redis_url, key_prefix=backend.key_prefix, timeout_seconds=backend.timeout_seconds,
                          usage_retention_days=backend.usage_retention_days)
    return MemoryStore(usage_retention_days=backend.usage_retention_days)


class Limiter:
    def __init__(self, store: Store, backend: LimitsBackend, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.fail_open = backend.on_error == "open"
        self.clock = clock
        self._pending: set[asyncio.Task[None]] = set()

    async def admit(self, consumer: str, request_id: str, limits: Limits, api: Api) -> GatewayError | None:
        """None when the request may go on; else the error to answer (429, or 503 when failing closed)."""
        try:
            verdict = await self.store.admit(consumer, request_id, limits, self.clock())
        except StoreUnavailable:
            metrics.LIMITS_BACKEND_ERRORS.labels("admit", "fail_open" if self.fail_open else "fail_closed").inc()
            if self.fail_open:
                return None
            return GatewayError(503, Kind.OVERLOADED, "the gateway cannot check this key's limits right now; "
                                "retry shortly", code="limits_unavailable", headers=(("retry-after", "1"),))
        if verdict.allowed:
            return None
        limit = verdict.refused_by or "limit"
        metrics.LIMIT_REJECTIONS.labels(consumer, limit).inc()
        retry = max(1, math.ceil(verdict.retry_after))
        return GatewayError(
            429, Kind.RATE_LIMIT,
            f"rate limit: this key's {_LIMIT_NAMES.get(limit, limit)} limit is reached; retry after {retry} s",
            code=limit, headers=(("retry-after", str(retry)), *rate_limit_headers(api, verdict, self.clock())),
        )

    def settle(self, consumer: str, model: str, request_id: str, limits: Limits | None, usage: Usage,
               cost_usd: float) -> None:
        """Charge a finished request (its answer has already left): at once on the in-process store,
        as a background task on a remote one, so that no answer ever waits for Redis."""
        if isinstance(self.store, MemoryStore):
            self._note_budgets(consumer, limits,
                               self.store.settle_now(consumer, model, request_id, limits, usage, cost_usd, self.clock()))
            return
        task = asyncio.get_running_loop().create_task(
            self._settle(consumer, model, request_id, limits, usage, cost_usd, self.clock()))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _settle(self, consumer: str, model: str, request_id: str, limits: Limits | None, usage: Usage,
                      cost_usd: float, now: float) -> None:
        for attempt in range(SETTLE_ATTEMPTS):
            try:
                used = await self.store.settle(consumer, model, request_id, limits, usage, cost_usd, now)
                break
            except StoreUnavailable:
                # A lost settle would keep a concurrency lease for its whole expiry and leave tokens
                # and cost uncharged: try again after the store's back-off before giving up.
                if attempt + 1 < SETTLE_ATTEMPTS:
                    metrics.LIMITS_BACKEND_ERRORS.labels("settle", "retried").inc()
                    await asyncio.sleep(SETTLE_RETRY_SECONDS)
        else:
            metrics.LIMITS_BACKEND_ERRORS.labels("settle", "lost").inc()
            log.warning("usage not charged to limits: store unavailable",
                        extra={"limit_id": request_id, "consumer": consumer})
            return
        self._note_budgets(consumer, limits, used)

    @staticmethod
    def _note_budgets(consumer: str, limits: Limits | None, used: dict[str, float]) -> None:
        """The budget-used gauges, from what the charge brought each budget to."""
        if limits is not None:
            for budget, amount in used.items():
                cap = getattr(limits.budget, budget, None)
                if cap:
                    metrics.BUDGET_USED.labels(consumer, budget).set(amount / cap)

    async def drain(self) -> None:
        """Wait for every charge still in flight (graceful shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def close(self) -> None:
        await self.drain()
        await self.store.close()


def rate_limit_headers(api: Api, verdict: Verdict, now: float) -> list[tuple[str, str]]:
    """The limit/remaining/reset headers of ``api`` for the quotas ``verdict`` carries."""
    headers: list[tuple[str, str]] = []
    for kind, quota in (("requests", verdict.requests), ("tokens", verdict.tokens)):
        if quota is None:
            continue
        if api is Api.OPENAI:
            headers += [(f"x-ratelimit-limit-{kind}", _int(quota.limit)),
                        (f"x-ratelimit-remaining-{kind}", _int(quota.remaining)),
                        (f"x-ratelimit-reset-{kind}", _duration(quota))]
        elif api is Api.ANTHROPIC:
            reset = datetime.fromtimestamp(now + quota.reset_seconds, UTC).isoformat(timespec="seconds")
            headers += [(f"anthropic-ratelimit-{kind}-limit", _int(quota.limit)),
                        (f"anthropic-ratelimit-{kind}-remaining", _int(quota.remaining)),
                        (f"anthropic-ratelimit-{kind}-reset", reset.replace("+00:00", "Z"))]
    return headers


def _int(value: float) -> str:
    return str(max(0, int(value)))


def _duration(quota: Quota) -> str:
    """OpenAI's reset format: ``1s``, ``6m0s``, ``20ms``."""
    seconds = max(0.0, quota.reset_seconds)
    if seconds < 1:
        return f"{int(seconds * 1000)}ms"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"
