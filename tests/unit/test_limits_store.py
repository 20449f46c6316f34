"""The limits stores: the memory and Redis stores give the same answers for the same calls.

Every behavioural test runs against both, on an injected clock. The Redis store
is also checked where only it can go wrong: several processes at once, a Redis
that dies or hangs, keys that must all expire, and one round trip per call.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
from redis.asyncio.connection import AbstractConnection

from extproc.config import Budget, Limits
from extproc.limits import Quota, Store, StoreUnavailable, UsageRow, Verdict
from extproc.limits.memory import MemoryStore
from extproc.limits.redis_store import BACKOFF_SECONDS, RedisStore
from extproc.usage import Usage
from tests.redis_server import RedisServer

T = TypeVar("T")
Run = Callable[[Awaitable[T]], T]

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC).timestamp()
"""Noon, on a minute boundary: far from the day's end, so budgets only reset when a test says so."""
RETENTION_DAYS = 2
RETENTION = RETENTION_DAYS * 86_400


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def prefix() -> str:
    """A key prefix of its own per test: tests share one Redis but never each other's keys."""
    return f"test-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def run() -> Iterator[Run[Any]]:
    """Runs coroutines on one event loop for the whole test, so store calls read as plain calls."""
    with asyncio.Runner() as runner:
        yield runner.run


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest, run: Run[Any], prefix: str) -> Iterator[Store]:
    if request.param == "memory":
        subject: Store = MemoryStore(RETENTION_DAYS)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        subject = RedisStore(server.url, prefix, 5.0, RETENTION_DAYS)
    yield subject
    run(subject.close())


@pytest.fixture
def limit_state(request: pytest.FixtureRequest, store: Store, prefix: str) -> Callable[[], set[str]]:
    """What a store keeps for limits, usage totals aside: consumers (memory) or keys (Redis)."""
    if isinstance(store, MemoryStore):
        return lambda: set(store._consumers)
    client = request.getfixturevalue("redis_server").client()
    return lambda: {key for key in client.scan_iter(f"{prefix}*") if not key.startswith(f"{prefix}usage")}


def test_requests_per_minute_is_a_sliding_window(store: Store, run: Run[Any]) -> None:
    limits = Limits(requests_per_minute=3)
    for i in range(3):
        verdict = run(store.admit("a", f"r{i}", limits, NOW + 10 * i))
        assert verdict == Verdict(allowed=True, requests=Quota(3, 2 - i, 60.0))

    refused = run(store.admit("a", "r3", limits, NOW + 30))
    assert refused == Verdict(False, "requests_per_minute", 30.0, requests=Quota(3, 0, 50.0)), \
        "retry when the oldest admission (NOW) leaves; full again when the newest (NOW+20) does"
    assert run(store.admit("a", "r4", limits, NOW + 59.5)).retry_after == pytest.approx(0.5)

    assert run(store.admit("a", "r5", limits, NOW + 60)).allowed, "the oldest left the window exactly now"
    again = run(store.admit("a", "r6", limits, NOW + 61))
    assert (again.allowed, again.retry_after) == (False, 9.0), "refusals took no slot: the next frees at NOW+70"
    assert run(store.admit("b", "r7", limits, NOW + 61)).allowed, "each consumer has its own window"


def test_tokens_per_minute_counts_every_token_type_at_settle(store: Store, run: Run[Any]) -> None:
    limits = Limits(tokens_per_minute=1000)
    first = run(store.admit("a", "r1", limits, NOW))
    assert first == Verdict(allowed=True, tokens=Quota(1000, 1000, 0.0))
    run(store.settle("a", "haiku", "r1", limits, Usage(input=300, output=200, cache_read=50, cache_write=50), 0.0,
                     NOW + 1))
    assert run(store.admit("a", "r2", limits, NOW + 2)).tokens == Quota(1000, 400, 59.0)
    run(store.settle("a", "haiku", "r2", limits, Usage(output=300), 0.0, NOW + 2))
    run(store.settle("a", "haiku", "r3", limits, Usage(input=900), 0.0, NOW + 3))

    refused = run(store.admit("a", "r4", limits, NOW + 4))
    assert refused == Verdict(False, "tokens_per_minute", 58.0, tokens=Quota(1000, 0, 59.0)), \
        "1800 used: under 1000 only once the charges of NOW+1 (600) and NOW+2 (300) have left"
    assert run(store.admit("a", "r5", limits, NOW + 61.5)).retry_after == pytest.approx(0.5)
    assert run(store.admit("a", "r6", limits, NOW + 62)).tokens == Quota(1000, 100, 1.0)


