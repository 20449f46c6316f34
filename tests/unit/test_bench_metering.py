"""The bench's metering part still runs, on a handful of requests, and counts what it claims to count."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import metering

TINY = metering.Sizes(rounds=1, batch=4, warmup=2, consumers=5, gateway_consumers=2, leak_warmup=2, leak_requests=2,
                      leak_batch=2, windows=(0, 3), window_samples=2)


@pytest.fixture(scope="module")
def results() -> dict:
    return metering.measure(False, lambda message: None, sizes=TINY)


def test_redis_takes_exactly_two_round_trips_per_request(results: dict) -> None:
    trips = metering.round_trips(results["redis_commands"])
    assert trips["requests"] == TINY.rounds * TINY.batch
    assert trips["round_trips_per_request"] == 2
    assert trips["sent_per_request"] == {"evalsha": 2}
    assert trips["script_commands_per_request"] > 2  # the scripts' own commands are counted, apart


def test_every_request_wrote_one_usage_record(results: dict) -> None:
    records = results["records"]
    assert set(records) >= set(metering.CONFIGS)
    for name, written in records.items():
        assert written["requests"] > 0, name
        assert written["lines"] == written["requests"], name
    timed = TINY.warmup + TINY.rounds * TINY.batch + 1  # and the request each rig checks first
    assert all(records[name]["requests"] == timed for name in metering.CONFIGS)


def test_the_figures_and_the_report_come_out(results: dict) -> None:
    assert {r["config"] for r in results["runs"]} == set(metering.CONFIGS)
    assert all(r["blocks_held"] is not None and set(r["phases_s"]) == set(metering.PHASES) for r in results["runs"])
    table = metering.cells(results)
    by = {c.config: c for c in table}
    assert by["none"].phases_us["admit"] < by["memory"].phases_us["admit"]  # no limits: admit is never awaited
    summary = metering.summary(table, results)
    assert summary["redis_round_trips_per_request"] == 2
    assert summary["redis_bytes_per_consumer"] > 0 and summary["memory_store_bytes_per_consumer"] > 0
    assert set(results["admit_us_by_window"]["redis"]) == {"0", "3"}
    report = metering.markdown(table, results)
    assert "### Metering and limits" in report and "(iii) limits, Redis store" in report
    json.dumps(results)  # goes into results.json as is


def test_a_rig_writes_its_records_to_the_file_it_was_given(tmp_path: Path) -> None:
    import asyncio

    async def run() -> tuple[dict, list[dict]]:
        rig = await metering.make_rig("none", tmp_path, "redis://127.0.0.1:1/0", await metering.credentials(),
                                      consumers=2, tag="file-check")
        await rig.batch(3)
        written = await rig.close()
        return written, [json.loads(line) for line in rig.records.read_text().splitlines()]

    written, lines = asyncio.run(run())
    assert written == {"requests": 4, "lines": 4}
    assert [line["status"] for line in lines] == [200] * 4
    assert {line["consumer"] for line in lines} == {"file-check-0", "file-check-1"}
    assert all(line["tokens"]["input"] > 0 and line["tokens"]["output"] > 0 for line in lines)
