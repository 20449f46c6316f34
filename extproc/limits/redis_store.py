"""The shared store: exact limits and usage totals across processes and replicas, in Redis.

Each :meth:`RedisStore.admit` and :meth:`RedisStore.settle` is one EVALSHA of
a Lua script that checks and counts atomically, so two replicas can never
both take the last slot, and a request pays one round trip per call. The
scripts only gather counters and count; the verdict is made by the same
Python code as the memory store's (``memory.verdict``), from what they saw.

Times always come from the caller's ``now``, never from Redis, so both stores
agree and tests can move the clock; cut-offs are computed here and sent as
exact decimal strings (``repr`` of a float round-trips). Every key expires.

Keys, after the configured prefix (the kind comes first and period names
have no colon, so keys of different consumers cannot collide):

- ``rpm:{consumer}``: ZSET of admissions, score = time.
- ``tpm:{consumer}``: ZSET of token charges, score = time, member ends in ``:{tokens}``.
- ``tpmsum:{consumer}``: the tokens of that ZSET, kept as charges come and leave, so a
  check reads one number instead of summing the window (O(1) per request, not O(charges)).
- ``leases:{consumer}``: ZSET of concurrency leases, member = request_id, score = time.
- ``spent:{period}:{consumer}``: HASH, budget name -> amount used in the period
  (``2026-11-26`` holds the day's budgets, ``2026-11`` the month's).
- ``usage:{minute}``: HASH, ``consumer␟model␟counter`` -> total (␟ is U+001F), kept for a day.
- ``usage-hour:{hour}``: the same per hour, kept for the retention period.
- ``usage:minutes``, ``usage:hours``: ZSET indexes of the buckets kept, so ``usage()`` reads only those.

A dead or slow Redis must not slow requests down: calls time out after
``timeout_seconds`` without retries, and after a failure the store answers
:class:`StoreUnavailable` at once for a second before trying again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ..config import Limits
from ..usage import Usage
from . import StoreUnavailable, UsageRow, Verdict
from .memory import (BUDGETS, DEFAULT_LEASE_SECONDS, DETAIL_SECONDS, WINDOW_SECONDS, Seen, budget_caps,
                     first_detailed_hour, periods, usage_buckets, usage_rows, verdict)

BACKOFF_SECONDS = 1.0
"""After a failure, Redis is not tried again for this long: a dead Redis then costs requests nothing."""
PERIOD_GRACE_SECONDS = 60
"""A budget key outlives its period by this much, for replicas whose clocks lag a little."""
FIELD_SEPARATOR = "\x1f"
_WINDOW_TTL = math.ceil(WINDOW_SECONDS) + 1

T = TypeVar("T")

# Shared by both scripts: the running token total of a token log, with the charges that
# left the window taken out (usually none or a few). A missing total (expired, or kept by a
# gateway version without it) is rebuilt from the log once; a missing log (expired: no charge
# for a minute) means no tokens, whatever a total that outlived it says.
_TOKEN_TOTAL = """
local function token_total(log, total_key, window_start)
  if redis.call('EXISTS', log) == 0 then
    redis.call('DEL', total_key)
    return 0
  end
  local total = redis.call('GET', total_key)
  if not total then
    total = 0
    for _, member in ipairs(redis.call('ZRANGE', log, 0, -1)) do
      total = total + tonumber(string.match(member, '(%d+)$'))
    end
  end
  total = tonumber(total)
  local gone = redis.call('ZRANGEBYSCORE', log, '-inf', window_start)
  if #gone > 0 then
    for _, member in ipairs(gone) do
      total = total - tonumber(string.match(member, '(%d+)$'))
    end
    redis.call('ZREMRANGEBYSCORE', log, '-inf', window_start)
  end
  return total
