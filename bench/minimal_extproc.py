"""Set-up (m), with ``--floor``: the least work any Bedrock gateway's ext_proc must do in Python.

Why it exists: the gateway's added latency is judged against the no-op's (b).
This processor answers the question that ratio leaves open: how much of the
1.3× allowance does the *unavoidable* work take, before any of the gateway's
features? For a non-streaming ``/v1/messages`` request it does only:

- request headers: read them into a dict and look the ``x-api-key`` up by its
  SHA-256 digest (a 401 for anything else);
- request body: parse it (orjson), put the model's Bedrock ID in the path, drop
  ``model`` and ``stream``, add ``anthropic_version``, serialize, sign with the
  gateway's own SigV4 signer, and answer the gateway's header and body
  mutation (path, authority, routing header, signature; client headers removed;
  route cache cleared);
- response body: parse the answer and read its token usage.

No guardrails, policy, limits, metrics, usage records, error mapping, model
checks or streaming: it is a floor, never a gateway. It runs on the no-op's
grpc.aio server (:func:`bench.noop_extproc.serve`) and sends the emulator the
same request as the gateway (``python -m bench`` checks that first).

Configured from the environment like the extproc (``AWS_*``, with
``GATEWAY_CONFIG`` for the catalogue) plus ``BENCH_MINIMAL_KEY``, the one key
it accepts. Run: ``python -m bench.minimal_extproc --listen 127.0.0.1:50062``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import os
from collections.abc import AsyncIterator

import botocore.session
import grpc
import orjson
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc

from extproc.bedrock.catalogue import Catalogue
from extproc.bedrock.endpoint import ROUTING_HEADER, Endpoint
from extproc.bedrock.sigv4 import sign
from extproc.config import load_settings
from extproc.gateway import FORWARDED_HEADERS, Forward, model_path
from extproc.server import to_response
from extproc.translate.anthropic_invoke import BEDROCK_ANTHROPIC_VERSION

from .noop_extproc import empty_response, serve

KEY_VARIABLE = "BENCH_MINIMAL_KEY"


class MinimalProcessor(pb_grpc.ExternalProcessorServicer):
    def __init__(self, key: str) -> None:
        settings = load_settings()
        self._digest = hashlib.sha256(key.encode()).digest()
        self._catalogue = Catalogue(settings.config.models)
        self._endpoint = Endpoint.from_url(settings.endpoint_url)
        self._region = settings.region
        credentials = botocore.session.Session().get_credentials()
        if credentials is None:
            raise SystemExit("bench.minimal_extproc: no AWS credentials in the environment")
        self._credentials = credentials.get_frozen_credentials()

    def _unauthorized(self, headers: dict[str, str]) -> bool:
        return hashlib.sha256(headers.get("x-api-key", "").encode()).digest() != self._digest

    def _to_bedrock(self, headers: dict[str, str], raw: bytes) -> pb.ProcessingResponse:
        body = orjson.loads(raw)
        model = self._catalogue.resolve(body.pop("model"))
        if model is None:
            raise ValueError("unknown model")
        body.pop("stream", None)
        body["anthropic_version"] = BEDROCK_ANTHROPIC_VERSION
        upstream = orjson.dumps(body)
        path = model_path(model.bedrock_id, "invoke")
        endpoint = self._endpoint
        signed = sign(method="POST", url=endpoint.url(path), body=upstream,
                      headers=[("host", endpoint.authority), ("content-type", "application/json")],
                      credentials=self._credentials, region=self._region)
        signed.pop("host")
        set_headers = [(":path", path), (":authority", endpoint.authority), ("content-length", str(len(upstream))),
                       ("accept", "application/json"), (ROUTING_HEADER, endpoint.routing), *signed.items()]
        replaced = {name for name, _ in set_headers}
        return to_response("request_body", Forward(
            set_headers=set_headers, body=upstream, clear_route_cache=True,
            remove_headers=[name for name in headers
                            if name[0] != ":" and name not in FORWARDED_HEADERS and name not in replaced]))

    async def Process(  # noqa: N802 - gRPC method name
        self, request_iterator: AsyncIterator[pb.ProcessingRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ProcessingResponse]:
        headers: dict[str, str] = {}
        async for request in request_iterator:
            phase = request.WhichOneof("request")
            if phase == "request_headers":
                headers = {h.key: h.raw_value.decode() for h in request.request_headers.headers.headers}
                if self._unauthorized(headers):
                    refusal = pb.ProcessingResponse()
                    refusal.immediate_response.status.code = 401  # type: ignore[assignment]
                    yield refusal
                    return
                yield empty_response(phase)
            elif phase == "request_body":
                yield self._to_bedrock(headers, request.request_body.body)
            else:
                if phase == "response_body":
                    usage = orjson.loads(request.response_body.body).get("usage", {})
                    usage.get("input_tokens"), usage.get("output_tokens")
                yield empty_response(phase)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.minimal_extproc", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:50062", help="host:port for gRPC (default 127.0.0.1:50062)")
    args = parser.parse_args(argv)
    key = os.environ.get(KEY_VARIABLE)
    if not key:
        parser.error(f"{KEY_VARIABLE} must hold the API key to accept")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(serve(args.listen, MinimalProcessor(key)))


if __name__ == "__main__":
    main()
