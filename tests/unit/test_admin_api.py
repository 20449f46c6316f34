"""The admin API: a real grpc.aio server over the in-process store, and the CLI against it.

The server runs on the test's event loop; the CLI (a blocking gRPC client)
runs on a thread beside it, or as a real subprocess, so both ends are the
code that ships.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from extproc._proto.bedrock_gateway.admin.v1 import admin_pb2 as pb
from extproc._proto.bedrock_gateway.admin.v1 import admin_pb2_grpc as pb_grpc
from extproc.admin import AdminServer
from extproc.cli import main
from extproc.gateway import Reloaded
from extproc.limits.memory import MemoryStore
from extproc.usage import Usage
from tests.paths import ROOT

TOKEN = "admin-token-for-tests-0123456789"
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
"""A minute boundary; the seeded usage is placed around it."""


def at(seconds: float) -> float:
    return T0.timestamp() + seconds


def stamp(seconds: float) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(T0 + timedelta(seconds=seconds))
    return result


def iso(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


class CountingReload:
    """A reload with a fixed outcome that counts its calls (the gateway's own reload is tested end to end)."""

    def __init__(self, result: Reloaded) -> None:
        self.result = result
        self.calls = 0

    async def __call__(self) -> Reloaded:
        self.calls += 1
        return self.result


RELOADED = Reloaded(True, "configuration and keys reloaded", 3, 4, "/etc/gateway/gateway.yaml")


async def seeded_store() -> MemoryStore:
    """Usage in the hour from T0, plus one request just before and one just after it."""
    store = MemoryStore()
    for consumer, model, usage, cost, when in [
        ("team-a", "haiku", Usage(100, 20, 5, 1), 0.001, 10),
        ("team-a", "haiku", Usage(50, 10), 0.0005, 70),
        ("team-a", "sonnet", Usage(200, 40), 0.003, 130),
        ("team-b", "haiku", Usage(10, 5), 0.0001, 190),
        ("team-a", "haiku", Usage(7, 7), 0.1, -30),     # its minute begins before T0
        ("team-b", "haiku", Usage(9, 9), 0.1, 3600),    # its minute begins at the end of the hour
    ]:
        await store.settle(consumer, model, f"r{when}", None, usage, cost, at(when))
    return store


@asynccontextmanager
async def admin_api(store: MemoryStore, reload: CountingReload | None = None,
                    retention_days: int = 35) -> AsyncIterator[str]:
    server = AdminServer(store, reload or CountingReload(RELOADED), TOKEN, "127.0.0.1:0", retention_days)
    port = await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def call(address: str, rpc: str, request: object, authorization: str | None = f"Bearer {TOKEN}") -> object:
    metadata = (("authorization", authorization),) if authorization is not None else ()
    async with grpc.aio.insecure_channel(address) as channel:
        stubs = {"Totals": pb_grpc.UsageStub(channel).Totals, "Reload": pb_grpc.ControlStub(channel).Reload}
        return await stubs[rpc](request, metadata=metadata, timeout=5)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


HOUR = pb.TotalsRequest(start=stamp(0), end=stamp(3600))


# -- the token ---------------------------------------------------------------

@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token-0123456789", f"Basic {TOKEN}", TOKEN,
                                           f"Bearer {TOKEN}x", "Bearer "])
def test_calls_without_the_token_are_refused(authorization: str | None, caplog: pytest.LogCaptureFixture) -> None:
    reload = CountingReload(RELOADED)

    async def scenario() -> None:
        async with admin_api(await seeded_store(), reload) as address:
            for rpc, request in (("Totals", HOUR), ("Reload", pb.ReloadRequest())):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await call(address, rpc, request, authorization)
                assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
                assert "admin token" in refused.value.details()

    with caplog.at_level(logging.DEBUG):
        run(scenario)
    assert reload.calls == 0
    logged = " ".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert "admin call refused" in logged
    assert TOKEN not in logged and "wrong-token" not in logged


