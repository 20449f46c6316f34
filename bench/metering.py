"""What metering and limits cost the ext_proc per request, in this process: no Envoy, no gRPC, no network
but Redis's.

Measured, side by side in one run:

1. **The decision path** of one non-streaming Anthropic ``/v1/messages`` request (the 1 KiB prompt of
   the parts messages and chat), driven on a :class:`~extproc.gateway.Gateway` inside a running asyncio
   loop as ``server.py`` drives it: ``request_headers``, ``admit`` when limits apply, ``request_body``,
   ``response_headers``, ``response_body`` with the Bedrock emulator's own InvokeModel answer (usage
   included), then ``finish``. Three configurations, each its own Gateway: (i) no limits (the default
   policy), (ii) limits on (requests and tokens per minute, concurrent requests, a day budget: every kind
   the stores check, all far above what the run uses) with the memory store, (iii) the same limits with
   the Redis store, on a real ``redis-server`` the bench starts. The default guardrail policy is on, as
   shipped. Usage records go to a file (``usage_records: {stdout: false, file: …}``): the writer thread
   really serializes and writes them. Requests run one after another in batches, going round
   :data:`POOL` consumers; each batch's time includes awaiting its background charges
   (``Limiter.drain``) and the records writer emptying its queue, so what a request causes is paid in
   the batch that caused it. Figures: wall µs per request (for Redis, waiting for its answers included)
   and CPU µs per request (this process, writer thread included; redis-server's own is not), with the
   time spent in each phase. Rounds interleave the three configurations (order rotating) and each figure
   is the median over rounds: the machine is shared and noisy, so one disturbed batch moves nothing.
2. **The metering share**: the ``finish`` phase (``Meter.finish``: metrics, the usage record queued,
   the charge scheduled) and what runs after the answer (the charge, the record written), against the
   whole path.
3. **Redis round trips** per request, from ``INFO commandstats`` over the timed rounds (``CONFIG
   RESETSTAT`` first): the commands clients sent, over the requests (expected 2: one ``EVALSHA`` to
   admit, one to settle). Commandstats counts the commands the scripts run inside Redis too; those are
   told apart by name (the scripts' ``redis.call`` commands) and reported as Redis's work per request.
   **Memory per active consumer**: 1,000 new consumers, one request each, limits on, straight on the
   stores: Redis's ``used_memory`` grows by what their keys take, a bare memory store's Python memory
   (``tracemalloc``) by its counters; and the same without limits, which leaves only the usage totals
   (rows per consumer and model, per minute for a day and per hour for ``usage_retention_days``). Then what the rest of the
   ext_proc keeps per new consumer (metric series), through a Gateway on the Redis store.
   **Admit against a consumer's last minute**: an admit with tokens per minute set reads a running token
   total (both stores keep it as charges enter and leave the window), so its cost should not grow with the
   consumer's traffic; it is timed with 0 to 3,000 charges in the window to show that;
   the report says how many the timed rounds' consumers had by the end (tens: :data:`POOL`).
4. **Leaks**: Python's allocated memory blocks (``sys.getallocatedblocks``, about one per object) after
   each timed batch against before it, per request, over all the timed rounds: a request should leave
   nothing behind but what the stores keep by design (the memory store's windows of the last minute, one
   entry per request admitted and per charge; its usage totals per minute). Then bytes, with
   ``tracemalloc``: for each configuration a new Gateway made under it (so what it keeps for long is
   traced from the start), warmed up, then followed over two equal stretches of requests: a leak grows as
   much in both, caches filling (CPython's own included) less in the second. What was allocated in
   ``extproc/limits/`` (the stores) is reported apart. Tracemalloc makes requests several times slower,
   so it follows hundreds of requests per configuration, the untraced count thousands.

Why in-process: the gateway's added latency end to end (Envoy, gRPC, the emulator) is measured by the parts
messages and chat, where tens of microseconds of metering drown in the round trips' noise. Here the
ext_proc's own work is isolated, so limits off against on, memory against Redis, compare to the
microsecond. Not included: the gRPC layer (protobuf messages, ``server.py``'s phase histogram), the same in
every configuration.
"""

from __future__ import annotations

import asyncio
import gc
import json
import re
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import botocore.session

from extproc import metrics
from extproc.bedrock.credentials import CredentialSource
from extproc.config import GatewayConfig, Limits, Settings
from extproc.gateway import Forward, Gateway, Reply, RequestState
from extproc.keys import KeyRing, hash_key
from extproc.limits import Store, redis_store
from extproc.limits.memory import MemoryStore
from extproc.usage import Usage

from .payload import BEDROCK_MODEL_ID, MESSAGES, PLAIN, REGION

