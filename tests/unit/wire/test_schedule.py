"""Schedule patterns as nats-server reads them (server/scheduler.go, server/cron.go): pure functions."""

from __future__ import annotations

import pytest

from streamd.wire import schedule, timefmt

NS = 1_000_000_000
T0 = timefmt.parse("2026-03-28T10:15:30.4Z")  # a Saturday; Europe/Paris moves to summer time the next night


def _fire(pattern: str, tz: str | None = None, ts: int = T0, now: int = T0) -> tuple[str, bool]:
    nxt, repeat = schedule.next_fire(pattern, schedule.zone(tz.encode() if tz else None), ts, now)
    return timefmt.format_ns(nxt), repeat


@pytest.mark.parametrize(
    ("pattern", "tz", "want"),
    [
        ("@at 2030-01-02T03:04:05+01:00", None, ("2030-01-02T02:04:05Z", False)),
        ("@at 2020-01-01T00:00:00Z", None, ("2020-01-01T00:00:00Z", False)),  # past: fires at once
        ("@every 1m", None, ("2026-03-28T10:16:30Z", True)),  # from the time rounded to the second
        ("@every 1.5s", None, ("2026-03-28T10:15:31.5Z", True)),
        ("*/20 * * * * *", None, ("2026-03-28T10:15:40Z", True)),
        ("0 0 * * * *", None, ("2026-03-28T11:00:00Z", True)),
        ("@hourly", None, ("2026-03-28T11:00:00Z", True)),
        ("@daily", None, ("2026-03-29T00:00:00Z", True)),
        ("@weekly", None, ("2026-03-29T00:00:00Z", True)),  # Sunday
        ("@monthly", None, ("2026-04-01T00:00:00Z", True)),
        ("@yearly", None, ("2027-01-01T00:00:00Z", True)),
        ("0 30 9 * * mon-fri", None, ("2026-03-30T09:30:00Z", True)),
        ("0 30 9 * * MON-FRI", "Europe/Paris", ("2026-03-30T07:30:00Z", True)),  # summer time: UTC+2
        ("0 0 12 1,15 * ?", None, ("2026-04-01T12:00:00Z", True)),
        ("0 0 0 29 feb *", None, ("2028-02-29T00:00:00Z", True)),
        ("0 0 0 13 * fri", None, ("2026-04-03T00:00:00Z", True)),  # neither is `*`: the 13th or a Friday
    ],
)
def test_next_fire(pattern: str, tz: str | None, want: tuple[str, bool]) -> None:
    assert _fire(pattern, tz) == want


def test_a_repeating_schedule_overdue_after_an_outage_skips_ahead_once() -> None:
    later = T0 + 3600 * NS
    assert _fire("@every 1m", now=later)[0] == timefmt.format_ns(later // NS * NS + 60 * NS)
    assert _fire("0 * * * * *", now=later)[0] == "2026-03-28T11:16:00Z"


@pytest.mark.parametrize(
    ("pattern", "tz"),
    [
        ("@every 999ms", None),
        ("@every x", None),
        ("@at 2030-01-01", None),
        ("@at 2030-01-01T00:00:00Z", "UTC"),  # no zone with @at or @every
        ("@every 1m", "UTC"),
        ("* * * * *", None),  # 5 fields: seconds are required
        ("60 * * * * *", None),
        ("* * * 0 * *", None),
        ("* * * * 13 *", None),
        ("5-1 * * * * *", None),
        ("*/0 * * * * *", None),
        ("1-2-3 * * * * *", None),
        ("*/2/2 * * * * *", None),
        ("-1 * * * * *", None),
        ("0 0 0 30 2 *", None),  # never within five years
        ("@reboot", None),
        ("", None),
    ],
)
def test_invalid_patterns(pattern: str, tz: str | None) -> None:
    with pytest.raises(schedule.Invalid):
        _fire(pattern, tz)


@pytest.mark.parametrize("value", [b"", b"Mars/Olympus", b"../../etc/passwd", b"/etc/localtime", b"\xff"])
def test_invalid_zones(value: bytes) -> None:
    with pytest.raises(schedule.Invalid):
        schedule.zone(value)


def test_next_times_are_written_as_go_prints_them_in_the_schedules_zone() -> None:
    paris = schedule.zone(b"Europe/Paris")
    summer = timefmt.parse("2026-03-30T07:30:00Z")
    assert schedule.format_next(summer, paris) == "2026-03-30T09:30:00+02:00"
    assert schedule.format_next(summer, schedule.zone(b"America/St_Johns")) == "2026-03-30T05:00:00-02:30"
    assert schedule.format_next(summer, schedule.zone(b"UTC")) == "2026-03-30T07:30:00Z"
    assert schedule.format_next(summer + 5 * 10**8, None) == "2026-03-30T07:30:00.5Z"