def test_the_scheme_is_case_insensitive() -> None:
    async def scenario() -> None:
        async with admin_api(await seeded_store()) as address:
            answer = await call(address, "Totals", HOUR, f"bearer {TOKEN}")
            assert isinstance(answer, pb.TotalsResponse) and len(answer.rows) == 3

    run(scenario)


def test_a_token_is_required_to_serve() -> None:
    with pytest.raises(ValueError, match="token"):
        AdminServer(MemoryStore(), CountingReload(RELOADED), "")


# -- Usage.Totals ------------------------------------------------------------

def rows_of(answer: object) -> list[tuple[object, ...]]:
    assert isinstance(answer, pb.TotalsResponse)
    return [(r.consumer, r.model, r.requests, r.input_tokens, r.output_tokens, r.cache_read_tokens,
             r.cache_write_tokens, round(r.cost_usd, 6)) for r in answer.rows]


def test_totals_per_consumer_and_model_over_whole_minutes() -> None:
    async def scenario() -> None:
        async with admin_api(await seeded_store()) as address:
            answer = await call(address, "Totals", HOUR)
            assert rows_of(answer) == [
                ("team-a", "haiku", 2, 150, 30, 5, 1, 0.0015),
                ("team-a", "sonnet", 1, 200, 40, 0, 0, 0.003),
                ("team-b", "haiku", 1, 10, 5, 0, 0, 0.0001),
            ]
            assert isinstance(answer, pb.TotalsResponse)
            assert (answer.start, answer.end) == (HOUR.start, HOUR.end)
            # A minute counts when it begins inside the window: 00:01 is in [00:00:30, 00:02), 00:00 is not.
            narrow = await call(address, "Totals", pb.TotalsRequest(start=stamp(30), end=stamp(120)))
            assert rows_of(narrow) == [("team-a", "haiku", 1, 50, 10, 0, 0, 0.0005)]
            empty = await call(address, "Totals", pb.TotalsRequest(start=stamp(-7200), end=stamp(-3600)))
            assert rows_of(empty) == []

    run(scenario)


def test_totals_filtered_by_consumer_and_model() -> None:
    async def scenario() -> None:
        async with admin_api(await seeded_store()) as address:
            by_consumer = await call(address, "Totals", pb.TotalsRequest(start=stamp(0), end=stamp(3600),
                                                                         consumer="team-a"))
            assert [row[:3] for row in rows_of(by_consumer)] == [("team-a", "haiku", 2), ("team-a", "sonnet", 1)]
            by_model = await call(address, "Totals", pb.TotalsRequest(start=stamp(0), end=stamp(3600), model="haiku"))
            assert [row[:3] for row in rows_of(by_model)] == [("team-a", "haiku", 2), ("team-b", "haiku", 1)]
            both = await call(address, "Totals", pb.TotalsRequest(start=stamp(0), end=stamp(3600),
                                                                  consumer="team-b", model="sonnet"))
            assert rows_of(both) == []

    run(scenario)


@pytest.mark.parametrize(("request_", "message"), [
    (pb.TotalsRequest(end=stamp(3600)), "start and end of the window are both required"),
    (pb.TotalsRequest(start=stamp(0)), "start and end of the window are both required"),
    (pb.TotalsRequest(start=stamp(60), end=stamp(60)), "end (2026-11-26T12:01:00Z) must be after start"),
    (pb.TotalsRequest(start=stamp(60), end=stamp(0)), "must be after start (2026-11-26T12:01:00Z)"),
    (pb.TotalsRequest(start=stamp(0), end=stamp(86_400 + 60)),
     "the window is longer than usage totals are kept (1 days, limits.usage_retention_days)"),
])
def test_the_window_is_validated(request_: pb.TotalsRequest, message: str) -> None:
    async def scenario() -> None:
        async with admin_api(await seeded_store(), retention_days=1) as address:
            with pytest.raises(grpc.aio.AioRpcError) as invalid:
                await call(address, "Totals", request_)
            assert invalid.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert message in invalid.value.details()
            # exactly the retention is allowed
            assert rows_of(await call(address, "Totals", pb.TotalsRequest(start=stamp(0), end=stamp(86_400))))

    run(scenario)


