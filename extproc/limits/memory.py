"""The in-process store: exact limits and usage totals for one gateway process.

This module also holds the rules both stores share (windows, periods, how a
verdict is made from what a store saw), so the Redis store's scripts only
gather counters and count; the decision is made here, once, in Python.
Every call runs on the event loop, so no locks are needed.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ..config import Limits
from ..usage import Usage
from . import Quota, UsageRow, Verdict

WINDOW_SECONDS = 60.0
"""Requests and tokens per minute are sliding windows this long."""
CONCURRENCY_RETRY_SECONDS = 1.0
"""A lease frees when some request ends, which cannot be predicted; clients retry soon."""
DEFAULT_LEASE_SECONDS = 900.0
"""A lease older than this is dropped, so a crashed request cannot hold a slot forever."""

BUDGETS: dict[str, tuple[str, str]] = {
    "usd_per_day": ("day", "usd"),
    "tokens_per_day": ("day", "tokens"),
    "usd_per_month": ("month", "usd"),
    "tokens_per_month": ("month", "tokens"),
}
"""Budget name (a field of :class:`~extproc.config.Budget`) -> (period, what it counts)."""

USAGE_COUNTERS = ("requests", "input", "output", "cache_read", "cache_write")
"""Integer usage totals kept per minute (and per hour), consumer and model (besides ``cost_usd``)."""
DETAIL_SECONDS = 86_400
"""Usage totals are kept per minute for the last day and per hour for the rest of the retention:
per-minute rows for 35 days would take about 1 MB per busy consumer and model (Redis or Python);
hourly rows take a sixtieth of that."""


@dataclass(frozen=True, slots=True)
class Period:
    """One calendar UTC day or month a budget is counted in."""

    name: str
    """``2026-11-26`` or ``2026-11``: distinct per period, so it keys the period's spend."""
    end: float
    """When the period ends (epoch seconds): the spend resets then."""


def periods(now: float) -> dict[str, Period]:
    """The UTC day and month ``now`` falls in."""
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    next_month = (month + timedelta(days=32)).replace(day=1)
    return {
        "day": Period(day.strftime("%Y-%m-%d"), (day + timedelta(days=1)).timestamp()),
        "month": Period(month.strftime("%Y-%m"), next_month.timestamp()),
    }


def budget_caps(limits: Limits) -> dict[str, float]:
    """The budgets set in ``limits``, by name."""
    caps = {name: getattr(limits.budget, name) for name in BUDGETS}
    return {name: cap for name, cap in caps.items() if cap is not None}


@dataclass(frozen=True, slots=True)
class Seen:
    """What a store saw of one consumer at ``now``, before this request: all a verdict needs."""

    requests: int = 0
    """Admissions in the window."""
    oldest_request: float = 0.0
    newest_request: float = 0.0
    tokens: int = 0
    """Tokens charged in the window."""
    freeing_charge: float = 0.0
    """When tokens reach the limit: the time of the charge whose leaving the window brings them under it."""
    newest_charge: float = 0.0
    leases: int = 0
    spent: Mapping[str, float] = field(default_factory=dict)
    """Each budget set: the amount used in its current period."""


def _freeing_charge(charges: Collection[tuple[float, int]], total: int, limit: int) -> float:
    """The time of the charge whose leaving the window brings the tokens under ``limit``.

    ``charges`` are (time, tokens), oldest first, adding up to ``total``; 0 when
    the tokens are already under (then nothing is walked: admits stay O(1)).
    """
    left = total
    freeing = 0.0
    for at, tokens in charges:
        if left < limit:
            break
        left -= tokens
        freeing = at
    return freeing


def verdict(limits: Limits, seen: Seen, now: float) -> Verdict:
    """Check every limit set at once and report the longest wait; quotas are reported on every verdict."""
    refusals: list[tuple[float, str]] = []
    rpm, tpm, concurrent = limits.requests_per_minute, limits.tokens_per_minute, limits.concurrent_requests
    if rpm is not None and seen.requests >= rpm:
        refusals.append((seen.oldest_request + WINDOW_SECONDS - now, "requests_per_minute"))
    if tpm is not None and seen.tokens >= tpm:
        refusals.append((seen.freeing_charge + WINDOW_SECONDS - now, "tokens_per_minute"))
    if concurrent is not None and seen.leases >= concurrent:
        refusals.append((CONCURRENCY_RETRY_SECONDS, "concurrent_requests"))
    ends = periods(now)
    for name, cap in budget_caps(limits).items():
        if seen.spent.get(name, 0.0) >= cap:
            refusals.append((ends[BUDGETS[name][0]].end - now, name))
    retry_after, refused_by = 0.0, None
    if refusals:
        retry_after, refused_by = max(refusals)
    allowed = refused_by is None
    requests = tokens = None
    if rpm is not None:
        if allowed:
            requests = Quota(rpm, rpm - seen.requests - 1, WINDOW_SECONDS)
        else:
            reset = seen.newest_request + WINDOW_SECONDS - now if seen.requests else 0.0
            requests = Quota(rpm, max(0, rpm - seen.requests), reset)
    if tpm is not None:
        reset = seen.newest_charge + WINDOW_SECONDS - now if seen.tokens else 0.0
        tokens = Quota(tpm, max(0, tpm - seen.tokens), reset)
    return Verdict(allowed, refused_by, retry_after, requests, tokens)