end
"""

# KEYS: 1 request log, 2 token log, 3 leases, 4..7 the hash holding each budget's spend, 8 token total.
# ARGV: 1 now, 2 request_id, 3 window start, 4 lease cut-off, 5 window TTL, 6 lease TTL,
#       7 requests/min, 8 tokens/min, 9 concurrent requests ('' = unset),
#       10..17 per budget: field, cap ('' = unset).
# Returns what was seen before this request; counts it only if every limit passes.
_ADMIT = _TOKEN_TOTAL + """
local now, request_id, window_start, lease_cutoff = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local rpm, tpm, concurrent = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local refused = false

local requests, oldest, newest = 0, false, false
if rpm then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', window_start)
  requests = redis.call('ZCARD', KEYS[1])
  if requests > 0 then
    oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]
    newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2]
  end
  refused = requests >= rpm
end

local tokens, freeing, last_charge = 0, false, false
if tpm then
  tokens = token_total(KEYS[2], KEYS[8], window_start)
  if tokens > 0 then
    redis.call('SET', KEYS[8], tokens, 'KEEPTTL')  -- expires with the log it sums (set at settle)
  end
  local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  if #last > 0 then last_charge = last[2] end
  if tokens >= tpm then
    -- Refused: walk the oldest charges (a page at a time) until enough have left.
    local left, first = tokens, 0
    while left >= tpm do
      local page = redis.call('ZRANGE', KEYS[2], first, first + 63, 'WITHSCORES')
      if #page == 0 then break end
      for i = 1, #page, 2 do
        left = left - tonumber(string.match(page[i], '(%d+)$'))
        freeing = page[i + 1]
        if left < tpm then break end
      end
      first = first + 64
    end
    refused = true
  end
end

local leases = 0
if concurrent then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', lease_cutoff)
  leases = redis.call('ZCARD', KEYS[3])
  refused = refused or leases >= concurrent
end

local spent = {}
for i = 1, 4 do
  local field, cap = ARGV[8 + 2 * i], tonumber(ARGV[9 + 2 * i])
  spent[i] = false
  if cap then
    spent[i] = redis.call('HGET', KEYS[3 + i], field) or '0'
    refused = refused or tonumber(spent[i]) >= cap
  end
end

if not refused then
  if rpm then
    redis.call('ZADD', KEYS[1], now, request_id .. ':' .. now)
    redis.call('EXPIRE', KEYS[1], ARGV[5])
  end
  if concurrent then
    redis.call('ZADD', KEYS[3], now, request_id)
    redis.call('EXPIRE', KEYS[3], ARGV[6])
  end
end
return {requests, oldest, newest, tokens, freeing, last_charge, leases, spent[1], spent[2], spent[3], spent[4]}
"""

# KEYS: 1 token log, 2 leases, 3..6 the hash holding each budget's spend, 7 minute bucket, 8 minute index,
#       9 token total, 10 hour bucket, 11 hour index.
# ARGV: 1 now, 2 request_id, 3 window start, 4 window TTL, 5 tokens to log ('' = none),
#       6..17 per budget: field, amount ('' = unset), TTL,
#       18 usage field prefix, 19 cost field, 20 cost ('' = none), 21 minute bucket TTL,
#       22 minute, 23 minute index cut-off (exclusive), 24 minute index TTL,
#       25 hour bucket TTL, 26 hour, 27 hour index cut-off (exclusive), 28 hour index TTL,
#       29.. usage counters: field, amount.
# Returns each budget's spend after this charge (nil when unset).
_SETTLE = _TOKEN_TOTAL + """
local now, request_id = ARGV[1], ARGV[2]
redis.call('ZREM', KEYS[2], request_id)
if ARGV[5] ~= '' then
  local total = token_total(KEYS[1], KEYS[9], ARGV[3]) + tonumber(ARGV[5])
  redis.call('ZADD', KEYS[1], now, request_id .. ':' .. now .. ':' .. ARGV[5])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('SET', KEYS[9], total, 'EX', ARGV[4])
end

