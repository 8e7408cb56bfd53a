"""What people type for durations, times and choices, read with one clear error line each."""

from __future__ import annotations

import time
from collections.abc import Sequence

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
