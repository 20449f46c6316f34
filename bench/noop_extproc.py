"""A do-nothing ext_proc: the baseline cost of Envoy talking to a Python grpc.aio processor.

Set-up (b) runs Envoy's real envoy.yaml against this service, so (b) − (a)
is what four gRPC round trips per request cost with no work done in them,
and the gateway's own added latency can be judged against it. To be a fair
floor it differs from ``extproc/server.py`` only in doing nothing: same
grpc.aio server, same channel options, same health service (Envoy's active
gRPC health check gates ``/health``), and an empty response of the matching
type built for every phase, as any processor has to.

Streamed answers are compared STREAMED against STREAMED: like the gateway,
the no-op answers the response headers of an event stream
(``application/vnd.amazon.eventstream``) with ``mode_override``
``response_body_mode: STREAMED``, so that Envoy then sends it one message per
body chunk as it arrives (each answered with an empty BodyResponse) instead of
buffering the whole body. That is the one look it takes at anything: the
``content-type`` response header.

Run: ``python -m bench.noop_extproc --listen 127.0.0.1:50061``; SIGTERM or
SIGINT stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import AsyncIterator

import grpc
from envoy.extensions.filters.http.ext_proc.v3.processing_mode_pb2 import ProcessingMode
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from extproc.server import MAX_MESSAGE_BYTES

log = logging.getLogger("bench.noop_extproc")

EVENT_STREAM = b"application/vnd.amazon.eventstream"


def empty_response(phase: str | None) -> pb.ProcessingResponse:
    """The response to ``phase`` that lets the request go on unchanged."""
    if phase in ("request_headers", "response_headers"):
        return pb.ProcessingResponse(**{phase: pb.HeadersResponse(response=pb.CommonResponse())})
    if phase in ("request_body", "response_body"):
        return pb.ProcessingResponse(**{phase: pb.BodyResponse(response=pb.CommonResponse())})
    if phase in ("request_trailers", "response_trailers"):  # not requested by envoy.yaml
        return pb.ProcessingResponse(**{phase: pb.TrailersResponse()})
    raise ValueError(f"unknown ext_proc phase {phase!r}")


def is_event_stream(message: pb.HttpHeaders) -> bool:
    """Whether response headers announce an AWS event stream (Envoy sends header names in lowercase)."""
    for header in message.headers.headers:
        if header.key == "content-type":
            return (header.raw_value or header.value.encode()).startswith(EVENT_STREAM)
    return False


class NoopProcessor(pb_grpc.ExternalProcessorServicer):
    async def Process(  # noqa: N802 - gRPC method name
        self, request_iterator: AsyncIterator[pb.ProcessingRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ProcessingResponse]:
        async for request in request_iterator:
            phase = request.WhichOneof("request")
            response = empty_response(phase)
            if phase == "response_headers" and is_event_stream(request.response_headers):
                response.mode_override.response_body_mode = ProcessingMode.STREAMED
            yield response


async def serve(listen: str, processor: pb_grpc.ExternalProcessorServicer | None = None) -> None:
    """Serve ``processor`` (the no-op by default) until SIGTERM/SIGINT, on the server the gateway uses."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ]
    )
    pb_grpc.add_ExternalProcessorServicer_to_server(processor or NoopProcessor(), server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    server.add_insecure_port(listen)
    await server.start()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    log.info("%s serving on %s", type(processor or NoopProcessor()).__name__, listen)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await health.enter_graceful_shutdown()
    await server.stop(1.0)
    log.info("ext_proc on %s stopped", listen)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.noop_extproc", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:50061", help="host:port for gRPC (default 127.0.0.1:50061)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(serve(args.listen))


if __name__ == "__main__":
    main()
