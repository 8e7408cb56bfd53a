"""Go durations, as JetStream writes them in headers, ack payloads and error texts: one parser, one formatter.

Go's `time.ParseDuration` accepts a signed sequence of decimal numbers with units (`1h2m3.5s`, `500ms`, `-1s`,
`.5s`, `0`) and refuses a bare number other than 0; callers add their own rules on top (the Nats-TTL header also
takes plain seconds, the CLI also takes days and refuses negatives) instead of keeping parsers of their own.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Final

__all__ = ["MAX", "format", "parse"]

MAX: Final = 2**63 - 1  # a Go time.Duration is an int64 of nanoseconds

_UNITS: Final = {
    "ns": 1,
    "us": 10**3,
    "µs": 10**3,  # U+00B5 micro sign
    "μs": 10**3,  # U+03BC Greek mu
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
_DAY: Final = 24 * 3600 * 10**9
_PART: Final = re.compile(r"([0-9]*)(?:\.([0-9]*))?(ns|us|µs|μs|ms|s|m|h|d)")


def parse(text: str, *, days: bool = False) -> int:
    """Go's `time.ParseDuration` in nanoseconds (exact: no float rounding); ValueError when Go refuses it.

    `days` also accepts a `d` unit (24h), which Go does not; the CLI offers it for retention settings.
    """
    sign = -1 if text.startswith("-") else 1
    body = text[1:] if text[:1] in ("-", "+") else text
    if body == "0":
        return 0
    if not body:
        raise ValueError(f"invalid duration {text!r}")
    total = Fraction(0)
    pos = 0
    while pos < len(body):
        m = _PART.match(body, pos)
        if m is None or not (m.group(1) or m.group(2)) or (m.group(3) == "d" and not days):
            raise ValueError(f"invalid duration {text!r}")
        whole, frac, unit = m.group(1) or "0", m.group(2) or "", m.group(3)
        size = _DAY if unit == "d" else _UNITS[unit]
        total += (int(whole) + (Fraction(int(frac), 10 ** len(frac)) if frac else 0)) * size
        pos = m.end()
    ns = sign * int(total)
    if abs(ns) > MAX:
        raise ValueError(f"invalid duration {text!r}: out of range")
    return ns


def format(ns: int, *, compact: bool = False) -> str:
    """Go's `time.Duration.String()` (`1h0m0s`, `1.5s`, `500ms`), or with `compact` a reader's form for the CLI
    (`1d2h`, `2m30s`, `500ms`: zero units dropped, days added, below a second in ms, negatives as `0s`)."""
    if compact:
        return _compact(ns)
    if ns == 0:
        return "0s"
    sign, u = ("-", -ns) if ns < 0 else ("", ns)
    if u < 10**3:
        return f"{sign}{u}ns"
    if u < 10**6:
        return f"{sign}{_decimal(u, 10**3)}µs"
    if u < 10**9:
        return f"{sign}{_decimal(u, 10**6)}ms"
    text = f"{_decimal(u % (60 * 10**9), 10**9)}s"
    minutes = u // (60 * 10**9)
    if minutes:
        text = f"{minutes % 60}m{text}"
        if minutes >= 60:
            text = f"{minutes // 60}h{text}"
    return sign + text


def _decimal(value: int, unit: int) -> str:
    """`value / unit` with the fraction's trailing zeros dropped, as Go prints it."""
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{frac:0{digits}d}".rstrip("0")


def _compact(ns: int) -> str:
    if ns <= 0:
        return "0s"
    if ns < 10**9:
        return f"{_decimal(ns, 10**6)}ms"
    secs = ns // 10**9
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if secs >= size:
            parts.append(f"{secs // size}{unit}")
            secs %= size
    return "".join(parts)