CONFIGS = ("none", "memory", "redis")
LABELS = {"none": "(i) no limits", "memory": "(ii) limits, memory store", "redis": "(iii) limits, Redis store"}
LIMITS: dict[str, Any] = {"requests_per_minute": 1_000_000, "tokens_per_minute": 1_000_000_000,
                          "concurrent_requests": 100_000, "budget": {"usd_per_day": 1_000_000.0}}
"""Every kind of limit the stores check, far above what a run uses: nothing is ever refused."""
PHASES = ("request_headers", "admit", "request_body", "response", "finish", "after")
"""``response`` is response_headers and response_body; ``after`` follows the last answer of a batch: the
charges still in flight awaited, the records writer's queue emptied."""
PHASE_LABELS = {"request_headers": "request headers", "admit": "admit", "request_body": "request body",
                "response": "response", "finish": "finish", "after": "after: charges, records"}
POOL = 64
"""Consumers the timed requests go round, so that a consumer's last minute holds tens of requests, as a busy
real one would, not thousands (an admit reads the consumer's token log of the last minute whole)."""
HELD_POOL = 8
"""Consumers of the gateways whose memory is followed: few, so the warm-up makes what a gateway keeps per
consumer for all of them (their windows and usage totals are the stores', reported apart anyway)."""
ENDPOINT = f"https://bedrock-runtime.{REGION}.amazonaws.com"
MEASURING = frozenset({"config|resetstat", "info"})
"""Commands the bench sends itself, to read the statistics."""
CONNECTION = frozenset({"client|setinfo", "hello", "auth", "select", "ping"})
"""Commands a client sends once per new connection, not per request."""
LIMITS_DIR = "/extproc/limits/"
REDIS_TIMEOUT_SECONDS = 5.0
"""Instead of 0.25 s: on a loaded machine, and under tracemalloc, a call may wait longer for the loop, and a
timed-out call (limits failing open) would void the run; a call that succeeds costs the same."""
USAGE = Usage(input=271, output=24)
COST_USD = 0.000391


@dataclass(frozen=True)
class Sizes:
    rounds: int
    batch: int
    """Requests per configuration and round."""
    warmup: int
    """Requests per configuration before the timed rounds."""
    consumers: int
    """New consumers for the memory per active consumer, straight on the stores."""
    gateway_consumers: int
    """New consumers through a Gateway, under tracemalloc (slow: tracemalloc makes requests ~6 times slower)."""
    leak_warmup: int
    """Requests per configuration under tracemalloc before the first reading (what a gateway keeps per
    consumer, metric series for one, is made then)."""
    leak_requests: int
    """Requests per configuration under tracemalloc in each of the two stretches followed."""
    leak_batch: int
    """Requests per batch under tracemalloc: one size, so every reading follows the same ending."""
    windows: tuple[int, ...]
    """Charges in a consumer's last minute, for the admit timings."""
    window_samples: int


FULL = Sizes(rounds=9, batch=400, warmup=300, consumers=1000, gateway_consumers=200, leak_warmup=100,
             leak_requests=200, leak_batch=50, windows=(0, 100, 1000, 3000), window_samples=20)
QUICK = Sizes(rounds=3, batch=100, warmup=100, consumers=300, gateway_consumers=50, leak_warmup=30,
              leak_requests=60, leak_batch=30, windows=(0, 100, 1000), window_samples=10)


def script_commands() -> frozenset[str]:
    """The Redis commands the store's Lua scripts run (commandstats counts them besides the EVALSHA)."""
    source = redis_store._ADMIT + redis_store._SETTLE
    return frozenset(name.lower() for name in re.findall(r"redis\.call\('(\w+)'", source))


def backend_errors() -> float:
    """Limit checks and charges lost so far to an unreachable store (a run with any is void)."""
    return sum(sample.value for metric in metrics.LIMITS_BACKEND_ERRORS.collect() for sample in metric.samples
               if sample.name.endswith("_total"))


# -- one configuration, driven in-process ---------------------------------------------------------------


def _settings(backend: str, limited: bool, records: Path, redis_url: str,
              consumers: list[str]) -> tuple[Settings, list[str]]:
    keys = [f"gwk_bench_metering_{name}" for name in consumers]
    config = GatewayConfig.model_validate({
        "policies": {"default": {}, "limited": {"limits": LIMITS}},
        "consumers": {name: {"policy": "limited" if limited else "default", "key_sha256": hash_key(key)}
                      for name, key in zip(consumers, keys)},
        "limits": {"backend": backend, "redis_url": redis_url, "timeout_seconds": REDIS_TIMEOUT_SECONDS},
        "usage_records": {"stdout": False, "file": str(records)},
    })
    return Settings(config=config, region=REGION, endpoint_url=ENDPOINT, keys_file=None, redis_url=redis_url), keys


