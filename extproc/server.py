"""The ext_proc gRPC server: a thin adapter from Envoy's phases to :mod:`extproc.gateway`.

One gRPC stream is one HTTP request; its :class:`RequestState` lives in the
``Process`` coroutine. grpc.aio is used because a do-nothing aio processor
measured about 3× faster than a thread-pool ``grpc.server`` at concurrency 16
(wire-formats §8). Message size limits are raised on both sides so a 10 MB
body fits in one BUFFERED message (gRPC's default cap is 4 MB).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path
from collections.abc import AsyncIterator

import grpc
from envoy.config.core.v3.base_pb2 import HeaderValueOption
from google.protobuf.duration_pb2 import Duration
from envoy.extensions.filters.http.ext_proc.v3.processing_mode_pb2 import ProcessingMode
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from .errors import GatewayError, Kind
from .metrics import PHASE_DURATION, bound
from .admin import admin_server
from .metrics_http import MetricsServer
from .workers import READY_FILE_VARIABLE
from .gateway import Forward, Gateway, Reply, RequestState

log = logging.getLogger("extproc.server")

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Above Envoy's 32 MiB request buffer (envoy.yaml), so Envoy's 413 is what a client meets first."""

OFFLOAD_BYTES = 256 * 1024
"""Request bodies above this are handled on a worker thread, with a longer message timeout."""

FINISH_BATCH_SECONDS = 0.05
"""How long a finished request waits to be metered and recorded together with the others finished meanwhile.

Run the moment its stream closed, a request's ``finish`` (metrics, usage record, usage
totals, phase timings) ran just as the client's next request arrived, and ran cold,
one request at a time between gRPC's own work. Batched, it runs between requests and
warm: in one interleaved run of the bench's set-ups (5 rounds of 4 s), against finishing
at once, the gateway's added latency over Envoy alone fell by 4% at concurrency 1 and at
16. Records already reach their file up to ``records.FLUSH_SECONDS`` late; this adds at
most this much, to them and to the metrics."""

_MORE_TIME = pb.ProcessingResponse(override_message_timeout=Duration(seconds=60))
"""Envoy caps it at ``max_message_timeout`` in envoy.yaml."""

_OVERWRITE = HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD


def headers_of(message: pb.HttpHeaders) -> dict[str, str]:
    """Envoy's header list as a dict of lowercase names; repeated headers joined with ','.

    Envoy sends names in lowercase and values in ``raw_value``; the common case
    (no repeated name) is one comprehension, the rest takes the slow path.
    """
    entries = message.headers.headers
    headers = {header.key.lower(): header.raw_value.decode("utf-8", "replace") if header.raw_value else header.value
               for header in entries}
    if len(headers) == len(entries):
        return headers
    headers = {}
    for header in entries:
        value = header.raw_value.decode("utf-8", "replace") if header.raw_value else header.value
        name = header.key.lower()
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


def _fill_mutation(mutation: pb.HeaderMutation, set_headers: list[tuple[str, str]], remove: list[str]) -> None:
    """Write header changes straight into ``mutation`` (no intermediate messages to copy)."""
    add = mutation.set_headers.add
    for key, value in set_headers:
        header = add(append_action=_OVERWRITE).header  # each attribute reached once: upb lookups cost
        header.key = key
        header.raw_value = value.encode()
    if remove:
        mutation.remove_headers.extend(remove)


METADATA_NAMESPACE = "bedrock_gateway"
"""Where the access log reads consumer, route and model (envoy.yaml ``metadata_options``): a namespace
of our own, because Envoy Gateway refuses writes to ``envoy.filters.http.*`` namespaces."""


PHASES = ("request_headers", "request_body", "response_headers", "response_body", "request_trailers",
          "response_trailers")


def _empty_response(phase: str) -> pb.ProcessingResponse:
    response = pb.ProcessingResponse()
    getattr(response, phase).SetInParent()  # an empty answer must still name its phase
    return response


_UNCHANGED = {phase: _empty_response(phase) for phase in PHASES}
""""Go on unchanged", per phase: most answers (a streamed chunk relayed, an answer passed as it came) are
this, so it is built once. Never mutated: grpc only serializes what is yielded."""