def usage_rows(totals: Mapping[tuple[str, str], Mapping[str, float]]) -> list[UsageRow]:
    """Rows from totals per (consumer, model), sorted; a counter never charged reads 0."""
    return [
        UsageRow(consumer, model, int(counts.get("requests", 0)),
                 Usage(**{name: int(counts.get(name, 0)) for name in USAGE_COUNTERS[1:]}),
                 float(counts.get("cost_usd", 0.0)))
        for (consumer, model), counts in sorted(totals.items())
    ]


def minute_range(start: float, end: float) -> range:
    """The minutes that begin in [start, end)."""
    return range(math.ceil(start / 60), math.ceil(end / 60))


def first_detailed_hour(now: float) -> int:
    """The oldest hour whose per-minute totals are still kept at ``now`` (they go a whole hour at a time)."""
    return math.floor((now - DETAIL_SECONDS) / 3600)


def usage_buckets(start: float, end: float, now: float) -> tuple[range, range]:
    """The minute and hour buckets that make up ``usage(start, end)`` at ``now``.

    Within the last day: the minutes that begin in [start, end). Before it: the
    hours that begin in [start, end) (an older window edge counts whole hours).
    """
    detailed = first_detailed_hour(now)
    minutes = minute_range(start, end)
    return (range(max(minutes.start, detailed * 60), minutes.stop),
            range(math.ceil(start / 3600), min(math.ceil(end / 3600), detailed)))


@dataclass(slots=True)
class _Consumer:
    """One consumer's live counters; dropped as soon as none is live, so memory stays bounded."""

    requests: deque[float] = field(default_factory=deque)
    """Admission times, oldest first."""
    charges: deque[tuple[float, int]] = field(default_factory=deque)
    """(time, tokens) charged at settle, oldest first."""
    charged: int = 0
    """The tokens of ``charges``, kept as they come and go, so a check never sums the window."""
    leases: dict[str, float] = field(default_factory=dict)
    """request_id -> admission time, oldest first."""
    spent: dict[tuple[str, str], float] = field(default_factory=dict)
    """(period name, budget name) -> amount used in that period."""

    def prune(self, now: float, lease_seconds: float, current: Mapping[str, Period]) -> None:
        window_start, lease_cutoff = now - WINDOW_SECONDS, now - lease_seconds
        while self.requests and self.requests[0] <= window_start:
            self.requests.popleft()
        while self.charges and self.charges[0][0] <= window_start:
            self.charged -= self.charges.popleft()[1]
        while self.leases and (oldest := next(iter(self.leases.items())))[1] <= lease_cutoff:
            del self.leases[oldest[0]]
        names = {period.name for period in current.values()}
        self.spent = {key: used for key, used in self.spent.items() if key[0] in names}

    def idle(self) -> bool:
        return not (self.requests or self.charges or self.leases or self.spent)

    def seen(self, limits: Limits, current: Mapping[str, Period]) -> Seen:
        tpm = limits.tokens_per_minute
        return Seen(
            requests=len(self.requests),
            oldest_request=self.requests[0] if self.requests else 0.0,
            newest_request=self.requests[-1] if self.requests else 0.0,
            tokens=self.charged,
            freeing_charge=_freeing_charge(self.charges, self.charged, tpm) if tpm is not None else 0.0,
            newest_charge=self.charges[-1][0] if self.charges else 0.0,
            leases=len(self.leases),
            spent={name: self.spent.get(_spent_key(name, current), 0.0) for name in budget_caps(limits)},
        )


def _spent_key(budget: str, current: Mapping[str, Period]) -> tuple[str, str]:
    return current[BUDGETS[budget][0]].name, budget