def _bedrock_answer(upstream_body: bytes) -> dict[str, Any]:
    """What the Bedrock emulator answers to InvokeModel with this body (as in the parts messages and chat)."""
    from bedrock_emulator import anthropic_input, markers, models, replies

    resolved = models.resolve(BEDROCK_MODEL_ID)
    assert resolved is not None
    prompt = anthropic_input.parse(anthropic_input.load_body(upstream_body), resolved.model)
    reply = replies.compose(prompt, resolved.model.base_id, markers.scan(prompt.all_text()))
    return replies.anthropic_message(reply, str(resolved.model.anthropic_name))


class Rig:
    """One Gateway configuration and the request it is sent, over and over."""

    def __init__(self, config: str, gateway: Gateway, keys: list[str], records: Path, tag: str) -> None:
        self.config = config
        self.label = LABELS[config]
        self.tag = tag
        """Prefix of request IDs, unique per rig."""
        self.gateway = gateway
        self.records = records
        self.sent = 0
        request = PLAIN[MESSAGES]
        self.body = request.client_body()
        self._headers = [{":method": "POST", ":path": request.client_path, ":scheme": "http",
                          ":authority": "gateway.example:10000", "content-type": "application/json",
                          "content-length": str(len(self.body)), "accept": "application/json",
                          "anthropic-version": "2023-06-01", "x-api-key": key, "user-agent": "Anthropic/Python 0.45.0",
                          "x-forwarded-proto": "http"} for key in keys]
        self.answer = b""
        self.answer_headers: dict[str, str] = {}

    async def prepare(self) -> None:
        """One request by hand, checked: forwarded, signed; its Bedrock body gives the emulator's answer."""
        state = RequestState()
        headers = {**self._headers[0], "x-request-id": f"{self.tag}-prepare"}
        first = self.gateway.request_headers(state, headers, False)
        refused = await self.gateway.admit(state) if state.limits is not None else None
        forward = self.gateway.request_body(state, self.body)
        if refused is not None or not isinstance(first, Forward) or not isinstance(forward, Forward):
            problem = next(r for r in (first, refused, forward) if isinstance(r, Reply))
            raise SystemExit(f"bench: metering, {self.label}: the request was refused: {problem.status} "
                             f"{problem.body[:500]!r}")
        if not forward.body or not dict(forward.set_headers).get("authorization", "").startswith("AWS4-HMAC-SHA256"):
            raise SystemExit(f"bench: metering, {self.label}: the request was not translated and signed")
        message = _bedrock_answer(forward.body)
        self.answer = json.dumps(message, separators=(",", ":")).encode()
        self.answer_headers = {
            ":status": "200", "content-type": "application/json", "content-length": str(len(self.answer)),
            "date": "Mon, 17 Nov 2025 10:00:00 GMT", "x-amzn-requestid": str(uuid.uuid4()),
            "x-amzn-bedrock-invocation-latency": "412",
            "x-amzn-bedrock-input-token-count": str(message["usage"]["input_tokens"]),
            "x-amzn-bedrock-output-token-count": str(message["usage"]["output_tokens"]),
            "x-envoy-upstream-service-time": "415",
        }
        self.gateway.response_headers(state, dict(self.answer_headers), False)
        self.gateway.response_body(state, self.answer, True)
        if state.usage.input == 0 or state.usage.output == 0:
            raise SystemExit(f"bench: metering: the emulator's answer carries no usage: {self.answer[:500]!r}")
        self.gateway.finish(state)
        self.sent += 1
        await self._settled()
        self.gateway.meter.records.start()

    async def _settled(self) -> None:
        """Every charge done and every record written (the writer thread ends; started again after timing)."""
        await self.gateway.limiter.drain()
        # Back to the loop once: its last callback (waking drain up) lets go of the charges' tasks only then.
        await asyncio.sleep(0)
        self.gateway.meter.records.close()

    async def batch(self, requests: int, consumers: Sequence[int] | None = None,
                    count_blocks: bool = False) -> dict[str, Any]:
        """``requests`` requests one after another, then their charges and records; wall and CPU seconds.

        The requests go round ``consumers`` (indexes), by default round all the rig's consumers. With
        ``count_blocks``, also the memory blocks Python has allocated more after the batch than before
        (a full garbage collection before each count, outside the timing).
        """
        gateway, body, answer, answer_headers = self.gateway, self.body, self.answer, self.answer_headers
        first = self.sent
        turn = consumers or range(len(self._headers))
        headers = [self._headers[turn[(n - first) % len(turn)]] for n in range(first, first + requests)]
        clock = time.perf_counter
        spent = [0.0] * len(PHASES)
        if count_blocks:
            gc.collect()
            blocks = sys.getallocatedblocks()
        cpu_start, start = time.process_time(), clock()
        for n, client_headers in enumerate(headers, first):
            state = RequestState()
            request_headers = {**client_headers, "x-request-id": f"{self.tag}-{n}"}
            t0 = clock()
            out = gateway.request_headers(state, request_headers, False)
            t1 = clock()
            refused = await gateway.admit(state) if state.limits is not None else None
            t2 = clock()
            forward = gateway.request_body(state, body)
            t3 = clock()
            gateway.response_headers(state, dict(answer_headers), False)
            result = gateway.response_body(state, answer, True)
            t4 = clock()
            gateway.finish(state)
            t5 = clock()
            spent[0] += t1 - t0
            spent[1] += t2 - t1
            spent[2] += t3 - t2
            spent[3] += t4 - t3
            spent[4] += t5 - t4
            if isinstance(out, Reply) or refused is not None or isinstance(forward, Reply) or isinstance(result, Reply):
                raise SystemExit(f"bench: metering, {self.label}: request {n} was refused or failed: "
                                 f"{state.status} {state.error}")
        answered = clock()
        await self._settled()
        end, cpu_end = clock(), time.process_time()
        self.gateway.meter.records.start()
        self.sent += requests
        spent[5] = end - answered
        run = {"config": self.config, "requests": requests, "wall_s": end - start, "cpu_s": cpu_end - cpu_start,
               "phases_s": dict(zip(PHASES, spent))}
        if count_blocks:
            if requests:
                del state, request_headers, out, refused, forward, result  # the last request's, held by this frame
            gc.collect()
            run["blocks_held"] = sys.getallocatedblocks() - blocks
        return run

    async def close(self) -> dict[str, int]:
        """Close the gateway (its charges and records finished): requests sent and usage records written."""
        await self.gateway.close()
        with self.records.open("rb") as lines:
            return {"requests": self.sent, "lines": sum(1 for _ in lines)}


