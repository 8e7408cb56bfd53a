"""CPU seconds (user + system, all threads) of any process, from /proc/<pid>/stat, without psutil.

The benchmark reports each process's CPU share (CPU seconds / wall seconds) beside its throughput: on a 2-core
machine the client, nats-server and streamd compete for the same cores, and a figure means little without
knowing who was using them.
"""

from __future__ import annotations

import os

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (fields 14 and 15 of /proc/<pid>/stat; the command name may contain spaces, so
    the fields are counted after its closing parenthesis). 0.0 if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    fields = stat[stat.rfind(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def snapshot(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu_seconds(pid) for name, pid in pids.items()}
