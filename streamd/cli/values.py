"""What people type for durations, times and choices, read with one clear error line each."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence

import typer

from streamd.cli.session import CliError
from streamd.wire import durations, timefmt


def parse_duration(text: str, what: str = "duration") -> int:
    """A Go duration (`30s`, `2m`, `1h30m`, `500ms`, `0`), days (`7d`) allowed, to nanoseconds; never negative."""
    try:
        ns = durations.parse(text.strip(), days=True)
    except ValueError:
        ns = -1
    if ns < 0:
        raise CliError(f"invalid {what} {text!r} — use a duration like 30s, 2m, 1h or 1h30m")
    return ns


def format_duration(ns: int) -> str:
    """Nanoseconds as a short duration for people: 1h, 2m30s, 500ms, 0s."""
    return durations.format(ns, compact=True)


def parse_time(text: str, what: str = "time") -> int:
    """An RFC 3339 time, or a duration meaning that long ago, to Unix nanoseconds."""
    try:
        return timefmt.parse(text)
    except ValueError:
        pass
    try:
        return time.time_ns() - parse_duration(text)
    except CliError:
        raise CliError(
            f"invalid {what} {text!r} — use an RFC 3339 time like 2026-01-02T15:04:05Z or a duration like 1h (ago)"
        ) from None


def choice(value: str, allowed: Sequence[str], what: str) -> str:
    if value not in allowed:
        raise CliError(f"invalid {what} {value!r} — use one of: {', '.join(allowed)}")
    return value


_SIZE = re.compile(r"(-?[0-9]+)\s*([KMGT]I?B?|B)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str, what: str) -> int:
    """A byte count: `1048576`, `512KB`, `1GB`, `2GiB` (units of 1024, as the `nats` CLI reads them), or -1."""
    m = _SIZE.fullmatch(text.strip())
    if m is None or (m.group(2) and int(m.group(1)) < 0):
        raise CliError(f"invalid {what} {text!r} — use a number of bytes or a size like 512KB, 1GB (-1: unlimited)")
    value = int(m.group(1)) * _SIZE_UNITS[(m.group(2) or "")[:1].upper()]
    if value < -1 or value > 2**63 - 1:
        raise CliError(f"invalid {what} {text!r} — use -1 for unlimited, or a size up to 8EB")
    return value


def checked(parse: Callable[[str, str], object]) -> Callable[[typer.CallbackParam, str | None], str | None]:
    """An option callback that runs `parse` when the command line is read, so a bad value is a usage error (one
    line, `see --help`) before anything is sent; the command parses the value again where it uses it."""

    def callback(param: typer.CallbackParam, value: str | None) -> str | None:
        if value is not None:
            try:
                parse(value, param.opts[0] if param.opts else str(param.name))
            except CliError as exc:
                raise typer.BadParameter(str(exc).partition(" — ")[2] or str(exc)) from None
        return value

    return callback
