"""The read side over committed data: load, last/next by subject (literal, wildcard, whole stream), subject
counts, the time search, and what a read snapshot sees while a later write is in flight."""

from __future__ import annotations

import tempfile
from pathlib import Path

import lmdb
from hypothesis import given, settings
from hypothesis import strategies as st

from streamd.store import reads
from streamd.store import stream as streams
from streamd.store.env import Store
from tests.unit.store.support import NOW, SECOND, make_stream, publish, write

SUBJECTS = ["s.a", "s.b.x", "s.a", "s.b.y", "s.c", "s.b.x"]  # seqs 1..6


def _filled(store: Store) -> streams.Stream:
    s = make_stream(store)
    for i, subject in enumerate(SUBJECTS):
        publish(store, s, subject, b"d%d" % (i + 1), now=NOW + i * SECOND)
    return s


def test_load_returns_what_was_stored(store: Store) -> None:
    s = make_stream(store)
    publish(store, s, "s.a", b"payload", hdrs={"X-Key": "v"})
    with store.read() as txn:
        found = reads.load(txn, s, 1)
        assert reads.load(txn, s, 2) is None
    assert found is not None
    assert (found.seq, found.subject, found.data, found.ts_ns) == (1, b"s.a", b"payload", NOW)
    assert found.hdrs == b"NATS/1.0\r\nX-Key: v\r\n\r\n"


def test_last_by_subject(store: Store) -> None:
    s = _filled(store)
    with store.read() as txn:
        assert [reads.last_by_subject(txn, s, f).seq for f in ("s.a", "s.b.*", "s.b.y", ">")] == [3, 6, 4, 6]  # type: ignore[union-attr]
        assert reads.last_by_subject(txn, s, "s.none") is None
        assert reads.last_by_subject(txn, s, "s.*.z") is None


def test_next_by_subject(store: Store) -> None:
    s = _filled(store)
    with store.read() as txn:

        def nxt(f: str, start: int) -> int | None:
            found = reads.next_by_subject(txn, s, f, start)
            return found.seq if found is not None else None

        assert [nxt("s.a", n) for n in (0, 1, 2, 4)] == [1, 1, 3, None]  # literal
        assert [nxt("s.b.*", n) for n in (1, 3, 5, 7)] == [2, 4, 6, None]  # wildcard
        assert [nxt(">", n) for n in (1, 5, 7)] == [1, 5, None]  # the whole stream
        assert [nxt("s.>", n) for n in (2, 6)] == [2, 6]  # covers the stream's subjects
        assert nxt("t.a", 1) is None


def test_subject_counts(store: Store) -> None:
    s = _filled(store)
    with store.read() as txn:
        assert reads.subject_counts(txn, s, ">") == {"s.a": 2, "s.b.x": 2, "s.b.y": 1, "s.c": 1}
        assert reads.subject_counts(txn, s, "s.b.*") == {"s.b.x": 2, "s.b.y": 1}
        assert reads.subject_counts(txn, s, "s.c") == {"s.c": 1}
        assert reads.subject_counts(txn, s, "s.d") == {}


def _start_at(txn: lmdb.Transaction, s: streams.Stream, ts_ns: int) -> int | None:
    """The first stored message a read from first_seq_at_or_after(ts) finds (the search may land in a gap)."""
    start = reads.first_seq_at_or_after(txn, s, ts_ns)
    found = reads.next_by_subject(txn, s, ">", start)
    return found.seq if found is not None else None


def test_first_seq_at_or_after_a_time(store: Store) -> None:
    s = _filled(store)
    write(store, lambda b: streams.delete_seq(b, s, 3))  # a gap must not confuse the search
    with store.read() as txn:
        assert [_start_at(txn, s, NOW + i * SECOND) for i in range(7)] == [1, 2, 4, 4, 5, 6, None]
        assert _start_at(txn, s, 0) == 1
        assert _start_at(txn, s, NOW + SECOND // 2) == 2
        assert reads.first_seq_at_or_after(txn, s, NOW + 9 * SECOND) == 7  # after the last: the next to come


@settings(max_examples=40, deadline=None)
@given(gaps=st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=30), probe=st.integers(0, 100))
def test_first_seq_at_or_after_matches_a_scan(gaps: list[int], probe: int) -> None:
    """Against a plain scan: times that repeat and jump (stored times only grow)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp), sync=False)
        try:
            s = make_stream(store)
            t = NOW
            for gap in gaps:
                t += gap * SECOND
                publish(store, s, "s.x", now=t)
            ts = NOW + probe * SECOND // 2
            with store.read() as txn:
                times = [reads.load(txn, s, seq).ts_ns for seq in range(1, len(gaps) + 1)]  # type: ignore[union-attr]
                expected = next((i + 1 for i, at in enumerate(times) if at >= ts), None)
                assert _start_at(txn, s, ts) == expected
        finally:
            store.close()


def test_a_read_snapshot_does_not_see_a_later_commit(store: Store) -> None:
    s = _filled(store)
    with store.read() as txn:
        publish(store, s, "s.a")  # commits while the read transaction is open
        assert reads.load(txn, s, 7) is None
        assert reads.subject_counts(txn, s, "s.a") == {"s.a": 2}
    with store.read() as txn:
        assert reads.subject_counts(txn, s, "s.a") == {"s.a": 3}