local spent = {}
for i = 1, 4 do
  local base = 3 + 3 * i
  spent[i] = false
  if ARGV[base + 1] ~= '' then
    spent[i] = redis.call('HINCRBYFLOAT', KEYS[2 + i], ARGV[base], ARGV[base + 1])
    redis.call('EXPIRE', KEYS[2 + i], ARGV[base + 2])
  end
end

local prefix = ARGV[18]
local function add(bucket, ttl, index, id, cutoff, index_ttl)
  if ARGV[20] ~= '' then
    redis.call('HINCRBYFLOAT', bucket, prefix .. ARGV[19], ARGV[20])
  end
  for i = 29, #ARGV, 2 do
    redis.call('HINCRBY', bucket, prefix .. ARGV[i], ARGV[i + 1])
  end
  redis.call('EXPIRE', bucket, ttl)
  redis.call('ZADD', index, id, id)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', cutoff)
  redis.call('EXPIRE', index, index_ttl)
end
add(KEYS[7], ARGV[21], KEYS[8], ARGV[22], ARGV[23], ARGV[24])
add(KEYS[10], ARGV[25], KEYS[11], ARGV[26], ARGV[27], ARGV[28])
return spent
"""


class RedisStore:
    """Limits and usage totals shared by every gateway process (``limits.backend: redis``)."""

    def __init__(self, url: str, key_prefix: str, timeout_seconds: float, usage_retention_days: int,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 0), decode_responses=True,
        )
        self._where = _without_credentials(url)
        self._prefix = key_prefix
        self._retention_seconds = usage_retention_days * 86_400
        self._lease_seconds = lease_seconds
        self._admit = self._redis.register_script(_ADMIT)
        self._settle = self._redis.register_script(_SETTLE)
        self._down_until = 0.0
        """``time.monotonic()`` before which Redis is not tried (the back-off after a failure)."""

    async def admit(self, consumer: str, request_id: str, limits: Limits, now: float) -> Verdict:
        if not limits.active:
            return Verdict(allowed=True)
        current = periods(now)
        keys = [self._key("rpm", consumer), self._key("tpm", consumer), self._key("leases", consumer)]
        args: list[Any] = [
            repr(now), request_id, repr(now - WINDOW_SECONDS), repr(now - self._lease_seconds),
            _WINDOW_TTL, math.ceil(self._lease_seconds) + 1,
            _optional(limits.requests_per_minute), _optional(limits.tokens_per_minute),
            _optional(limits.concurrent_requests),
        ]
        for name, (period, _) in BUDGETS.items():
            keys.append(self._key("spent", f"{current[period].name}:{consumer}"))
            args += [name, _optional(getattr(limits.budget, name))]
        keys.append(self._key("tpmsum", consumer))
        reply = await self._call(lambda: self._admit(keys=keys, args=args))
        requests, oldest, newest, tokens, freeing, last_charge, leases, *spent = reply
        seen = Seen(
            requests=requests, oldest_request=_time(oldest), newest_request=_time(newest),
            tokens=tokens, freeing_charge=_time(freeing), newest_charge=_time(last_charge), leases=leases,
            spent={name: float(used) for name, used in zip(BUDGETS, spent) if used is not None},
        )
        return verdict(limits, seen, now)

    async def settle(self, consumer: str, model: str, request_id: str, limits: Limits | None,
                     usage: Usage, cost_usd: float, now: float) -> dict[str, float]:
        current = periods(now)
        tokens = sum(usage.as_dict().values())
        caps = budget_caps(limits) if limits is not None else {}
        log_tokens = limits is not None and limits.tokens_per_minute is not None and tokens > 0
        minute = int(now // 60)
        keys = [self._key("tpm", consumer), self._key("leases", consumer)]
        args: list[Any] = [repr(now), request_id, repr(now - WINDOW_SECONDS), _WINDOW_TTL,
                           tokens if log_tokens else ""]
        for name, (period, kind) in BUDGETS.items():
            keys.append(self._key("spent", f"{current[period].name}:{consumer}"))
            amount = "" if name not in caps else repr(cost_usd) if kind == "usd" else tokens
            args += [name, amount, math.ceil(current[period].end - now) + PERIOD_GRACE_SECONDS]
        # A minute's totals are kept a day after its hour ends (a whole hour's minutes go together),
        # an hour's until the retention has passed since it ended.
        hour = int(now // 3600)
        keys += [self._key("usage", str(minute)), self._key("usage", "minutes"), self._key("tpmsum", consumer),
                 self._key("usage-hour", str(hour)), self._key("usage", "hours")]
        args += [
            f"{consumer}{FIELD_SEPARATOR}{model}{FIELD_SEPARATOR}", "cost_usd", repr(cost_usd) if cost_usd else "",
            math.ceil((hour + 1) * 3600 + DETAIL_SECONDS - now), minute,
            f"({first_detailed_hour(now) * 60}", DETAIL_SECONDS + 3600,
            math.ceil((hour + 1) * 3600 + self._retention_seconds - now), hour,
            f"({math.floor((now - self._retention_seconds) / 3600)}", self._retention_seconds + 3600,
        ]
        for name, amount in {"requests": 1, **usage.as_dict()}.items():
            if amount:  # a counter never charged reads 0: zeros are not stored
                args += [name, amount]
        spent = await self._call(lambda: self._settle(keys=keys, args=args))
        return {name: float(used) for name, used in zip(BUDGETS, spent) if used is not None}

    async def usage(self, start: float, end: float, consumer: str | None = None,
                    model: str | None = None, now: float | None = None) -> list[UsageRow]:
        minutes, hours = usage_buckets(start, end, time.time() if now is None else now)

        async def read() -> list[dict[str, str]]:
            pipe = self._redis.pipeline(transaction=False)
            pipe.zrangebyscore(self._key("usage", "minutes"), minutes.start, minutes.stop - 1)
            pipe.zrangebyscore(self._key("usage", "hours"), hours.start, hours.stop - 1)
            kept_minutes, kept_hours = await pipe.execute()
            pipe = self._redis.pipeline(transaction=False)
            for minute in kept_minutes:
                pipe.hgetall(self._key("usage", minute))
            for hour in kept_hours:
                pipe.hgetall(self._key("usage-hour", hour))
            return await pipe.execute()

        totals: dict[tuple[str, str], dict[str, float]] = {}
        for bucket in await self._call(read):
            for field, value in bucket.items():
                who, what, name = field.split(FIELD_SEPARATOR)
                if (consumer is None or who == consumer) and (model is None or what == model):
                    counts = totals.setdefault((who, what), {})
                    counts[name] = counts.get(name, 0.0) + float(value)
        return usage_rows(totals)

    async def close(self) -> None:
        await self._redis.aclose()

    def _key(self, kind: str, name: str) -> str:
        return f"{self._prefix}{kind}:{name}"

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis exchange; any failure becomes StoreUnavailable and starts the back-off."""
        if time.monotonic() < self._down_until:
            raise StoreUnavailable(f"Redis at {self._where} failed less than {BACKOFF_SECONDS:g}s ago")
        try:
            return await call()
        except (RedisError, OSError) as exc:
            self._down_until = time.monotonic() + BACKOFF_SECONDS
            raise StoreUnavailable(f"Redis at {self._where}: {type(exc).__name__}") from exc


def _optional(value: float | None) -> str:
    return "" if value is None else repr(value)


def _time(score: str | None) -> float:
    return 0.0 if score is None else float(score)


def _without_credentials(url: str) -> str:
    """Where Redis is, for messages: the URL may carry a password (in its user part or its query)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    where = f"{host}:{parts.port}" if parts.port else host
    return f"{parts.scheme}://{where}{parts.path}"