class MemoryStore:
    """Limits and usage totals of one process (``limits.backend: memory``)."""

    def __init__(self, usage_retention_days: int = 35, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self._retention_seconds = usage_retention_days * 86_400
        self._lease_seconds = lease_seconds
        self._consumers: dict[str, _Consumer] = {}
        self._usage: dict[int, dict[tuple[str, str], dict[str, float]]] = {}
        """minute -> (consumer, model) -> counter -> total, for the last day (DETAIL_SECONDS)."""
        self._minutes: list[int] = []
        """A heap of the minutes in ``_usage``: the oldest is dropped first."""
        self._hourly: dict[int, dict[tuple[str, str], dict[str, float]]] = {}
        """hour -> (consumer, model) -> counter -> total, for the whole retention."""
        self._hours: list[int] = []

    async def admit(self, consumer: str, request_id: str, limits: Limits, now: float) -> Verdict:
        if not limits.active:
            return Verdict(allowed=True)
        current = periods(now)
        state = self._touch(consumer, now, current)
        result = verdict(limits, state.seen(limits, current), now)
        if result.allowed:
            if limits.requests_per_minute is not None:
                state.requests.append(now)
            if limits.concurrent_requests is not None:
                state.leases.pop(request_id, None)  # re-inserted last, to keep the oldest first
                state.leases[request_id] = now
        self._forget_if_idle(consumer, state)
        return result

    async def settle(self, consumer: str, model: str, request_id: str, limits: Limits | None,
                     usage: Usage, cost_usd: float, now: float) -> dict[str, float]:
        return self.settle_now(consumer, model, request_id, limits, usage, cost_usd, now)

    def settle_now(self, consumer: str, model: str, request_id: str, limits: Limits | None,
                   usage: Usage, cost_usd: float, now: float) -> dict[str, float]:
        """:meth:`settle` without a coroutine: nothing here waits, so the Limiter charges at once
        instead of scheduling a task for every request."""
        self._add_usage(consumer, model, usage, cost_usd, now)
        if consumer not in self._consumers and (limits is None or not limits.active):
            return {}
        current = periods(now)
        state = self._touch(consumer, now, current)
        state.leases.pop(request_id, None)
        spent: dict[str, float] = {}
        if limits is not None:
            tokens = sum(usage.as_dict().values())
            if limits.tokens_per_minute is not None and tokens:
                state.charges.append((now, tokens))
                state.charged += tokens
            for name in budget_caps(limits):
                key = _spent_key(name, current)
                amount = cost_usd if BUDGETS[name][1] == "usd" else tokens
                state.spent[key] = spent[name] = state.spent.get(key, 0.0) + amount
        self._forget_if_idle(consumer, state)
        return spent

    async def usage(self, start: float, end: float, consumer: str | None = None,
                    model: str | None = None, now: float | None = None) -> list[UsageRow]:
        minutes, hours = usage_buckets(start, end, time.time() if now is None else now)
        buckets = ([rows for m, rows in self._usage.items() if m in minutes]
                   + [rows for h, rows in self._hourly.items() if h in hours])
        totals: dict[tuple[str, str], dict[str, float]] = {}
        for rows in buckets:
            for key, counts in rows.items():
                if (consumer is None or key[0] == consumer) and (model is None or key[1] == model):
                    into = totals.setdefault(key, {})
                    for name, amount in counts.items():
                        into[name] = into.get(name, 0.0) + amount
        return usage_rows(totals)

    async def close(self) -> None:
        """Nothing to release: the counters go with the process."""

    def _touch(self, consumer: str, now: float, current: Mapping[str, Period]) -> _Consumer:
        state = self._consumers.get(consumer)
        if state is None:
            state = self._consumers[consumer] = _Consumer()
        state.prune(now, self._lease_seconds, current)
        return state

    def _forget_if_idle(self, consumer: str, state: _Consumer) -> None:
        if state.idle():
            del self._consumers[consumer]

    def _add_usage(self, consumer: str, model: str, usage: Usage, cost_usd: float, now: float) -> None:
        detailed = first_detailed_hour(now)
        while self._minutes and self._minutes[0] // 60 < detailed:
            del self._usage[heapq.heappop(self._minutes)]
        while self._hours and (self._hours[0] + 1) * 3600 + self._retention_seconds <= now:
            del self._hourly[heapq.heappop(self._hours)]
        amounts = {"requests": 1, **usage.as_dict(), "cost_usd": cost_usd}
        for bucket, table, heap in ((int(now // 60), self._usage, self._minutes),
                                    (int(now // 3600), self._hourly, self._hours)):
            if bucket not in table:
                table[bucket] = {}
                heapq.heappush(heap, bucket)
            counts = table[bucket].setdefault((consumer, model), {})
            for name, amount in amounts.items():
                counts[name] = counts.get(name, 0.0) + amount