# -- Control.Reload ----------------------------------------------------------

def test_reload_runs_the_reload_and_reports_it() -> None:
    reload = CountingReload(RELOADED)

    async def scenario() -> None:
        async with admin_api(MemoryStore(), reload) as address:
            answer = await call(address, "Reload", pb.ReloadRequest())
            assert answer == pb.ReloadResponse(ok=True, message="configuration and keys reloaded", consumers=3,
                                               keys=4, config_source="/etc/gateway/gateway.yaml")
            reload.result = Reloaded(False, "gateway.yaml:3: policies: Field required", 3, 4, "gateway.yaml")
            refused = await call(address, "Reload", pb.ReloadRequest())
            assert isinstance(refused, pb.ReloadResponse)
            assert (refused.ok, refused.message) == (False, "gateway.yaml:3: policies: Field required")

    run(scenario)
    assert reload.calls == 2


# -- the CLI -----------------------------------------------------------------

@pytest.fixture
def token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", TOKEN)
    monkeypatch.delenv("GATEWAY_ADMIN_TOKEN_FILE", raising=False)


def cli(store: MemoryStore, argv: Callable[[str], list[str]], reload: CountingReload | None = None) -> int:
    """``extproc`` with ``argv(address)`` on a thread, against a server on this thread's loop."""
    async def scenario() -> int:
        async with admin_api(store, reload) as address:
            return await asyncio.to_thread(main, argv(address))

    return asyncio.run(scenario())


