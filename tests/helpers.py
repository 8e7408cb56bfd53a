"""Test helpers: wait on conditions (never on fixed sleeps), run streamd as a subprocess."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any


async def wait_for(
    predicate: Callable[[], Any] | Callable[[], Awaitable[Any]], timeout: float = 10.0, interval: float = 0.02
) -> Any:
    """Poll `predicate` until it returns something truthy; fail the test with the last error otherwise."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
        except Exception as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last error: {last!r})")
        await asyncio.sleep(interval)


async def start_streamd_process(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    """`python -m streamd serve ARGS` with its log on stderr (read by the caller or drained)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamd",
        "serve",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


async def read_until(
    proc: asyncio.subprocess.Process, needle: str | tuple[str, ...], timeout: float = 20.0
) -> list[str]:
    """Read stderr lines until one contains `needle` (or one of them); returns the lines read."""
    needles = (needle,) if isinstance(needle, str) else needle
    assert proc.stderr is not None
    lines: list[str] = []
    async with asyncio.timeout(timeout):
        while True:
            raw = await proc.stderr.readline()
            if not raw:
                raise AssertionError("streamd exited early:\n" + "".join(lines))
            lines.append(raw.decode(errors="replace"))
            if any(n in lines[-1] for n in needles):
                return lines


async def drain_stderr(proc: asyncio.subprocess.Process) -> None:
    assert proc.stderr is not None
    while await proc.stderr.readline():
        pass


def data_dir(tmp_path: Path, name: str = "data") -> Path:
    return tmp_path / name