def test_concurrency_leases_are_released_at_settle_or_time_out(store: Store, run: Run[Any]) -> None:
    limits = Limits(concurrent_requests=2)
    assert run(store.admit("a", "r1", limits, NOW)).allowed
    assert run(store.admit("a", "r2", limits, NOW)).allowed
    assert run(store.admit("a", "r3", limits, NOW + 1)) == Verdict(False, "concurrent_requests", 1.0)

    assert run(store.settle("a", "haiku", "r1", limits, Usage(), 0.0, NOW + 2)) == {}
    assert run(store.settle("a", "haiku", "never-admitted", limits, Usage(), 0.0, NOW + 2)) == {}
    assert run(store.admit("a", "r3", limits, NOW + 2)).allowed
    assert not run(store.admit("a", "r4", limits, NOW + 3)).allowed

    assert run(store.admit("a", "r4", limits, NOW + 900)).allowed, "r2 never settled: its lease timed out"


@pytest.mark.parametrize("budget, start, later, end", [
    ("usd_per_day", NOW, 3600, utc(2026, 11, 27)),
    ("tokens_per_day", NOW, 3600, utc(2026, 11, 27)),
    ("usd_per_month", utc(2026, 12, 30, 10), 86_400, utc(2027, 1, 1)),
    ("tokens_per_month", utc(2028, 2, 15), 86_400, utc(2028, 3, 1)),
])
def test_budget_refuses_until_its_period_ends(store: Store, run: Run[Any], budget: str, start: float,
                                              later: float, end: float) -> None:
    in_usd = budget.startswith("usd")
    cap, first, second = (1.0, 0.75, 0.25) if in_usd else (1000, 600, 400)
    limits = Limits(budget=Budget(**{budget: cap}))

    def charge(request_id: str, amount: float, now: float) -> dict[str, float]:
        assert run(store.admit("a", request_id, limits, now)).allowed
        usage, cost = (Usage(output=7), amount) if in_usd else (Usage(input=int(amount)), 0.0)
        return run(store.settle("a", "haiku", request_id, limits, usage, cost, now))

    assert charge("r1", first, start) == {budget: pytest.approx(first)}
    assert charge("r2", second, start + later) == {budget: pytest.approx(cap)}, "a later day of the same period"
    refused = run(store.admit("a", "r3", limits, start + later + 1))
    assert (refused.allowed, refused.refused_by) == (False, budget)
    assert refused.retry_after == pytest.approx(end - (start + later + 1))
    assert run(store.admit("a", "r4", limits, end - 0.5)).retry_after == pytest.approx(0.5)
    assert charge("r5", second, end) == {budget: pytest.approx(second)}, "a new period starts from zero"


def test_the_longest_wait_is_reported_when_several_limits_refuse(store: Store, run: Run[Any]) -> None:
    limits = Limits(requests_per_minute=1, concurrent_requests=1, budget=Budget(usd_per_day=0.5))
    assert run(store.admit("a", "r1", limits, NOW)).allowed
    refused = run(store.admit("a", "r2", limits, NOW + 10))
    assert (refused.refused_by, refused.retry_after) == ("requests_per_minute", 50.0), "not concurrency's 1 s"
    run(store.settle("a", "haiku", "r1", limits, Usage(output=10), 1.0, NOW + 11))
    refused = run(store.admit("a", "r3", limits, NOW + 12))
    assert (refused.refused_by, refused.retry_after) == ("usd_per_day", 12 * 3600 - 12)


def test_quotas_are_reported_on_every_verdict_and_refusals_count_nothing(store: Store, run: Run[Any]) -> None:
    limits = Limits(requests_per_minute=10, tokens_per_minute=500, concurrent_requests=1)
    first = run(store.admit("a", "r1", limits, NOW))
    assert (first.requests, first.tokens) == (Quota(10, 9, 60.0), Quota(500, 500, 0.0))
    refused = run(store.admit("a", "r2", limits, NOW + 5))
    assert refused.refused_by == "concurrent_requests"
    assert (refused.requests, refused.tokens) == (Quota(10, 9, 55.0), Quota(500, 500, 0.0))
    run(store.settle("a", "haiku", "r1", limits, Usage(input=120), 0.0, NOW + 6))
    third = run(store.admit("a", "r3", limits, NOW + 7))
    assert (third.allowed, third.requests, third.tokens) == (True, Quota(10, 8, 60.0), Quota(500, 380, 59.0))