def test_cli_usage_prints_a_table(token_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    store = asyncio.run(seeded_store())
    assert cli(store, lambda address: ["usage", "--admin", address, "--start", iso(0), "--end", iso(3600)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "usage from 2026-11-26 12:00:00 UTC to 2026-11-26 13:00:00 UTC (whole minutes; whole hours before the last day)"
    assert lines[1].split() == ["consumer", "model", "requests", "input", "output", "cache", "read", "cache", "write",
                                "cost", "USD"]
    assert [line.split() for line in lines[2:]] == [
        ["team-a", "haiku", "2", "150", "30", "5", "1", "0.0015"],
        ["team-a", "sonnet", "1", "200", "40", "0", "0", "0.0030"],
        ["team-b", "haiku", "1", "10", "5", "0", "0", "0.0001"],
        ["total", "4", "360", "75", "5", "1", "0.0046"],
    ]


def test_cli_usage_json_with_filters(token_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    store = asyncio.run(seeded_store())
    argv = ["usage", "--start", iso(0), "--end", iso(3600), "--consumer", "team-a", "--model", "sonnet", "--json"]
    assert cli(store, lambda address: [*argv, "--admin", address]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "start": "2026-11-26T12:00:00Z", "end": "2026-11-26T13:00:00Z",
        "rows": [{"consumer": "team-a", "model": "sonnet", "requests": 1, "input_tokens": 200, "output_tokens": 40,
                  "cache_read_tokens": 0, "cache_write_tokens": 0, "cost_usd": 0.003}],
    }


def test_cli_usage_since_ends_now(token_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    store = MemoryStore()
    now = datetime.now(UTC).timestamp()
    for ago in (90 * 60, 20 * 60):  # 90 and 20 minutes ago
        asyncio.run(store.settle("team-c", "opus", f"r{ago}", None, Usage(1000, 100), 0.01, now - ago))
    assert cli(store, lambda address: ["usage", "--admin", address, "--since", "1h", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)["rows"]
    assert (row["consumer"], row["requests"], row["input_tokens"]) == ("team-c", 1, 1000)
    assert cli(store, lambda address: ["usage", "--admin", address, "--since", "2h", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"][0]["requests"] == 2


def test_cli_usage_with_nothing_to_report(token_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(MemoryStore(), lambda address: ["usage", "--admin", address, "--since", "30m"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "no usage in this window"


def test_cli_usage_shows_the_servers_window_error(token_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["usage", "--start", iso(3600), "--end", iso(0)]
    assert cli(MemoryStore(), lambda address: [*argv, "--admin", address]) == 1
    assert capsys.readouterr().err == ("extproc: end (2026-11-26T12:00:00Z) must be after start "
                                       "(2026-11-26T13:00:00Z)\n")


@pytest.mark.parametrize(("argv", "message"), [
    (["--since", "3 weeks"], "--since '3 weeks': expected a positive number and a unit, like 30m, 1h or 2d"),
    (["--since", "0h"], "--since '0h': expected a positive number"),
    (["--start", "yesterday"], "--start 'yesterday' is not an ISO 8601 time"),
])
def test_cli_usage_rejects_a_bad_window(argv: list[str], message: str, token_env: None,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage", "--admin", f"127.0.0.1:{free_port()}", *argv]) == 2
    assert message in capsys.readouterr().err


def test_cli_reload(token_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    reload = CountingReload(RELOADED)
    assert cli(MemoryStore(), lambda address: ["reload", "--admin", address], reload) == 0
    assert capsys.readouterr().out == ("reloaded: 3 consumers, 4 keys, configuration from /etc/gateway/gateway.yaml\n"
                                       "configuration and keys reloaded\n")
    reload.result = Reloaded(False, "gateway.yaml:3: policies: Field required", 3, 4, "gateway.yaml")
    assert cli(MemoryStore(), lambda address: ["reload", "--admin", address], reload) == 1
    assert capsys.readouterr().err == ("extproc: reload failed, the gateway keeps its previous configuration and "
                                       "keys: gateway.yaml:3: policies: Field required\n")
    assert reload.calls == 2


@pytest.mark.parametrize("command", [["usage"], ["reload"]])
def test_cli_with_a_wrong_token(command: list[str], monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", "not-the-admin-token-0123")
    assert cli(MemoryStore(), lambda address: [*command, "--admin", address]) == 1
    err = capsys.readouterr().err
    assert err.startswith("extproc: the admin token was refused by 127.0.0.1:")
    assert "not-the-admin-token" not in err


@pytest.mark.parametrize("command", [["usage"], ["reload"]])
def test_cli_without_an_admin_api(command: list[str], token_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    address = f"127.0.0.1:{free_port()}"
    assert main([*command, "--admin", address]) == 1
    assert capsys.readouterr().err == (f"extproc: no admin API at {address}: is `extproc serve` running with "
                                       "GATEWAY_ADMIN_TOKEN set?\n")


def test_cli_without_a_token(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("GATEWAY_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("GATEWAY_ADMIN_TOKEN_FILE", raising=False)
    assert main(["reload", "--admin", f"127.0.0.1:{free_port()}"]) == 2
    assert "no admin token: set GATEWAY_ADMIN_TOKEN" in capsys.readouterr().err


def test_cli_reads_the_token_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    token_file = tmp_path / "admin-token"
    token_file.write_text(TOKEN + "\n")
    monkeypatch.delenv("GATEWAY_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN_FILE", str(token_file))
    assert cli(MemoryStore(), lambda address: ["reload", "--admin", address]) == 0
    assert capsys.readouterr().out.startswith("reloaded: 3 consumers")


def test_the_extproc_command_against_the_server() -> None:
    """``python -m extproc usage`` in its own process, as an operator runs it."""
    async def scenario() -> None:
        async with admin_api(await seeded_store()) as address:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "extproc", "usage", "--admin", address, "--start", iso(0), "--end", iso(3600),
                "--model", "haiku", "--json", cwd=ROOT, env={**os.environ, "GATEWAY_ADMIN_TOKEN": TOKEN},
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(process.communicate(), 30)
            assert process.returncode == 0, err.decode()
            rows = json.loads(out)["rows"]
            assert [(row["consumer"], row["requests"]) for row in rows] == [("team-a", 2), ("team-b", 1)]

    run(scenario)
