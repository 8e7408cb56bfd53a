"""One Go-duration parser and formatter (streamd.wire.durations), checked against what Go's time package does."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamd.wire import durations


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("-0", 0),
        ("5s", 5 * 10**9),
        ("1.5s", 1_500_000_000),
        (".5s", 500_000_000),
        ("1.s", 10**9),
        ("300us", 300_000),
        ("300µs", 300_000),
        ("300μs", 300_000),
        ("7ns", 7),
        ("1h2m3s", 3723 * 10**9),
        ("-2s", -2 * 10**9),
        ("+2ms", 2 * 10**6),
        ("", None),
        ("5", None),
        ("s", None),
        (".s", None),
        ("5x", None),
        ("٥s", None),
        ("9999999999h", None),
    ],
)
def test_go_durations(text: str, ns: int | None) -> None:
    if ns is None:
        with pytest.raises(ValueError):
            durations.parse(text)
    else:
        assert durations.parse(text) == ns


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (1_500, "1.5µs"),
        (500 * 10**6, "500ms"),
        (1_500_000_000, "1.5s"),
        (60 * 10**9, "1m0s"),
        (3600 * 10**9, "1h0m0s"),
        (3723 * 10**9 + 5, "1h2m3.000000005s"),
        (-2 * 10**9, "-2s"),
        (durations.MAX, "2562047h47m16.854775807s"),
    ],
)
def test_format_is_go_duration_string(ns: int, text: str) -> None:
    assert durations.format(ns) == text


@given(st.integers(min_value=-durations.MAX, max_value=durations.MAX))
def test_format_then_parse_is_identity(ns: int) -> None:
    assert durations.parse(durations.format(ns)) == ns


def test_days_only_where_asked() -> None:
    assert durations.parse("2d1h", days=True) == 49 * 3600 * 10**9
    with pytest.raises(ValueError):
        durations.parse("2d")


def test_compact_form_for_people() -> None:
    assert durations.format(5400 * 10**9, compact=True) == "1h30m"
    assert durations.format(90_061 * 10**9, compact=True) == "1d1h1m1s"
    assert durations.format(1_500_000, compact=True) == "1.5ms"
    assert durations.format(-5, compact=True) == "0s"
