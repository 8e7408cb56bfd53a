"""JetStream's time format: RFC 3339 in UTC with up to nine fraction digits and a `Z`, as Go's RFC3339Nano."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

ZERO_TIME = "0001-01-01T00:00:00Z"
_NS = 1_000_000_000
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$"
)


def now_ns() -> int:
    return time.time_ns()


def format_ns(ns: int) -> str:
    """Format a Unix time in nanoseconds; 0 is Go's zero time, as the server prints for unset times."""
    if ns <= 0:
        return ZERO_TIME
    secs, frac = divmod(ns, _NS)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    if not frac:
        return base + "Z"
    return f"{base}.{frac:09d}".rstrip("0") + "Z"


def parse(text: str) -> int:
    """Parse RFC 3339 to Unix nanoseconds; raises ValueError on anything else."""
    m = _RFC3339.match(text)
    if m is None:
        raise ValueError(f"invalid time {text!r}")
    year, month, day, hour, minute, sec = (int(g) for g in m.groups()[:6])
    if year == 1 and month == 1 and day == 1 and hour == minute == sec == 0:
        return 0
    dt = datetime(year, month, day, hour, minute, sec, tzinfo=UTC)
    ns = int(dt.timestamp()) * _NS + int((m.group(7) or "0").ljust(9, "0"))
    if m.group(9):
        offset = (int(m.group(10)) * 60 + int(m.group(11))) * 60 * _NS
        ns = ns - offset if m.group(9) == "+" else ns + offset
    return ns
