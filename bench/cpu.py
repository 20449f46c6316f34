"""CPU time of the processes under test, and Envoy's ext_proc message counter.

CPU time is user + system from ``/proc/<pid>/stat`` (fields 14 and 15, every
thread of the process, in clock ticks of usually 10 ms), read before and after
a run during which nothing else is sent to the set-up; so what a run adds is
the CPU its requests cost, whatever the machine's other load. Envoy's
``http.gateway.ext_proc.stream_msgs_sent`` says how many messages Envoy sent
to the ext_proc service (one per phase, and in STREAMED mode one per body chunk).
"""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
EXT_PROC_MESSAGES = "http.gateway.ext_proc.stream_msgs_sent"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used so far."""
    # The command name (field 2) is in parentheses and may hold spaces: count fields after its ')'.
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (every CPU, every process, steal included): the
    difference with the processes under test is the machine's other load during a run."""
    with open("/proc/stat") as stat:
        fields = stat.readline().split()  # cpu user nice system idle iowait irq softirq steal ...
    busy = [int(v) for i, v in enumerate(fields[1:9]) if i not in (3, 4)]
    return sum(busy) / _TICKS_PER_S


def envoy_counter(admin_port: int, name: str) -> int | None:
    """A counter from Envoy's admin ``/stats``; None when Envoy has no such counter (no ext_proc filter)."""
    url = f"http://127.0.0.1:{admin_port}/stats?filter=^{name.replace('.', '[.]')}$"
    with urllib.request.urlopen(url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
    return None
