"""``python -m bench --floor``: set-up (m), the minimal ext_proc, is a fair floor and is reported as one."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bench.__main__ import check
from bench.payload import CHAT, MESSAGES, PLAIN
from bench.report import Run, cells, markdown, summary
from bench.setups import running
from bench.wrk import WrkResult


def test_the_minimal_ext_proc_gives_the_emulator_what_the_gateway_gives_it(tmp_path: Path) -> None:
    with running(tmp_path, "cm") as (gateway, minimal):
        assert minimal.key == "m" and minimal.apis == frozenset({MESSAGES})
        # Same path, body bytes and signed headers at the emulator, a valid signature, a 200 answer.
        check([gateway, minimal], [PLAIN[MESSAGES]])
        request = minimal.request(PLAIN[MESSAGES])
        wrong_key = {name: ("gwk_not_the_key" if name == "x-api-key" else value) for name, value in request.headers}
        http = urllib.request.Request(minimal.url + request.path, data=request.body, headers=wrong_key, method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(http, timeout=10)
        assert refused.value.code == 401


def _run(setup: str, concurrency: int, p50: float, api: str = MESSAGES) -> Run:
    return Run(api, setup, concurrency, 1, WrkResult(p50, p50 * 2, 1000 / p50, 100))


def test_the_floor_is_reported_in_units_of_the_no_op() -> None:
    runs = [_run("a", 1, 1.0), _run("b", 1, 3.0), _run("c", 1, 4.0), _run("m", 1, 2.5),
            _run("a", 1, 1.0, CHAT), _run("b", 1, 3.0, CHAT), _run("c", 1, 3.5, CHAT)]
    labels = {"a": "(a)", "b": "(b)", "c": "(c)", "m": "(m)"}
    table = cells(runs, labels)
    overheads = summary(table)
    messages, chat = overheads
    assert messages["added_latency_ratio"] == 1.5 and messages["minimal_added_latency_ratio"] == 0.75
    assert "minimal_added_latency_ratio" not in chat  # (m) serves messages only
    text = markdown(table, overheads)
    assert ("messages, concurrency 1, the floor: (m) minimal ext_proc added latency / no-op ext_proc added latency "
            "= 0.75") in text
    assert "chat, concurrency 1, the floor" not in text