async def credentials() -> CredentialSource:
    session = botocore.session.Session()
    session.set_credentials("AKIDBENCHMETERING000", "bench/metering/secret", "bench-metering-session-token")
    source = CredentialSource(session=session)
    await source.refresh()
    return source


async def make_rig(config: str, workdir: Path, redis_url: str, aws: CredentialSource, consumers: int = POOL,
                   tag: str = "") -> Rig:
    """A Gateway in configuration ``config`` (of :data:`CONFIGS`), its consumers named after ``tag``, its first
    request sent and checked."""
    tag = tag or config
    records = workdir / f"usage-{tag}.jsonl"
    names = [f"{tag}-{i}" for i in range(consumers)]
    settings, keys = _settings("redis" if config == "redis" else "memory", config != "none", records, redis_url,
                               names)
    rig = Rig(config, Gateway(settings, KeyRing.build(settings.config, None), aws), keys, records, tag)
    await rig.prepare()
    return rig


# -- the measurements ---------------------------------------------------------------------------------


def _commandstats(client: Any) -> dict[str, dict[str, int]]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): {"calls": v["calls"], "usec": v["usec"]} for name, v in stats.items()}


async def timed_rounds(rigs: dict[str, Rig], sizes: Sizes, redis_client: Any,
                       progress: Callable[[str], None]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Warm-up, then ``sizes.rounds`` rounds of a batch per configuration; Redis's commandstats over them."""
    for rig in rigs.values():
        await rig.batch(sizes.warmup)
    redis_client.config_resetstat()
    runs = []
    for round_no in range(1, sizes.rounds + 1):
        turn = round_no % len(rigs)
        names = list(rigs)
        for name in names[turn:] + names[:turn]:
            run = await rigs[name].batch(sizes.batch, count_blocks=True)
            run.update(round=round_no, ended_at=time.time())
            runs.append(run)
        mine = {r["config"]: r["wall_s"] * 1e6 / r["requests"] for r in runs if r["round"] == round_no}
        progress(f"metering: round {round_no}/{sizes.rounds}: "
                 + ", ".join(f"{LABELS[n]} {mine[n]:.0f} µs" for n in rigs))
    commands = {"requests": sum(r["requests"] for r in runs if r["config"] == "redis"),
                "commandstats": _commandstats(redis_client), "script_commands": sorted(script_commands())}
    return runs, commands


@contextmanager
def traced() -> Iterator[Callable[[], tuple[int, int]]]:
    """tracemalloc on; yields a reading: (bytes held now, of them allocated in extproc/limits/)."""
    tracemalloc.start(1)

    def held() -> tuple[int, int]:
        gc.collect()
        total = tracemalloc.get_traced_memory()[0]  # before the snapshot, which allocates
        snapshot = tracemalloc.take_snapshot()
        limits = sum(stat.size for stat in snapshot.statistics("filename")
                     if LIMITS_DIR in stat.traceback[0].filename.replace("\\", "/"))
        return total, limits

    try:
        yield held
    finally:
        tracemalloc.stop()


async def growth(config: str, sizes: Sizes, workdir: Path, redis_url: str,
                 aws: CredentialSource) -> tuple[dict[str, Any], dict[str, int]]:
    """Bytes held across two stretches of ``sizes.leak_requests`` requests each, by a gateway made under
    tracemalloc (what it keeps for long is traced from the start) and sent ``sizes.leak_warmup`` requests
    first; then its records count. A leak grows as much in both stretches; caches filling (CPython's own
    included) grow less in the second."""
    readings = []
    with traced() as held:
        rig = await make_rig(config, workdir, redis_url, aws, consumers=HELD_POOL, tag=f"{config}-held")
        for requests in (sizes.leak_warmup, sizes.leak_requests, sizes.leak_requests):
            done = 0
            while done < requests:  # batches of one size: each ends holding the same few things
                n = min(sizes.leak_batch, requests - done)
                await rig.batch(n)
                done += n
            readings.append(held())
    stretches = [{"held_bytes": after[0] - before[0], "limits_bytes": after[1] - before[1]}
                 for before, after in zip(readings, readings[1:])]
    return {"requests": sizes.leak_requests, "stretches": stretches}, await rig.close()


async def _new_consumers(store: Store, tag: str, count: int, limited: bool) -> None:
    """One request (admitted and settled) from each of ``count`` new consumers, a few at a time."""
    limits = Limits.model_validate(LIMITS) if limited else None

    async def one(i: int) -> None:
        consumer, request_id, now = f"{tag}-{i}", f"{tag}-request-{i}", time.time()
        if limits is not None:
            verdict = await store.admit(consumer, request_id, limits, now)
            assert verdict.allowed, verdict
        await store.settle(consumer, "haiku", request_id, limits, USAGE, COST_USD, now)

    for start in range(0, count, 8):
        await asyncio.gather(*(one(i) for i in range(start, min(count, start + 8))))


async def per_consumer(sizes: Sizes, redis_url: str, redis_client: Any, workdir: Path,
                       aws: CredentialSource) -> dict[str, Any]:
    """Memory per new consumer: the stores straight (limits on, then usage totals alone), then a Gateway's."""
    count = sizes.consumers
    out: dict[str, Any] = {"count": count, "gateway_count": sizes.gateway_consumers}
    for limited, kind in ((True, "limited"), (False, "usage_only")):
        store = MemoryStore()
        with traced() as held:
            before, _ = held()
            await _new_consumers(store, f"memory-{kind}", count, limited)
            after, _ = held()
        out[f"memory_{kind}_python_bytes"] = round((after - before) / count)
        redis = redis_store.RedisStore(redis_url, key_prefix=f"bench-{kind}:", timeout_seconds=REDIS_TIMEOUT_SECONDS,
                                       usage_retention_days=35)
        try:
            await _new_consumers(redis, "warm-up", 8, limited)  # scripts loaded, connections open
            before = redis_client.info("memory")["used_memory"]
            await _new_consumers(redis, f"redis-{kind}", count, limited)
            out[f"redis_{kind}_bytes"] = round((redis_client.info("memory")["used_memory"] - before) / count)
        finally:
            await redis.close()
    # What else the ext_proc keeps per consumer (metric series), on the Redis store, which keeps nothing in Python.
    with traced() as held:  # the gateway made under tracemalloc: what it keeps for long is traced from the start
        rig = await make_rig("redis", workdir, redis_url, aws, consumers=sizes.gateway_consumers + 1,
                             tag="new-consumer")
        await rig.batch(sizes.leak_warmup, consumers=[0])  # a known consumer first: the first traced stretch
        before, _ = held()
        await rig.batch(sizes.gateway_consumers, consumers=range(1, sizes.gateway_consumers + 1))
        after, _ = held()
    out["gateway_python_bytes"] = round((after - before) / sizes.gateway_consumers)
    out["records"] = await rig.close()
    return out


async def admit_by_window(store: Store, tag: str, windows: tuple[int, ...], samples: int) -> dict[str, float]:
    """Median µs of one admit, for a consumer with ``window`` charges in its last minute, per window size.

    The window is filled by settles (they add to the token log without reading it); each timed admit is
    followed by its settle (untimed); the token quota the admit reports shows the store saw the window.
    """
    limits = Limits.model_validate(LIMITS)
    tokens = sum(USAGE.as_dict().values())
    out = {}
    for window in windows:
        consumer = f"{tag}-window-{window}"
        for start in range(0, window, 8):
            now = time.time()
            await asyncio.gather(*(store.settle(consumer, "haiku", f"fill-{i}", limits, USAGE, COST_USD, now)
                                   for i in range(start, min(window, start + 8))))
        timings = []
        for k in range(samples):
            request_id, now = f"timed-{k}", time.time()
            started = time.perf_counter()
            verdict = await store.admit(consumer, request_id, limits, now)
            timings.append(time.perf_counter() - started)
            if not verdict.allowed or verdict.tokens is None or verdict.tokens.remaining != (
                    limits.tokens_per_minute - (window + k) * tokens):
                raise SystemExit(f"bench: metering, {tag} store: an admit after {window + k} charges saw {verdict}")
            await store.settle(consumer, "haiku", request_id, limits, USAGE, COST_USD, now)
        out[str(window)] = statistics.median(timings) * 1e6
    return out


def _redis_server() -> Any:
    try:
        from tests.redis_server import RedisServer
    except ImportError:  # started from elsewhere than the repository's root
        from devstack import ROOT

        sys.path.insert(0, str(ROOT))
        from tests.redis_server import RedisServer
    try:
        return RedisServer()
    except RuntimeError as exc:
        raise SystemExit(f"bench: metering needs a real redis-server: {exc}") from None


async def _measure(sizes: Sizes, redis_url: str, redis_client: Any, workdir: Path,
                   progress: Callable[[str], None]) -> dict[str, Any]:
    aws = await credentials()
    rigs = {name: await make_rig(name, workdir, redis_url, aws) for name in CONFIGS}
    progress(f"metering: {sizes.rounds} rounds of {sizes.batch} requests per configuration, interleaved")
    runs, commands = await timed_rounds(rigs, sizes, redis_client, progress)
    records = {name: await rig.close() for name, rig in rigs.items()}
    progress(f"metering: memory held across 2 × {sizes.leak_requests} requests per configuration (tracemalloc)")
    held = {}
    for name in CONFIGS:
        held[name], records[f"{name}, memory held"] = await growth(name, sizes, workdir, redis_url, aws)
    progress(f"metering: memory per new consumer ({sizes.consumers} on the stores, {sizes.gateway_consumers} "
             "through a gateway)")
    consumers = await per_consumer(sizes, redis_url, redis_client, workdir, aws)
    records["new consumers"] = consumers.pop("records")
    progress(f"metering: admit against charges in the consumer's last minute: {', '.join(map(str, sizes.windows))}")
    redis = redis_store.RedisStore(redis_url, key_prefix="bench-window:", timeout_seconds=REDIS_TIMEOUT_SECONDS,
                                   usage_retention_days=1)
    try:
        windows = {"memory": await admit_by_window(MemoryStore(), "memory", sizes.windows, sizes.window_samples),
                   "redis": await admit_by_window(redis, "redis", sizes.windows, sizes.window_samples)}
    finally:
        await redis.close()
    return {
        "sizes": asdict(sizes),
        "pool": POOL,
        "limits": LIMITS,
        "request_bytes": len(rigs["none"].body),
        "answer_bytes": len(rigs["none"].answer),
        "runs": runs,
        "redis_commands": commands,
        "growth": held,
        "consumers": consumers,
        "admit_us_by_window": windows,
        "records": records,
    }


def measure(quick: bool, progress: Callable[[str], None], sizes: Sizes | None = None) -> dict[str, Any]:
    """Everything above in a fresh event loop, on a redis-server of its own; raw figures for :func:`cells`."""
    sizes = sizes or (QUICK if quick else FULL)
    server = _redis_server()
    errors = backend_errors()
    # What exists now (modules, mostly) is left out of the full collections before each memory reading,
    # which then take milliseconds, not a tenth of a second.
    gc.collect()
    gc.freeze()
    try:
        with server, tempfile.TemporaryDirectory(prefix="bench-metering-") as workdir:
            with server.client() as client:
                results = asyncio.run(_measure(sizes, server.url, client, Path(workdir), progress))
    finally:
        gc.unfreeze()
    if backend_errors() != errors:
        raise SystemExit(f"bench: metering: {backend_errors() - errors:g} limit checks or charges could not reach "
                         "the store (timed out?): these would not be the figures of working limits")
    for name, written in results["records"].items():
        if written["lines"] != written["requests"]:
            raise SystemExit(f"bench: metering, {name}: {written['requests']} requests but {written['lines']} "
                             "usage records written")
    return results


# -- figures ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MeterCell:
    config: str
    label: str
    rounds: int
    requests: int
    wall_us: float
    """Median over rounds of a batch's wall time per request."""
    cpu_us: float
    phases_us: dict[str, float]
    """Per phase, the median over rounds of µs per request."""


def cells(results: dict[str, Any]) -> list[MeterCell]:
    out = []
    for name in CONFIGS:
        mine = [r for r in results["runs"] if r["config"] == name]
        out.append(MeterCell(
            name, LABELS[name], len(mine), sum(r["requests"] for r in mine),
            statistics.median(r["wall_s"] * 1e6 / r["requests"] for r in mine),
            statistics.median(r["cpu_s"] * 1e6 / r["requests"] for r in mine),
            {phase: statistics.median(r["phases_s"][phase] * 1e6 / r["requests"] for r in mine) for phase in PHASES},
        ))
    return out


def round_trips(commands: dict[str, Any]) -> dict[str, Any]:
    """Per request: the commands clients sent (round trips), by name; those the scripts ran; Redis's time."""
    requests, stats = commands["requests"], commands["commandstats"]
    scripted = set(commands["script_commands"])
    sent = {name: s["calls"] / requests for name, s in stats.items()
            if name not in scripted | MEASURING | CONNECTION}
    return {
        "requests": requests,
        "round_trips_per_request": sum(sent.values()),
        "sent_per_request": sent,
        "script_commands_per_request": sum(s["calls"] for n, s in stats.items() if n in scripted) / requests,
        "connection_commands": sum(s["calls"] for n, s in stats.items() if n in CONNECTION),
        "redis_us_per_request": sum(s["usec"] for n, s in stats.items() if n not in MEASURING) / requests,
    }


def blocks_kept(results: dict[str, Any]) -> dict[str, float]:
    """Per configuration: memory blocks Python still had allocated after its timed batches, per request."""
    out = {}
    for name in CONFIGS:
        mine = [r for r in results["runs"] if r["config"] == name]
        out[name] = sum(r["blocks_held"] for r in mine) / sum(r["requests"] for r in mine)
    return out


def window_at_end(results: dict[str, Any], config: str = "redis") -> float:
    """About how many charges a consumer's last minute held at the end of the timed rounds (``config``'s)."""
    mine = [r for r in results["runs"] if r["config"] == config]
    end = max(r["ended_at"] for r in mine)
    recent = sum(r["requests"] for r in mine if r["ended_at"] > end - 60)
    if min(r["ended_at"] for r in mine) > end - 60:  # the warm-up too was less than a minute before
        recent += results["sizes"]["warmup"]
    return recent / results["pool"]


ROWS_KEPT = 24 * 60 + 35 * 24
"""Usage rows a consumer and model busy every minute keeps: per minute for a day, then per hour for
``limits.usage_retention_days`` (35 by default). A new consumer's first request writes one of each."""


def summary(table: list[MeterCell], results: dict[str, Any]) -> dict[str, Any]:
    by = {c.config: c for c in table}
    base = by["none"]
    trips = round_trips(results["redis_commands"])
    consumers = results["consumers"]
    return {
        "wall_us_per_request": {c.config: c.wall_us for c in table},
        "cpu_us_per_request": {c.config: c.cpu_us for c in table},
        "wall_over_none": {c.config: c.wall_us / base.wall_us for c in table},
        "cpu_over_none": {c.config: c.cpu_us / base.cpu_us for c in table},
        "finish_us": {c.config: c.phases_us["finish"] for c in table},
        "finish_share": {c.config: c.phases_us["finish"] / c.wall_us for c in table},
        "metering_share": {c.config: (c.phases_us["finish"] + c.phases_us["after"]) / c.wall_us for c in table},
        "redis_round_trips_per_request": trips["round_trips_per_request"],
        "redis_sent_per_request": trips["sent_per_request"],
        "redis_script_commands_per_request": trips["script_commands_per_request"],
        "redis_us_per_request": trips["redis_us_per_request"],
        "redis_bytes_per_consumer": consumers["redis_limited_bytes"],
        "memory_store_bytes_per_consumer": consumers["memory_limited_python_bytes"],
        "usage_row_bytes": {"memory": consumers["memory_usage_only_python_bytes"],
                            "redis": consumers["redis_usage_only_bytes"]},
        "gateway_bytes_per_consumer": consumers["gateway_python_bytes"],
        "admit_us_by_window": results["admit_us_by_window"],
        "charges_per_consumer_minute_at_end": window_at_end(results),
        "blocks_kept_per_request": blocks_kept(results),
        "held_bytes_per_request": {n: [st["held_bytes"] / g["requests"] for st in g["stretches"]]
                                   for n, g in results["growth"].items()},
        "held_outside_limits_bytes_per_request": {
            n: [(st["held_bytes"] - st["limits_bytes"]) / g["requests"] for st in g["stretches"]]
            for n, g in results["growth"].items()},
    }


def _us(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 10 else f"{value:.1f}"


def _size(size: float) -> str:
    return f"{size / 1024:.1f} KiB" if abs(size) >= 10_240 else f"{size:.0f} B"


def markdown(table: list[MeterCell], results: dict[str, Any]) -> str:
    s = summary(table, results)
    sizes, consumers = results["sizes"], results["consumers"]
    trips = round_trips(results["redis_commands"])
    lines = ["### Metering and limits: ext_proc cost per request (in-process)", "",
             f"The gateway's decisions for one non-streaming `/v1/messages` request ({results['request_bytes']} B "
             f"body, the emulator's {results['answer_bytes']} B answer with usage) on a Gateway object in an "
             "asyncio loop, no Envoy or gRPC; default guardrail policy on; usage records written to a file; "
             f"{results['pool']} consumers in turn; each batch awaits its charges and records. Median over "
             f"{sizes['rounds']} interleaved rounds of {sizes['batch']} requests, µs per request; phases in wall "
             "time; CPU is this process's, writer thread included (not redis-server's).", "",
             "| configuration | wall µs | CPU µs | wall × (i) | CPU × (i) | "
             + " | ".join(PHASE_LABELS[p] for p in PHASES) + " | metering share |",
             "| --- | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in PHASES) + " | ---: |"]
    for c in table:
        lines.append(f"| {c.label} | {_us(c.wall_us)} | {_us(c.cpu_us)} | {s['wall_over_none'][c.config]:.2f} "
                     f"| {s['cpu_over_none'][c.config]:.2f} | " + " | ".join(_us(c.phases_us[p]) for p in PHASES)
                     + f" | {s['metering_share'][c.config]:.0%} |")
    sent = ", ".join(f"{n.upper()} {v:g}" for n, v in sorted(trips["sent_per_request"].items()))
    windows = results["admit_us_by_window"]
    row_redis, row_memory = consumers["redis_usage_only_bytes"], consumers["memory_usage_only_python_bytes"]
    lines += ["",
              "Metering share: finish (Meter.finish: metrics, the usage record queued, the charge scheduled) plus "
              "what follows the answers (charges awaited, records written), over the whole; with Redis, charges "
              "also run while later requests await their admit. An admit's cost grows with the consumer's charges "
              f"of the last minute (table below): by the last round each consumer had about "
              f"{window_at_end(results):.0f}.", "",
              f"- Redis round trips per request: **{trips['round_trips_per_request']:g}** ({sent}) over "
              f"{trips['requests']} requests; {trips['script_commands_per_request']:.1f} commands run inside the "
              f"scripts per request; Redis's own time {trips['redis_us_per_request']:.0f} µs per request"
              + (f"; {trips['connection_commands']} connection set-up commands" if trips["connection_commands"]
                 else "") + ".",
              f"- Memory per new consumer with limits ({consumers['count']} consumers, one request each): Redis "
              f"{_size(consumers['redis_limited_bytes'])} (`used_memory`); memory store "
              f"{_size(consumers['memory_limited_python_bytes'])} of Python (tracemalloc). Of that, the usage totals "
              f"of a new consumer and model (a minute row and an hour row): {_size(row_redis)} in Redis, "
              f"{_size(row_memory)} in the memory store; a consumer and model busy every minute keeps 1,440 minute "
              "rows (the last day) and 840 hour rows (35 days): "
              f"{row_redis / 2 * ROWS_KEPT / 2**20:.1f} MiB in Redis, {row_memory / 2 * ROWS_KEPT / 2**20:.1f} "
              "MiB in the memory store. "
              f"The rest of the ext_proc (metric series): {_size(consumers['gateway_python_bytes'])} per consumer "
              f"({consumers['gateway_count']} through a gateway).",
              "", "Admit with tokens per minute set, against the charges in the consumer's last minute (median µs "
              f"of {sizes['window_samples']}; the stores keep a running total, so this should stay flat):", "",
              "| store | " + " | ".join(f"{int(w):,} charges" for w in windows["memory"]) + " |",
              "| --- | " + " | ".join("---:" for _ in windows["memory"]) + " |"]
    for store, label in (("memory", "memory"), ("redis", "Redis")):
        lines.append(f"| {label} | " + " | ".join(_us(v) for v in windows[store].values()) + " |")
    kept = blocks_kept(results)
    timed = {c.config: c.requests for c in table}
    lines += ["", "Memory kept, per request: Python's allocated blocks (`sys.getallocatedblocks`, about one per "
              "object) after each timed batch against before it, over all the timed rounds (untraced, full "
              f"collections around); then tracemalloc, in two stretches of {sizes['leak_requests']} requests each "
              f"after {sizes['leak_warmup']} ones, on gateways made under it. Growth that is the same in both "
              "stretches would be a leak; growth that falls is caches filling (CPython's own among them). "
              "extproc/limits/ is what the stores keep by design: the memory store's windows of the last minute "
              "and usage totals per minute.", "",
              "| configuration | blocks kept per request (timed rounds) | 1st stretch B/request: elsewhere "
              "| in extproc/limits/ | 2nd stretch B/request: elsewhere | in extproc/limits/ |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name in CONFIGS:
        g = results["growth"][name]
        cells_ = []
        for st in g["stretches"]:
            cells_ += [f"{(st['held_bytes'] - st['limits_bytes']) / g['requests']:.1f}",
                       f"{st['limits_bytes'] / g['requests']:.1f}"]
        lines.append(f"| {LABELS[name]} | {kept[name]:.2f} ({timed[name]} requests) | " + " | ".join(cells_) + " |")
    return "\n".join(lines)