def test_usage_totals_by_window_consumer_and_model(store: Store, run: Run[Any]) -> None:
    run(store.settle("a", "haiku", "r1", None, Usage(10, 20, 30, 40), 0.5, NOW + 5))
    run(store.settle("a", "haiku", "r2", Limits(requests_per_minute=5), Usage(1, 2, 3, 4), 0.25, NOW + 50))
    run(store.settle("a", "sonnet", "r3", None, Usage(input=100), 1.0, NOW + 61))
    run(store.settle("b", "haiku", "r4", None, Usage(output=7), 0.0, NOW + 125))
    a_haiku = UsageRow("a", "haiku", 2, Usage(11, 22, 33, 44), 0.75)
    a_sonnet = UsageRow("a", "sonnet", 1, Usage(input=100), 1.0)
    b_haiku = UsageRow("b", "haiku", 1, Usage(output=7), 0.0)

    assert run(store.usage(NOW, NOW + 180)) == [a_haiku, a_sonnet, b_haiku]
    assert run(store.usage(NOW, NOW + 60)) == [a_haiku]
    assert run(store.usage(NOW + 1, NOW + 121)) == [a_sonnet, b_haiku], "minutes that begin in [start, end)"
    assert run(store.usage(NOW, NOW + 180, consumer="a")) == [a_haiku, a_sonnet]
    assert run(store.usage(NOW, NOW + 180, model="haiku")) == [a_haiku, b_haiku]
    assert run(store.usage(NOW, NOW + 180, consumer="a", model="sonnet")) == [a_sonnet]
    assert run(store.usage(NOW, NOW + 180, consumer="nobody")) == []
    assert run(store.usage(NOW + 600, NOW + 900)) == []


def test_usage_totals_are_kept_for_the_retention_period(store: Store, run: Run[Any]) -> None:
    """Per minute for a day, then per hour until the retention has passed since the hour ended."""
    def input_tokens(start: float, end: float, now: float) -> int:
        return sum(row.usage.input for row in run(store.usage(start, end, now=now)))

    run(store.settle("a", "haiku", "r1", None, Usage(input=1), 0.0, NOW + 30))
    run(store.settle("a", "haiku", "r2", None, Usage(input=2), 0.0, NOW + 90))
    assert input_tokens(NOW + 60, NOW + 120, now=NOW + 100) == 2, "within the day: whole minutes"
    later = NOW + 86_400 + 3600 + 10  # the hour of r1 and r2 lost its minutes
    run(store.settle("a", "haiku", "r3", None, Usage(input=4), 0.0, later))
    assert input_tokens(NOW + 60, NOW + 120, now=later) == 0, "an hour that began before the window"
    assert input_tokens(NOW, later + 60, now=later) == 7, "whole hours before the last day, minutes in it"
    end = NOW + 3600 + RETENTION  # r1's and r2's hour ended RETENTION ago
    run(store.settle("a", "haiku", "r4", None, Usage(input=8), 0.0, end))
    assert input_tokens(NOW, end + 60, now=end) == 12, "the first hour ended more than the retention ago"


def test_consumers_without_limits_leave_nothing_but_usage_totals(
        store: Store, run: Run[Any], limit_state: Callable[[], set[str]]) -> None:
    assert run(store.admit("free", "r1", Limits(), NOW)) == Verdict(allowed=True)
    assert run(store.settle("free", "haiku", "r1", None, Usage(input=5), 0.1, NOW + 1)) == {}
    assert run(store.settle("free", "haiku", "r2", Limits(), Usage(input=5), 0.1, NOW + 2)) == {}
    assert limit_state() == set()
    assert run(store.usage(NOW, NOW + 60)) == [UsageRow("free", "haiku", 2, Usage(input=10), pytest.approx(0.2))]


