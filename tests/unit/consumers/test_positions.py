"""Where a new consumer starts (each deliver policy) and what it reads next, on a real LMDB store in a temp
directory."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from streamd.consumers import positions
from streamd.consumers.reader import TREE_FILTERS, Reader
from streamd.store import stream as streams
from streamd.store.env import Store
from streamd.store.layout import Counters, StreamRecord
from streamd.streams import rules as config_rules
from streamd.wire import timefmt
from streamd.wire.models import ConsumerConfig, DeliverPolicy, StreamConfig

# Stream seqs 1..6: a.1 a.2 b.1 a.1 b.1 a.2
SUBJECTS = [b"a.1", b"a.2", b"b.1", b"a.1", b"b.1", b"a.2"]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "data", sync=False)
    yield s
    s.close()


def _stream(s: Store) -> streams.Stream:
    cfg = config_rules.normalize(StreamConfig(name="S", subjects=["a.*", "b.*"]))
    with s.env.begin(write=True) as txn:
        sid = s.next_stream_id(txn)
        s.put_stream(txn, StreamRecord(sid, cfg, time.time_ns()))
        s.put_counters(txn, sid, Counters())
    return streams.Stream(sid, cfg, time.time_ns(), Counters(), s.open_stream_dbs(sid))


def _publish(s: Store, stream: streams.Stream, subjects: list[bytes]) -> int:
    """Store `subjects` in one transaction; -> the time just before."""
    before = time.time_ns()
    with s.env.begin(write=True) as txn:
        b = streams.Batch(s, txn, time.time_ns())
        for subject in subjects:
            streams.store_message(b, stream, subject, None, b"x")
        s.put_counters(txn, stream.id, stream.counters)
    stream.committed = msgspec.structs.replace(stream.counters)
    return before


@pytest.fixture
def stream(store: Store) -> streams.Stream:
    st = _stream(store)
    _publish(store, st, SUBJECTS)
    return st


def _start(store: Store, stream: streams.Stream, filters: list[str], **kw: object) -> positions.Start:
    return positions.initial_position(store, stream, ConsumerConfig(**kw), filters)  # type: ignore[arg-type]


def test_all_and_new(store: Store, stream: streams.Stream) -> None:
    assert _start(store, stream, []) == (1, [], 6)
    assert _start(store, stream, ["a.*"]) == (1, [], 4)
    assert _start(store, stream, [], deliver_policy=DeliverPolicy.NEW) == (7, [], 0)


def test_by_start_sequence(store: Store, stream: streams.Stream) -> None:
    assert _start(store, stream, [], deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=4) == (4, [], 3)
    assert _start(store, stream, ["b.1"], deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=4) == (
        4,
        [],
        1,
    )


def test_by_start_time(store: Store, stream: streams.Stream) -> None:
    later = _publish(store, stream, [b"b.1", b"a.1"])
    at = timefmt.format_ns(later)
    assert _start(store, stream, [], deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=at) == (7, [], 2)


def test_last(store: Store, stream: streams.Stream) -> None:
    assert _start(store, stream, [], deliver_policy=DeliverPolicy.LAST) == (6, [], 1)
    assert _start(store, stream, ["b.1"], deliver_policy=DeliverPolicy.LAST) == (5, [], 1)
    assert _start(store, stream, ["c.1"], deliver_policy=DeliverPolicy.LAST) == (7, [], 0)


def test_last_per_subject(store: Store, stream: streams.Stream) -> None:
    start = _start(store, stream, ["a.*"], deliver_policy=DeliverPolicy.LAST_PER_SUBJECT)
    assert start == (4, [4, 6], 2)
    assert _start(store, stream, ["c.*"], deliver_policy=DeliverPolicy.LAST_PER_SUBJECT) == (7, [], 0)


def test_pending_of_a_recovered_consumer(store: Store, stream: streams.Stream) -> None:
    assert positions.pending(store, stream, [], 2, []) == 4
    assert positions.pending(store, stream, ["a.*"], 0, [4, 6]) == 2  # nothing after its last-per-subject seqs


def test_reader_reads_last_per_subject_first_then_what_follows(store: Store, stream: streams.Stream) -> None:
    r = Reader(resume_seq=1)
    r.set_filters(["a.*"])
    r.lps.extend([2, 4])
    got = [r.next_new(store, stream, 0)]
    _publish(store, stream, [b"a.9", b"b.9"])  # seqs 7, 8: after the snapshot
    got.append(r.next_new(store, stream, 2))
    got.append(r.next_new(store, stream, 4))
    assert [f.seq if f else None for f in got] == [2, 4, 6]
    assert r.next_new(store, stream, 6) is not None  # seq 7
    assert r.next_new(store, stream, 7) is None


def test_reader_unread_and_forget(store: Store, stream: streams.Stream) -> None:
    r = Reader(resume_seq=1)
    r.set_filters([])
    first = r.next_new(store, stream, 0)
    assert first is not None and first.seq == 1
    r.unread(first)
    again = r.next_new(store, stream, 0)
    assert again is not None and again.seq == 1
    r.forget(3, delivered_seq=1)  # a prefetched message left: read again after what was delivered
    assert not r.buffer and r.resume_seq == 2


def test_reader_matches_through_a_tree_past_many_filters() -> None:
    r = Reader(resume_seq=1)
    r.set_filters([f"f.{i}" for i in range(TREE_FILTERS + 1)] + ["g.*"])
    assert r.tree is not None
    assert r.matches("g.x") and r.matches("f.3") and not r.matches("h")
    r.set_filters(["g.*"])
    assert r.tree is None and r.matches("g.x")
