from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamd.store import layout as store
from streamd.wire import errors, headers, timefmt

# nats-server's errors.json, cut to the entries streamd answers with (tests/data/errors.json)
CATALOGUE = Path(__file__).resolve().parents[1] / "data" / "errors.json"


@given(st.integers(min_value=1, max_value=2**63 - 1))
def test_time_format_round_trips(ns: int) -> None:
    text = timefmt.format_ns(ns)
    assert text.endswith("Z") and "+" not in text
    assert timefmt.parse(text) == ns


def test_zero_time_and_offsets() -> None:
    assert timefmt.format_ns(0) == "0001-01-01T00:00:00Z"
    assert timefmt.parse("0001-01-01T00:00:00Z") == 0
    assert timefmt.parse("2026-11-28T07:28:10.5+01:00") == timefmt.parse("2026-11-28T06:28:10.5Z")
    with pytest.raises(ValueError):
        timefmt.parse("yesterday")


@given(st.binary(min_size=1, max_size=40), st.binary(max_size=80), st.binary(max_size=200), st.integers(0, 2**63))
def test_message_record_round_trips(subject: bytes, hdrs: bytes, data: bytes, ts: int) -> None:
    raw = store.pack_message(subject, hdrs or None, data, ts)
    assert store.unpack_message(raw) == (subject, hdrs, data, ts)
    assert store.message_time(raw) == ts
    assert store.message_subject(raw) == subject
    assert store.record_size(raw) == store.stored_size(len(subject), len(hdrs), len(data))


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_sequence_keys_sort_as_integers(a: int, b: int) -> None:
    assert (store.SEQ.pack(a) < store.SEQ.pack(b)) == (a < b)


@given(st.builds(store.Counters, *(st.integers(0, 2**63) for _ in range(7)), last_msg_id=st.binary(max_size=30)))
def test_counters_round_trip(c: store.Counters) -> None:
    assert store.Counters.unpack(c.pack()) == c


def test_header_lookup_keeps_first_value_and_skips_others() -> None:
    block = b"NATS/1.0\r\nX-A: 1\r\nNats-Msg-Id: abc\r\nNats-Msg-Id: def\r\nNats-Rollup: sub\r\n\r\n"
    assert headers.parse(block) == {b"Nats-Msg-Id": b"abc", b"Nats-Rollup": b"sub"}
    assert headers.parse(b"NATS/1.0\r\nX-A: 1\r\n\r\n") == {}
    assert headers.status(404, "No Messages") == b"NATS/1.0 404 No Messages\r\n\r\n"
    built = headers.build([("Nats-Sequence", "5")], b"NATS/1.0\r\nX-A: 1\r\n\r\n")
    assert built == b"NATS/1.0\r\nX-A: 1\r\nNats-Sequence: 5\r\n\r\n"


def test_error_codes_match_the_jetstream_catalogue() -> None:
    table = {e["error_code"]: e for e in json.loads(CATALOGUE.read_text())}
    for name, kind in errors.ALL_KINDS.items():
        assert kind.err_code in table, f"{name}: copy nats-server's entry {kind.err_code} into tests/data/errors.json"
        entry = table[kind.err_code]
        assert entry["code"] == kind.code, name
        assert entry["description"] == kind.template, name