def to_response(phase: str, result: Forward | Reply) -> pb.ProcessingResponse:
    """Wrap a gateway decision in the ProcessingResponse for ``phase``, built in place."""
    if isinstance(result, Forward) and result.is_noop:
        return _UNCHANGED[phase]
    response = pb.ProcessingResponse()
    if result.metadata:
        fields = response.dynamic_metadata.fields[METADATA_NAMESPACE].struct_value.fields
        for key, value in result.metadata.items():
            fields[key].string_value = value
    if isinstance(result, Reply):
        immediate = response.immediate_response
        immediate.status.code = result.status  # type: ignore[assignment]
        _fill_mutation(immediate.headers, result.headers, [])
        immediate.body = result.body
        immediate.details = "gateway_reply"
        return response
    if phase.endswith("trailers"):
        getattr(response, phase).SetInParent()  # TrailersResponse has no CommonResponse
        return response
    common = getattr(response, phase).response
    if result.set_headers or result.remove_headers:
        _fill_mutation(common.header_mutation, result.set_headers, result.remove_headers)
    if result.body is not None:
        common.body_mutation.body = result.body
    if result.clear_route_cache:
        common.clear_route_cache = True
    if result.stream_response:
        response.mode_override.response_body_mode = ProcessingMode.STREAMED
    if not common.ListFields():
        getattr(response, phase).SetInParent()  # an empty answer must still name its phase
    return response


Timings = list[tuple[str, float]]
"""A stream's phase durations, to be observed when it is finished."""


