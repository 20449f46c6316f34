"""The admin gRPC API (``protos/bedrock_gateway/admin/v1/admin.proto``): usage totals and reload.

It has a port of its own (``admin.listen``, localhost by default) so that it
is never reachable through Envoy or the ext_proc port, and it exists only when
an admin token is configured. Every call must carry ``authorization: Bearer
<token>``; an interceptor checks it, in constant time, before any method runs,
so a method added later cannot forget to. The token is never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import NoReturn, Protocol

import grpc

from ._proto.bedrock_gateway.admin.v1 import admin_pb2 as pb
from ._proto.bedrock_gateway.admin.v1 import admin_pb2_grpc as pb_grpc
from .config import Settings
from .limits import Store, StoreUnavailable, UsageRow

log = logging.getLogger("extproc.admin")


class ReloadResult(Protocol):
    """What a reload did, as ``Control.Reload`` answers it (:class:`extproc.gateway.Reloaded` is one)."""

    @property
    def ok(self) -> bool:
        """True when the new configuration and keys are in effect."""

    @property
    def message(self) -> str:
        """For a person; on failure, what is wrong and where (never a secret)."""

    @property
    def consumers(self) -> int:
        """Consumers in the configuration in effect afterwards."""

    @property
    def keys(self) -> int:
        """Keys accepted afterwards."""

    @property
    def source(self) -> str:
        """Where the configuration in effect came from (the GATEWAY_CONFIG path, or that defaults are in use)."""


Reload = Callable[[], Awaitable[ReloadResult]]
"""Re-read configuration and keys and swap them in (``Gateway.reload``; SIGHUP runs the same).

A configuration that does not validate is reported with ``ok`` false (the
gateway keeps what it had), not raised.
"""


class _RequireToken(grpc.aio.ServerInterceptor):
    """Refuses, with UNAUTHENTICATED, every call whose ``authorization`` is not ``Bearer <token>``."""

    def __init__(self, token: str) -> None:
        self._expected = self._digest(f"Bearer {token}")
        self._deny = grpc.unary_unary_rpc_method_handler(self._refuse)

    @staticmethod
    def _digest(authorization: str) -> bytes:
        """Equal-length digests, so the comparison does not reveal the token's length either."""
        return hashlib.sha256(authorization.encode()).digest()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        presented = dict(handler_call_details.invocation_metadata or ()).get("authorization", "")
        scheme, _, credential = presented.partition(" ")
        # The scheme is case-insensitive (RFC 9110); the credential is compared whole, in constant time.
        if hmac.compare_digest(self._digest(f"{scheme.capitalize()} {credential}"), self._expected):
            return await continuation(handler_call_details)
        log.warning("admin call refused", extra={"method": handler_call_details.method,
                                                 "reason": "wrong token" if presented else "no token"})
        return self._deny

    @staticmethod
    async def _refuse(request: bytes, context: grpc.aio.ServicerContext) -> NoReturn:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                            "a valid admin token is required (metadata 'authorization: Bearer <token>')")


def _row(row: UsageRow) -> pb.UsageRow:
    usage = row.usage
    return pb.UsageRow(consumer=row.consumer, model=row.model, requests=row.requests,
                       input_tokens=usage.input, output_tokens=usage.output,
                       cache_read_tokens=usage.cache_read, cache_write_tokens=usage.cache_write,
                       cost_usd=row.cost_usd)


class _Usage(pb_grpc.UsageServicer):
    def __init__(self, store: Store, retention_days: int) -> None:
        self._store = store
        self._retention_days = retention_days

    async def Totals(  # noqa: N802 - gRPC method name
        self, request: pb.TotalsRequest, context: grpc.aio.ServicerContext
    ) -> pb.TotalsResponse:
        if not (request.HasField("start") and request.HasField("end")):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "start and end of the window are both required")
        start = request.start.ToNanoseconds() / 1e9
        end = request.end.ToNanoseconds() / 1e9
        if end <= start:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"end ({request.end.ToJsonString()}) must be "
                                f"after start ({request.start.ToJsonString()})")
        if end - start > self._retention_days * 86_400:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the window is longer than usage totals are kept "
                                f"({self._retention_days} days, limits.usage_retention_days)")
        consumer = request.consumer if request.HasField("consumer") else None
        model = request.model if request.HasField("model") else None
        try:
            rows = await self._store.usage(start, end, consumer, model)
        except StoreUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"the usage store cannot be reached: {exc}")
        rows = sorted(rows, key=lambda row: (row.consumer, row.model))
        return pb.TotalsResponse(rows=[_row(row) for row in rows], start=request.start, end=request.end)


class _Control(pb_grpc.ControlServicer):
    def __init__(self, reload: Reload) -> None:
        self._reload = reload

    async def Reload(  # noqa: N802 - gRPC method name
        self, request: pb.ReloadRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReloadResponse:
        result = await self._reload()
        log.info("reload requested through the admin API", extra={"ok": result.ok, "keys": result.keys,
                                                                  "consumers": result.consumers})
        return pb.ReloadResponse(ok=result.ok, message=result.message, consumers=result.consumers,
                                 keys=result.keys, config_source=result.source)


def _is_loopback(listen: str) -> bool:
    host = listen.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AdminServer:
    """The admin API on its own grpc.aio server: ``await start()``, later ``await stop()``.

    ``store`` answers ``Usage.Totals``; ``reload`` is what ``Control.Reload``
    runs; ``retention_days`` bounds the window a query may ask for (the store
    keeps no more). ``listen`` may name port 0 to let the system pick one
    (tests): :meth:`start` returns the port bound.
    """

    def __init__(self, store: Store, reload: Reload, token: str, listen: str = "127.0.0.1:9465",
                 retention_days: int = 35) -> None:
        if not token:
            raise ValueError("the admin API needs a token")
        self.listen = listen
        self.port = 0
        """The port bound, once started."""
        self._server = grpc.aio.server(
            interceptors=[_RequireToken(token)],
            options=[("grpc.so_reuseport", 0)],  # a second gateway on the same port fails instead of sharing it
        )
        pb_grpc.add_UsageServicer_to_server(_Usage(store, retention_days), self._server)
        pb_grpc.add_ControlServicer_to_server(_Control(reload), self._server)

    async def start(self) -> int:
        """Bind ``listen`` and serve; raises RuntimeError when the address cannot be bound."""
        self.port = self._server.add_insecure_port(self.listen)
        await self._server.start()
        if not _is_loopback(self.listen):
            log.warning("the admin API listens beyond localhost, in plaintext: keep its port on a private network",
                        extra={"listen": self.listen})
        log.info("admin API serving", extra={"listen": self.listen, "port": self.port})
        return self.port

    async def stop(self, grace: float | None = 1.0) -> None:
        """Stop accepting calls; calls in progress get ``grace`` seconds to finish."""
        await self._server.stop(grace)


def admin_server(settings: Settings, store: Store, reload: Reload) -> AdminServer | None:
    """The admin API as configured, or None (logged) when no token is set: no token, no admin port."""
    if not settings.admin_token:
        log.info("admin API off: set GATEWAY_ADMIN_TOKEN (or GATEWAY_ADMIN_TOKEN_FILE) to serve it")
        return None
    return AdminServer(store, reload, settings.admin_token, settings.config.admin.listen,
                       settings.config.limits.usage_retention_days)