def test_memory_store_forgets_a_consumer_once_nothing_of_it_is_live(run: Run[Any]) -> None:
    store = MemoryStore(RETENTION_DAYS)
    limits = Limits(requests_per_minute=5, tokens_per_minute=100, concurrent_requests=2, budget=Budget(usd_per_day=5))
    assert run(store.admit("a", "r1", limits, NOW)).allowed
    run(store.settle("a", "haiku", "r1", limits, Usage(input=10), 0.5, NOW + 1))
    assert run(store.admit("a", "crashed", limits, NOW + 2)).allowed
    assert set(store._consumers) == {"a"}

    run(store.settle("a", "haiku", "unknown", None, Usage(), 0.0, NOW + RETENTION + 120))
    assert store._consumers == {}, "windows passed, the lease timed out, the day ended"
    assert list(store._usage) == [int((NOW + RETENTION + 120) // 60)], "old usage minutes dropped"


# Redis only.

def _hammer(url: str, prefix: str, attempts: int, start_at: float) -> tuple[int, int]:
    """One gateway process admitting many requests at once: how many passed requests/min and concurrency."""
    async def main() -> tuple[int, int]:
        store = RedisStore(url, prefix, 5.0, 1)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        pid = os.getpid()
        per_minute = await asyncio.gather(*(
            store.admit("per-minute", f"{pid}-m{i}", Limits(requests_per_minute=37), time.time())
            for i in range(attempts)))
        concurrent = await asyncio.gather(*(
            store.admit("concurrent", f"{pid}-c{i}", Limits(concurrent_requests=11), time.time())
            for i in range(attempts)))
        await store.close()
        return sum(v.allowed for v in per_minute), sum(v.allowed for v in concurrent)
    return asyncio.run(main())


def test_redis_is_exact_across_processes(redis_server: RedisServer, prefix: str) -> None:
    processes = 3
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        start_at = time.time() + 3
        runs = [pool.submit(_hammer, redis_server.url, prefix, 100, start_at) for _ in range(processes)]
        results = [future.result(timeout=60) for future in runs]
    assert sum(per_minute for per_minute, _ in results) == 37
    assert sum(concurrent for _, concurrent in results) == 11


def test_redis_failure_is_fast_then_backs_off_then_recovers() -> None:
    password = f"pw-{uuid.uuid4().hex}"
    limits = Limits(requests_per_minute=100)

    async def admit_many(store: RedisStore, name: str) -> list[Verdict]:
        return await asyncio.gather(*(store.admit("a", f"{name}{i}", limits, time.time()) for i in range(10)))

    with RedisServer(password=password) as server:
        async def main() -> None:
            store = RedisStore(server.url, "gw:", 0.25, 1)
            assert all(v.allowed for v in await admit_many(store, "before"))  # several pooled connections

            server.kill()
            failed_at = time.monotonic()
            with pytest.raises(StoreUnavailable) as failure:
                await store.admit("a", "r2", limits, time.time())
            assert time.monotonic() - failed_at < 1.0
            for text in (str(failure.value), repr(failure.value.__cause__)):
                assert password not in text

            server.start()
            assert time.monotonic() - failed_at < BACKOFF_SECONDS / 2, "redis-server took too long to restart"
            for call in (store.admit("a", "r3", limits, time.time()),
                         store.settle("a", "haiku", "r3", limits, Usage(input=1), 0.0, time.time()),
                         store.usage(0, time.time())):
                with pytest.raises(StoreUnavailable, match="less than 1s ago"):
                    await call
            assert time.monotonic() - failed_at < BACKOFF_SECONDS, "Redis is back, but not tried during the back-off"

            await asyncio.sleep(failed_at + BACKOFF_SECONDS - time.monotonic() + 0.05)
            assert all(v.allowed for v in await admit_many(store, "after")), "reconnected once the back-off ended"
            await store.close()

        asyncio.run(main())


def test_redis_that_hangs_times_out() -> None:
    with RedisServer() as server:
        async def main() -> None:
            store = RedisStore(server.url, "gw:", 0.25, 1)
            assert (await store.admit("a", "r1", Limits(requests_per_minute=5), time.time())).allowed
            server.pause()
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="TimeoutError"):
                await store.admit("a", "r2", Limits(requests_per_minute=5), time.time())
            assert 0.2 < time.monotonic() - started < 0.6
            server.resume()
            await asyncio.sleep(BACKOFF_SECONDS)
            assert (await store.admit("a", "r3", Limits(requests_per_minute=5), time.time())).allowed
            await store.close()

        asyncio.run(main())


def test_redis_wrong_password_is_unavailable_without_echoing_it() -> None:
    with RedisServer(password="right-password") as server:
        url = server.url.replace("right-password", "wrong-password")

        async def main() -> None:
            store = RedisStore(url, "gw:", 0.25, 1)
            with pytest.raises(StoreUnavailable, match="AuthenticationError") as failure:
                await store.settle("a", "haiku", "r1", None, Usage(), 0.0, NOW)
            for text in (str(failure.value), repr(failure.value.__cause__)):
                assert "wrong-password" not in text
            await store.close()

        asyncio.run(main())


def test_redis_every_key_expires(redis_server: RedisServer, prefix: str, run: Run[Any]) -> None:
    store = RedisStore(redis_server.url, prefix, 5.0, RETENTION_DAYS)
    limits = Limits(requests_per_minute=5, tokens_per_minute=1000, concurrent_requests=3,
                    budget=Budget(usd_per_day=5, usd_per_month=50, tokens_per_day=10_000, tokens_per_month=100_000))
    assert run(store.admit("a", "r1", limits, NOW)).allowed
    assert run(store.admit("a", "r2", limits, NOW)).allowed
    run(store.settle("a", "haiku", "r1", limits, Usage(input=10, output=5), 0.01, NOW + 1))
    run(store.close())

    client = redis_server.client()
    ttls = {key.removeprefix(prefix): client.ttl(key) for key in client.scan_iter(f"{prefix}*")}
    day_end, month_end = utc(2026, 11, 27) - NOW, utc(2026, 12, 1) - NOW
    hour_end = (int(NOW // 3600) + 1) * 3600 - NOW
    bounds = {"rpm:a": 61, "tpm:a": 61, "tpmsum:a": 61, "leases:a": 901, "spent:2026-11-26:a": day_end + 60,
              "spent:2026-11:a": month_end + 60, f"usage:{int(NOW // 60)}": hour_end + 86_400,
              "usage:minutes": 86_400 + 3600, f"usage-hour:{int(NOW // 3600)}": hour_end + RETENTION,
              "usage:hours": RETENTION + 3600}
    assert ttls.keys() == bounds.keys()
    for key, ttl in ttls.items():
        assert bounds[key] - 5 <= ttl <= bounds[key], key


def test_redis_one_round_trip_per_admit_and_settle(redis_server: RedisServer, prefix: str, run: Run[Any],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[object] = []
    send = AbstractConnection.send_packed_command

    async def counting_send(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        sent.append(command)
        await send(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting_send)
    store = RedisStore(redis_server.url, prefix, 5.0, RETENTION_DAYS)
    limits = Limits(requests_per_minute=50, tokens_per_minute=10_000, concurrent_requests=5,
                    budget=Budget(usd_per_day=5, tokens_per_month=100_000))
    run(store.admit("a", "warm-up", limits, NOW))  # connects and loads the scripts
    run(store.settle("a", "haiku", "warm-up", limits, Usage(input=1), 0.0, NOW))

    client = redis_server.client()
    client.config_resetstat()
    sent.clear()
    for i in range(5):
        run(store.admit("a", f"r{i}", limits, NOW + i))
        run(store.settle("a", "haiku", f"r{i}", limits, Usage(input=10), 0.01, NOW + i))
    assert len(sent) == 10
    stats = client.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 10
    assert not {"cmdstat_eval", "cmdstat_script|load", "cmdstat_hgetall"} & stats.keys()

    sent.clear()
    assert run(store.admit("free", "r1", Limits(), NOW)).allowed
    assert sent == [], "no limits, no round trip"
    run(store.close())


def test_redis_token_check_reads_a_running_total_not_the_window(redis_server: RedisServer, prefix: str,
                                                                run: Run[Any]) -> None:
    """A busy consumer's check stays one read: the total follows charges in and out of the window,
    and a lost total is rebuilt from the log."""
    store = RedisStore(redis_server.url, prefix, 5.0, RETENTION_DAYS)
    limits = Limits(tokens_per_minute=10_000)
    client = redis_server.client()
    for i in range(300):
        run(store.settle("a", "haiku", f"r{i}", limits, Usage(input=7), 0.0, NOW + i * 0.1))
    assert client.get(f"{prefix}tpmsum:a") == "2100"
    verdict = run(store.admit("a", "x", limits, NOW + 30))
    assert verdict.tokens is not None and verdict.tokens.remaining == 10_000 - 2100
    later = run(store.admit("a", "y", limits, NOW + 75.05))  # the 151 charges up to NOW + 15 have left
    assert later.tokens is not None and later.tokens.remaining == 10_000 - 7 * 149
    client.delete(f"{prefix}tpmsum:a")
    rebuilt = run(store.admit("a", "z", limits, NOW + 75.05))
    assert rebuilt.tokens is not None and rebuilt.tokens.remaining == 10_000 - 7 * 149
    run(store.close())


def test_redis_token_total_never_outlives_its_log(redis_server: RedisServer, prefix: str, run: Run[Any]) -> None:
    """Checks alone must not keep a total alive after the charges it sums expired with their log."""
    store = RedisStore(redis_server.url, prefix, 5.0, RETENTION_DAYS)
    limits = Limits(tokens_per_minute=1000)
    client = redis_server.client()
    run(store.settle("a", "haiku", "r1", limits, Usage(input=1000), 0.0, NOW))
    assert not run(store.admit("a", "x", limits, NOW + 30)).allowed
    assert client.ttl(f"{prefix}tpmsum:a") <= client.ttl(f"{prefix}tpm:a") + 1
    client.delete(f"{prefix}tpm:a")  # the log expired (no charge for a minute)
    assert run(store.admit("a", "y", limits, NOW + 63)).allowed
    assert not client.exists(f"{prefix}tpmsum:a")
    run(store.close())
