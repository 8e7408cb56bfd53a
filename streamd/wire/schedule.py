"""Message schedule patterns (the `Nats-Schedule` header), as nats-server 2.12+ reads them: pure functions.

`@at <RFC 3339>` fires once; `@every <Go duration>` (at least 1s) and 6-field cron patterns (seconds first, with
`@hourly`.. shorthands, in the `Nats-Schedule-Time-Zone` zone) repeat. A repeating schedule whose next time has
already passed (streamd was down) skips ahead and fires once, never once per missed slot.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from streamd.wire import durations, timefmt

_NS = 1_000_000_000
_SHORTHANDS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
_MONTHS = {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())}
_DAYS = {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}
# (min, max, names) per cron field: second, minute, hour, day of month, month, day of week.
_BOUNDS: tuple[tuple[int, int, dict[str, int] | None], ...] = (
    (0, 59, None),
    (0, 59, None),
    (0, 23, None),
    (1, 31, None),
    (1, 12, _MONTHS),
    (0, 6, _DAYS),
)
_STAR = 1 << 63
_INT = re.compile(r"^[+-]?[0-9]+$")
_YEARS_AHEAD = 5


class Invalid(ValueError):
    """The pattern (or its time zone) is not one nats-server accepts."""


def zone(value: bytes | None) -> ZoneInfo | None:
    """The `Nats-Schedule-Time-Zone` value -> its zone; None when the header is absent. Raises Invalid when it is
    present but empty or unknown."""
    if value is None:
        return None
    try:
        text = value.decode()
        if not text or text.startswith("/") or ".." in text:
            raise Invalid("time zone")
        return ZoneInfo(text)
    except (UnicodeDecodeError, ValueError, ZoneInfoNotFoundError, OSError):
        raise Invalid("time zone") from None


def next_fire(pattern: str, tz: ZoneInfo | None, ts_ns: int, now_ns: int) -> tuple[int, bool]:
    """-> (when the schedule next fires, ns since the epoch; whether it repeats) for a schedule last due at `ts_ns`
    (its message's time when first stored). Raises Invalid."""
    if pattern.startswith("@at "):
        if tz is not None:
            raise Invalid("time zone with @at")
        try:
            return timefmt.parse(pattern[4:]), False
        except ValueError:
            raise Invalid(pattern) from None
    if pattern.startswith("@every "):
        if tz is not None:
            raise Invalid("time zone with @every")
        try:
            every = durations.parse(pattern[7:])
        except ValueError:
            raise Invalid(pattern) from None
        if every < _NS:
            raise Invalid("interval under one second")
        nxt = _round_second(ts_ns) + every
        if nxt < now_ns:
            nxt = _round_second(now_ns) + every
        return nxt, True
    fields = _parse_cron(_SHORTHANDS.get(pattern, pattern))
    nxt = _cron_next(fields, tz, ts_ns)
    if nxt < now_ns:
        nxt = _cron_next(fields, tz, _round_second(now_ns))
    return nxt, True


def format_next(ns: int, tz: ZoneInfo | None) -> str:
    """A `Nats-Schedule-Next` value: RFC 3339 as Go's RFC3339Nano prints it, in the schedule's zone (`Z` for UTC)."""
    if tz is None:
        return timefmt.format_ns(ns)
    local = datetime.fromtimestamp(ns // _NS, tz)
    offset = local.utcoffset() or timedelta(0)
    frac = f".{ns % _NS:09d}".rstrip("0") if ns % _NS else ""
    if not offset:
        return local.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    return local.strftime("%Y-%m-%dT%H:%M:%S") + frac + f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _round_second(ns: int) -> int:
    return (ns + _NS // 2) // _NS * _NS


def _parse_cron(pattern: str) -> list[int]:
    parts = pattern.split()
    if len(parts) != 6:
        raise Invalid("cron needs 6 fields")
    return [_field(text, *bounds) for text, bounds in zip(parts, _BOUNDS, strict=True)]


def _field(text: str, low: int, high: int, names: dict[str, int] | None) -> int:
    bits = 0
    for expr in (e for e in text.split(",") if e):
        bits |= _range(expr, low, high, names)
    return bits


def _range(expr: str, low: int, high: int, names: dict[str, int] | None) -> int:
    span, *step_part = expr.split("/")
    ends = span.split("-")
    extra = 0
    if ends[0] in ("*", "?"):
        start, end, extra = low, high, _STAR
    else:
        if len(ends) > 2:
            raise Invalid(expr)
        start = _number(ends[0], names)
        end = _number(ends[1], names) if len(ends) == 2 else start
    step = 1
    if len(step_part) > 1:
        raise Invalid(expr)
    if step_part:
        step = _number(step_part[0], None)
        if len(ends) == 1:
            end = high
        if step > 1:
            extra = 0
    if start < low or end > high or start > end or step == 0:
        raise Invalid(expr)
    return sum(1 << i for i in range(start, end + 1, step)) | extra


def _number(text: str, names: dict[str, int] | None) -> int:
    if names and text.lower() in names:
        return names[text.lower()]
    if not _INT.match(text) or int(text) < 0:
        raise Invalid(text)
    return int(text)


def _day_matches(dom: int, dow: int, t: datetime) -> bool:
    dom_match = bool(1 << t.day & dom)
    dow_match = bool(1 << (t.isoweekday() % 7) & dow)
    if dom & _STAR or dow & _STAR:
        return dom_match and dow_match
    return dom_match or dow_match


def _cron_next(f: list[int], tz: ZoneInfo | None, ts_ns: int) -> int:
    """The first time after `ts_ns` the fields select (the robfig/cron walk nats-server uses), within 5 years."""
    t = datetime.fromtimestamp(ts_ns // _NS, tz or UTC).replace(microsecond=0) + timedelta(seconds=1)
    limit = t.year + _YEARS_AHEAD
    while t.year <= limit:
        t, found = _walk(t, *f)
        if found:
            return int(t.timestamp()) * _NS
    raise Invalid("pattern never fires")


def _walk(t: datetime, second: int, minute: int, hour: int, dom: int, month: int, dow: int) -> tuple[datetime, bool]:
    """One pass from `t`: -> (the time reached, True) or (where to resume, False) when a field wrapped over."""
    loc = t.tzinfo
    while not 1 << t.month & month:
        t = datetime(t.year + (t.month == 12), t.month % 12 + 1, 1, tzinfo=loc)
        if t.month == 1:
            return t, False
    while not _day_matches(dom, dow, t):
        t = datetime(t.year, t.month, t.day, tzinfo=loc) + timedelta(days=1)
        if t.day == 1:
            return t, False
    while not 1 << t.hour & hour:
        t = datetime(t.year, t.month, t.day, t.hour, tzinfo=loc) + timedelta(hours=1)
        if t.hour == 0:
            return t, False
    while not 1 << t.minute & minute:
        t = t.replace(second=0) + timedelta(minutes=1)
        if t.minute == 0:
            return t, False
    while not 1 << t.second & second:
        t = t + timedelta(seconds=1)
        if t.second == 0:
            return t, False
    return t, True
