"""Per-consumer limits and usage totals, over shared state.

A :class:`Store` keeps the counters limits need (sliding one-minute windows of
requests and tokens, concurrent-request leases, day and month budgets) and the
per-minute usage totals the admin API answers from. ``memory.py`` serves one
process; ``redis_store.py`` serves several processes and replicas, exactly,
with one atomic script per call. The gateway calls :meth:`Store.admit` before
a request goes upstream and :meth:`Store.settle` once it has ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..config import Limits
from ..usage import Usage


class StoreUnavailable(Exception):
    """The shared state could not be reached in time (the caller fails open or closed, per config)."""


@dataclass(frozen=True, slots=True)
class Quota:
    """One limit's state, as rate-limit headers report it."""

    limit: float
    remaining: float
    reset_seconds: float
    """Seconds until ``remaining`` is back to ``limit`` (or the window resets)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    refused_by: str | None = None
    """The limit that refused: ``requests_per_minute``, ``tokens_per_minute``, ``concurrent_requests``,
    ``usd_per_day``, ``usd_per_month``, ``tokens_per_day`` or ``tokens_per_month``."""
    retry_after: float = 0.0
    """Seconds after which the refusing limit would admit this request."""
    requests: Quota | None = None
    """Requests per minute after this request (when that limit is set)."""
    tokens: Quota | None = None
    """Tokens per minute (when that limit is set)."""


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Totals of one consumer and model alias over a window."""

    consumer: str
    model: str
    requests: int
    usage: Usage
    cost_usd: float


class Store(Protocol):
    async def admit(self, consumer: str, request_id: str, limits: Limits, now: float) -> Verdict:
        """Check every limit set in ``limits`` at once; if all pass, count the request.

        Counting means: a request-log entry for requests per minute and a
        concurrency lease for ``request_id`` (released by :meth:`settle`).
        Raises :class:`StoreUnavailable` when the state cannot be reached.
        """

    async def settle(self, consumer: str, model: str, request_id: str, limits: Limits | None,
                     usage: Usage, cost_usd: float, now: float) -> dict[str, float]:
        """A request ended: release its lease, charge its tokens and cost to the
        windows and budgets of ``limits``, and add it to the usage totals of
        (consumer, model) for the minute ``now`` falls in. Called once for every
        authenticated request (``limits`` None when it has none; releasing a
        lease never taken does nothing). Returns, for each budget set in
        ``limits``, the amount used in its current window after this charge
        (``{"usd_per_day": 1.25, ...}``), for the budget gauge.
        """

    async def usage(self, start: float, end: float, consumer: str | None = None,
                    model: str | None = None, now: float | None = None) -> list[UsageRow]:
        """Totals per (consumer, model) over [start, end), optionally filtered.

        Within the last day the minutes that begin in the window count; before it
        (totals are then kept per hour) the hours that begin in it. ``now``
        (default: the clock) says where the last day begins.
        """

    async def close(self) -> None: ...