class Processor(pb_grpc.ExternalProcessorServicer):
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.open_streams = 0
        self._all_closed = asyncio.Event()
        self._all_closed.set()
        self._finished: list[tuple[RequestState, Timings]] = []
        self._batch: asyncio.TimerHandle | None = None

    def _finish(self, state: RequestState, timings: Timings) -> None:
        """A stream closed: what cannot wait now (``Gateway.closed``), the rest with the next batch."""
        self.gateway.closed(state)
        self._finished.append((state, timings))
        if self._batch is None:
            self._batch = asyncio.get_running_loop().call_later(FINISH_BATCH_SECONDS, self.finish_batch)

    def finish_batch(self) -> None:
        """Finish every request queued by :meth:`_finish` (the timer's job; shutdown calls it last).

        One request whose finishing fails is logged and does not cost the others their records.
        """
        if self._batch is not None:
            self._batch.cancel()
            self._batch = None
        batch, self._finished = self._finished, []
        for state, timings in batch:
            try:
                self._observe(timings)
                self.gateway.finish(state)
            except Exception:
                log.exception("finishing a request failed", extra={"request_id": state.request_id})

    @staticmethod
    def _observe(timings: Timings) -> None:
        for phase, seconds in timings:
            bound(PHASE_DURATION, phase).observe(seconds)

    async def wait_closed(self, timeout: float) -> None:
        """Until every stream has run its ``finally`` (finished, or queued for :meth:`finish_batch`), or ``timeout``.

        ``server.stop(grace)`` cancels what is still running when the grace ends and
        returns before the cancelled handlers have finished: their records must still
        be written before the writer closes.
        """
        try:
            await asyncio.wait_for(self._all_closed.wait(), timeout)
        except TimeoutError:
            log.error("streams still open after shutdown", extra={"streams": self.open_streams})

    def _decide(self, state: RequestState, phase: str, request: pb.ProcessingRequest) -> Forward | Reply:
        gateway = self.gateway
        if phase == "request_headers":
            message = request.request_headers
            return gateway.request_headers(state, headers_of(message), message.end_of_stream)
        if phase == "request_body":
            return gateway.request_body(state, request.request_body.body)
        if phase == "response_headers":
            message = request.response_headers
            return gateway.response_headers(state, headers_of(message), message.end_of_stream)
        if phase == "response_body":
            message = request.response_body
            return gateway.response_body(state, message.body, message.end_of_stream)
        return Forward()  # trailers: envoy.yaml skips them; if they come, they pass unchanged

    async def Process(  # noqa: N802 - gRPC method name
        self, request_iterator: AsyncIterator[pb.ProcessingRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ProcessingResponse]:
        state = RequestState()
        timings: Timings = []
        self.open_streams += 1
        self._all_closed.clear()
        try:
            async for request in request_iterator:
                phase = request.WhichOneof("request")
                try:
                    started = time.perf_counter()
                    if phase == "request_body" and len(request.request_body.body) > OFFLOAD_BYTES:
                        # Parsing, inspecting, translating and signing megabytes takes a while:
                        # ask Envoy for more time for this one message (up to its
                        # max_message_timeout), and work on a thread so the loop keeps
                        # serving health checks and other requests meanwhile.
                        yield _MORE_TIME
                        result = await asyncio.to_thread(self._decide, state, phase, request)
                    else:
                        result = self._decide(state, phase, request)
                    timings.append((phase, time.perf_counter() - started))
                    if state.limits is not None and phase == "request_headers" and isinstance(result, Forward):
                        result = await self.gateway.admit(state) or result
                except GatewayError as exc:
                    result = self.gateway.reject(state, exc)
                except Exception:
                    log.exception("unexpected error", extra={"request_id": state.request_id, "phase": phase})
                    result = self.gateway.reject(state, GatewayError(500, Kind.UPSTREAM, "internal gateway error"))
                yield to_response(phase, result)
                if isinstance(result, Reply):
                    return
        finally:
            try:
                self._finish(state, timings)
            finally:  # counted as closed even if finishing failed: shutdown must not wait for it
                self.open_streams -= 1
                if not self.open_streams:
                    self._all_closed.set()


async def serve(gateway: Gateway, listen: str, metrics_listen: str | None, grace_seconds: float,
                drain_delay_seconds: float = 0.0, *, reuse_port: bool = False) -> None:
    """Serve until SIGTERM/SIGINT, then drain: report NOT_SERVING, keep serving for
    ``drain_delay_seconds`` (SIGTERM only: time for Envoy's health check and the load
    balancer to stop sending), refuse new streams, finish in-flight ones, write the
    last records and charges, exit. SIGHUP reloads keys and configuration.

    A worker of ``--workers N`` passes ``reuse_port`` (every worker binds the same
    port) and no ``metrics_listen`` (the supervisor serves the workers' sum).
    """
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 1 if reuse_port else 0),
        ]
    )
    processor = Processor(gateway)
    pb_grpc.add_ExternalProcessorServicer_to_server(processor, server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    server.add_insecure_port(listen)
    metrics_server = MetricsServer(metrics_listen).start() if metrics_listen else None
    admin = None if reuse_port else admin_server(gateway.settings, gateway.limiter.store, gateway.reload)

    await gateway.credentials.start()
    if admin:
        await admin.start()
    await server.start()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    if metrics_server:
        metrics_server.serving.set()
    if ready_file := os.environ.get(READY_FILE_VARIABLE):
        Path(ready_file).touch()  # a worker of --workers N: tells the supervisor it serves
    log.info(
        "extproc serving",
        extra={"listen": listen, "metrics": metrics_listen, "upstream": gateway.endpoint.url(""),
               "region": gateway.settings.region, "keys": len(gateway.keys)},
    )

    stop = asyncio.Event()
    received: list[signal.Signals] = []
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda sig=sig: (received.append(sig), stop.set()))
    reloads: set[asyncio.Task[object]] = set()
    loop.add_signal_handler(signal.SIGHUP, lambda: reloads.add(loop.create_task(gateway.reload())))
    await stop.wait()

    delay = drain_delay_seconds if received[0] is signal.SIGTERM else 0.0
    log.info("extproc draining", extra={"grace_seconds": grace_seconds, "drain_delay_seconds": delay})
    if metrics_server:
        metrics_server.serving.clear()
    await health.enter_graceful_shutdown()
    await asyncio.sleep(delay)
    await server.stop(grace_seconds)
    await processor.wait_closed(timeout=5)
    processor.finish_batch()
    if admin:
        await admin.stop()
    await gateway.close()
    await gateway.credentials.stop()
    if metrics_server:
        metrics_server.stop()
    log.info("extproc stopped")
