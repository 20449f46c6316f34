"""The client side of the admin API: what ``extproc usage`` and ``extproc reload`` run.

The commands are used by people at a terminal, mostly when something is off,
so every failure is one line saying what to check, and the exit status is
non-zero: 1 when the admin API failed or refused, 2 for a bad command line.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from ._proto.bedrock_gateway.admin.v1 import admin_pb2 as pb
from ._proto.bedrock_gateway.admin.v1 import admin_pb2_grpc as pb_grpc
from .config import ConfigError, admin_token

DEFAULT_WINDOW = timedelta(hours=24)
TIMEOUT_SECONDS = 10.0
_SINCE = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class AdminError(Exception):
    """A call to the admin API failed; the message says what to check."""


class UsageError(ValueError):
    """The command line asks for something that cannot be sent (bad duration or time)."""


def parse_since(text: str) -> timedelta:
    """``30m``, ``1h``, ``2d`` (``s``, ``m``, ``h``, ``d``) as a duration."""
    match = _SINCE.match(text)
    if not match or int(match[1]) == 0:
        raise UsageError(f"--since {text!r}: expected a positive number and a unit, like 30m, 1h or 2d")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def parse_time(option: str, text: str) -> datetime:
    """An ISO 8601 time; without a UTC offset it is taken as UTC (as the server's clock reports)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} {text!r} is not an ISO 8601 time, like 2026-11-26T13:00 or "
                         "2026-11-26T13:00+01:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def window(since: str | None, start: str | None, end: str | None, now: datetime) -> tuple[datetime, datetime]:
    """``[start, end)`` from the options: ``--start`` (to ``--end`` or now), else ``--since`` (24h) before the end."""
    until = parse_time("--end", end) if end else now
    if start:
        return parse_time("--start", start), until
    return until - (parse_since(since) if since else DEFAULT_WINDOW), until


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


class AdminClient:
    """Calls to the admin API at ``address`` with the token; errors become :class:`AdminError`."""

    def __init__(self, address: str, token: str, timeout: float = TIMEOUT_SECONDS) -> None:
        self.address = address
        self._timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._channel = grpc.insecure_channel(address)
        self._usage = pb_grpc.UsageStub(self._channel)
        self._control = pb_grpc.ControlStub(self._channel)

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._channel.close()

    def totals(self, start: datetime, end: datetime, consumer: str | None = None,
               model: str | None = None) -> pb.TotalsResponse:
        request = pb.TotalsRequest(start=_timestamp(start), end=_timestamp(end), consumer=consumer, model=model)
        return self._call(self._usage.Totals, request)

    def reload(self) -> pb.ReloadResponse:
        return self._call(self._control.Reload, pb.ReloadRequest())

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.RpcError as exc:
            raise AdminError(self._explain(exc)) from None

    def _explain(self, exc: grpc.RpcError) -> str:
        code, details = exc.code(), exc.details()  # type: ignore[attr-defined]
        if code is grpc.StatusCode.UNAUTHENTICATED:
            return (f"the admin token was refused by {self.address}: use the token `extproc serve` runs with "
                    "(GATEWAY_ADMIN_TOKEN or GATEWAY_ADMIN_TOKEN_FILE)")
        if code is grpc.StatusCode.UNAVAILABLE and not self._connected():
            return f"no admin API at {self.address}: is `extproc serve` running with GATEWAY_ADMIN_TOKEN set?"
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return f"no answer from the admin API at {self.address} within {self._timeout:g}s"
        if code is grpc.StatusCode.INVALID_ARGUMENT:
            return str(details)
        return f"the admin API at {self.address} answered {code.name}: {details}"

    def _connected(self) -> bool:
        """Whether the channel has a live connection, i.e. an UNAVAILABLE came from the server itself.

        A refused or unreachable address and a server-side UNAVAILABLE (the
        usage store is down) share a status code; only the channel tells them apart.
        """
        ready = threading.Event()

        def watch(state: grpc.ChannelConnectivity) -> None:
            if state is grpc.ChannelConnectivity.READY:
                ready.set()

        self._channel.subscribe(watch)
        try:
            return ready.wait(0.5)
        finally:
            self._channel.unsubscribe(watch)


def _token() -> str:
    token = admin_token(os.environ)
    if not token:
        raise ConfigError("no admin token: set GATEWAY_ADMIN_TOKEN (or GATEWAY_ADMIN_TOKEN_FILE) to the token "
                          "`extproc serve` runs with")
    return token


def _utc(stamp: Timestamp) -> str:
    return stamp.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def usage_json(response: pb.TotalsResponse) -> dict[str, Any]:
    """The answer as JSON-ready data, field names as in the .proto (token counts stay numbers)."""
    return {
        "start": response.start.ToJsonString(),
        "end": response.end.ToJsonString(),
        "rows": [
            {"consumer": row.consumer, "model": row.model, "requests": row.requests,
             "input_tokens": row.input_tokens, "output_tokens": row.output_tokens,
             "cache_read_tokens": row.cache_read_tokens, "cache_write_tokens": row.cache_write_tokens,
             "cost_usd": row.cost_usd}
            for row in response.rows
        ],
    }


def usage_table(response: pb.TotalsResponse) -> str:
    """A plain-text table, one row per consumer and model, and a total when there are several."""
    heading = f"usage from {_utc(response.start)} to {_utc(response.end)} (whole minutes; whole hours before the last day)"
    if not response.rows:
        return f"{heading}\nno usage in this window"
    header = ("consumer", "model", "requests", "input", "output", "cache read", "cache write", "cost USD")
    counters = ("requests", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
    lines = [[row.consumer, row.model, *(f"{getattr(row, name):,}" for name in counters), f"{row.cost_usd:,.4f}"]
             for row in response.rows]
    if len(response.rows) > 1:
        sums = [sum(getattr(row, name) for row in response.rows) for name in counters]
        lines.append(["total", "", *(f"{value:,}" for value in sums),
                      f"{sum(row.cost_usd for row in response.rows):,.4f}"])
    widths = [max(len(cells[i]) for cells in [list(header), *lines]) for i in range(len(header))]

    def render(cells: list[str] | tuple[str, ...]) -> str:
        # Names left-aligned, numbers right-aligned.
        return "  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths)))

    return "\n".join([heading, render(header), *map(render, lines)])


def run_usage(address: str, since: str | None, start: str | None, end: str | None,
              consumer: str | None, model: str | None, as_json: bool) -> int:
    """``extproc usage``: print the totals; the exit status of the command."""
    try:
        begin, until = window(since, start, end, datetime.now(UTC))
    except UsageError as exc:
        print(f"extproc: {exc}", file=sys.stderr)
        return 2
    try:
        with AdminClient(address, _token()) as client:
            response = client.totals(begin, until, consumer, model)
    except AdminError as exc:
        print(f"extproc: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(usage_json(response), indent=2) if as_json else usage_table(response))
    return 0


def run_reload(address: str) -> int:
    """``extproc reload``: ask the running gateway to re-read its configuration and keys."""
    try:
        with AdminClient(address, _token()) as client:
            response = client.reload()
    except AdminError as exc:
        print(f"extproc: {exc}", file=sys.stderr)
        return 1
    if not response.ok:
        print(f"extproc: reload failed, the gateway keeps its previous configuration and keys: {response.message}",
              file=sys.stderr)
        return 1
    print(f"reloaded: {response.consumers} consumers, {response.keys} keys, "
          f"configuration from {response.config_source}" + (f"\n{response.message}" if response.message else ""))
    return 0
