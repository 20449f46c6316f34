"""The Limiter: 429s in each API's shape with the headers its SDK reads; an unreachable store, open or closed."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from devstack import free_port
from extproc import metrics
from extproc.config import Budget, Limits, LimitsBackend
from extproc.errors import Api
from extproc.limits import Quota, Verdict
from extproc.limits.enforce import Limiter, rate_limit_headers
from extproc.limits.memory import MemoryStore
from extproc.limits.redis_store import RedisStore
from extproc.usage import Usage

NOON = datetime(2026, 11, 26, 12, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_headers_of_each_api() -> None:
    verdict = Verdict(False, "requests_per_minute", 12.2, requests=Quota(60, 0, 12.2), tokens=Quota(1000, 250, 75))
    openai = dict(rate_limit_headers(Api.OPENAI, verdict, NOON))
    assert openai == {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0",
                      "x-ratelimit-reset-requests": "13s", "x-ratelimit-limit-tokens": "1000",
                      "x-ratelimit-remaining-tokens": "250", "x-ratelimit-reset-tokens": "1m15s"}
    anthropic = dict(rate_limit_headers(Api.ANTHROPIC, verdict, NOON))
    assert anthropic["anthropic-ratelimit-requests-remaining"] == "0"
    assert anthropic["anthropic-ratelimit-requests-reset"] == "2026-11-26T12:00:12Z"
    assert anthropic["anthropic-ratelimit-tokens-limit"] == "1000"
    assert rate_limit_headers(Api.BEDROCK, verdict, NOON) == []  # boto3 reads the error code, not headers
    short = Verdict(False, "requests_per_minute", 0.25, requests=Quota(5, 0, 0.25))
    assert dict(rate_limit_headers(Api.OPENAI, short, NOON))["x-ratelimit-reset-requests"] == "250ms"


def test_refusal_is_a_429_naming_the_limit_with_retry_after() -> None:
    async def run() -> None:
        limiter = Limiter(MemoryStore(), LimitsBackend(), clock=Clock(NOON))
        limits = Limits(requests_per_minute=1)
        assert await limiter.admit("team", "r1", limits, Api.OPENAI) is None
        error = await limiter.admit("team", "r2", limits, Api.OPENAI)
        assert error is not None and error.status == 429 and error.code == "requests_per_minute"
        headers = dict(error.headers)
        assert headers["retry-after"] == "60" and headers["x-ratelimit-remaining-requests"] == "0"
        status, _, body = error.render(Api.OPENAI)
        assert status == 429 and json.loads(body)["error"]["type"] == "rate_limit_error"

    asyncio.run(run())


def test_a_budget_refuses_until_the_day_ends_then_resets() -> None:
    async def run() -> None:
        clock = Clock(NOON)
        limiter = Limiter(MemoryStore(), LimitsBackend(), clock=clock)
        limits = Limits(budget=Budget(usd_per_day=1.0))
        assert await limiter.admit("team", "r1", limits, Api.ANTHROPIC) is None
        limiter.settle("team", "haiku", "r1", limits, Usage(input=1000, output=100), 1.5)
        await limiter.drain()
        refused = await limiter.admit("team", "r2", limits, Api.ANTHROPIC)
        assert refused is not None and refused.code == "usd_per_day"
        assert dict(refused.headers)["retry-after"] == str(12 * 3600)  # until midnight UTC
        assert metrics.BUDGET_USED.labels("team", "usd_per_day")._value.get() == 1.5
        clock.now = NOON + 12 * 3600 + 1  # the next UTC day
        assert await limiter.admit("team", "r3", limits, Api.ANTHROPIC) is None

    asyncio.run(run())


def test_unreachable_store_fails_open_or_closed() -> None:
    async def run() -> None:
        url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
        limits = Limits(requests_per_minute=10)
        opened = Limiter(RedisStore(url, "t:", 0.2, 1), LimitsBackend(on_error="open"))
        closed = Limiter(RedisStore(url, "t:", 0.2, 1), LimitsBackend(on_error="closed"))
        before = metrics.LIMITS_BACKEND_ERRORS.labels("admit", "fail_open")._value.get()
        assert await opened.admit("team", "r1", limits, Api.OPENAI) is None
        assert metrics.LIMITS_BACKEND_ERRORS.labels("admit", "fail_open")._value.get() == before + 1
        error = await closed.admit("team", "r1", limits, Api.ANTHROPIC)
        assert error is not None and error.status == 503 and dict(error.headers)["retry-after"] == "1"
        opened.settle("team", "haiku", "r1", limits, Usage(input=1), 0.0)  # a lost charge is counted, not raised
        await opened.close()
        await closed.close()

    asyncio.run(run())


def test_a_charge_that_meets_a_redis_hiccup_is_retried_and_releases_its_lease() -> None:
    from tests.redis_server import RedisServer

    async def run(server: RedisServer) -> None:
        limiter = Limiter(RedisStore(server.url, "t:", 0.2, 1), LimitsBackend())
        limits = Limits(concurrent_requests=1)
        assert await limiter.admit("team", "lease-1", limits, Api.OPENAI) is None
        server.pause()  # Redis stops answering: the charge times out and the store backs off
        limiter.settle("team", "haiku", "lease-1", limits, Usage(input=5), 0.0)
        await asyncio.sleep(0.5)
        server.resume()
        await limiter.drain()  # the retry after the back-off gets through
        assert await limiter.admit("team", "lease-2", limits, Api.OPENAI) is None  # the lease was released
        assert metrics.LIMITS_BACKEND_ERRORS.labels("settle", "retried")._value.get() >= 1
        await limiter.close()

    with RedisServer() as server:
        asyncio.run(run(server))


def test_every_limit_and_budget_field_alone_makes_limits_active() -> None:
    """``Limits.active`` names the fields it reads (it runs on every request): a new one must be added there."""
    assert not Limits().active
    for name in Limits.model_fields:
        if name != "budget":
            assert Limits(**{name: 1}).active, name
    for name in Budget.model_fields:
        assert Limits(budget=Budget(**{name: 1})).active, name
