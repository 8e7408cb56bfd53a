"""The store's import: records are checked before they are written (order, range, subjects, times), everything is
written under a hidden id that only `finish` makes a stream, and an export of the result is the same snapshot."""

from __future__ import annotations

import pytest

from streamd.store import snapshot as snap
from streamd.store.env import Store
from streamd.store.stream import MAX_SEQ
from streamd.wire.models import StreamConfig
from tests.unit.store.support import NOW, make_stream, publish, write

CFG = StreamConfig(name="R", subjects=["r.>"])


def _importer(store: Store, head: snap.Head) -> snap.Importer:
    imp = snap.Importer(CFG)
    write(store, imp.reserve)
    write(store, lambda b: imp.apply(b, [head]))
    imp.committed()
    return imp


@pytest.mark.parametrize(
    ("items", "why"),
    [
        ([(2, 1, b"r.a", b"", b""), (2, 1, b"r.a", b"", b"")], "out of order"),
        ([(5, 1, b"r.a", b"", b""), (3, 1, b"r.a", b"", b"")], "out of order"),
        ([(11, 1, b"r.a", b"", b"")], "outside the snapshot's range"),
        ([(0, 1, b"r.a", b"", b"")], "out of order"),
        ([(1, -1, b"r.a", b"", b"")], "invalid time"),
        ([(1, 1, b"", b"", b"")], "invalid subject"),
        ([(1, 1, b"r.\xff", b"", b"")], "not UTF-8"),
        ([(1, 1, b"r." + b"x" * 5000, b"", b"")], "invalid subject"),
    ],
)
def test_bad_messages_are_refused(store: Store, items: list[snap.MsgItem], why: str) -> None:
    imp = _importer(store, snap.Head(snap.VERSION, CFG, NOW, 1, 10, NOW))
    with pytest.raises(snap.SnapshotError, match=why):
        write(store, lambda b: imp.apply(b, [snap.Msgs(items)]))


@pytest.mark.parametrize(
    "head",
    [
        snap.Head(2, CFG, NOW, 1, 10, NOW),
        snap.Head(snap.VERSION, CFG, NOW, 5, 2, NOW),
        snap.Head(snap.VERSION, CFG, NOW, 1, MAX_SEQ + 1, NOW),
        snap.Head(snap.VERSION, CFG, -1, 1, 10, NOW),
    ],
)
def test_bad_headers_are_refused(store: Store, head: snap.Head) -> None:
    imp = snap.Importer(CFG)
    with pytest.raises(snap.SnapshotError):
        write(store, lambda b: imp.apply(b, [head]))


def test_import_is_invisible_until_finished_and_exports_the_same(store: Store) -> None:
    src = make_stream(store, "S")
    for i in range(5):
        publish(store, src, f"s.{i % 2}", b"m%d" % i, {"Nats-Msg-Id": f"id{i}"} if i == 3 else None, now=NOW + i)
    exporter = snap.Exporter()
    c = src.committed
    data = exporter.start(snap.Head(snap.VERSION, src.config, src.created_ns, c.first_seq, c.last_seq, c.last_ns))
    piece, _next = snap.export_step(store, src, exporter, 1, c.last_seq)
    data += piece + exporter.end()

    decoder = snap.Decoder()
    decoder.feed(data)
    records = decoder.step()
    decoder.check_complete()
    imp = snap.Importer(CFG)
    sid = write(store, imp.reserve)
    write(store, lambda b: imp.apply(b, records))
    imp.committed()
    assert sid in store.dropped()
    with store.read() as txn:
        assert store.get_stream_record(txn, "R") is None
    write(store, lambda b: imp.finish(b, CFG, NOW, []))
    assert sid not in store.dropped()
    assert (imp.counters.messages, imp.counters.first_seq, imp.counters.last_seq) == (5, 1, 5)
    assert imp.counters.num_subjects == 2 and imp.counters.total_bytes == c.total_bytes
    assert imp.counters.first_ns == c.first_ns and imp.counters.last_ns == c.last_ns
    with store.read() as txn:
        assert txn.get(imp.dbs.prefix + b"id3", db=store.tables.dedup) is not None  # Nats-Msg-Id index rebuilt
    with pytest.raises(snap.SnapshotError, match="already in use"):  # the name was taken meanwhile
        write(store, lambda b: imp.finish(b, CFG, NOW, []))


def test_records_are_applied_in_bounded_groups() -> None:
    head = snap.Head(snap.VERSION, CFG, NOW, 1, 10, NOW)
    items: list[snap.MsgItem] = [(s, s, b"r.a", b"", b"") for s in range(1, 11)]
    groups = list(snap.in_groups([head, snap.Msgs(items[:7]), snap.Msgs(items[7:])], size=3))
    sizes = [[len(r.items) if isinstance(r, snap.Msgs) else 0 for r in g] for g in groups]
    assert sizes == [[0, 3], [3], [1, 2], [1]]
    flat = [i for g in groups for r in g if isinstance(r, snap.Msgs) for i in r.items]
    assert flat == items


def test_a_repeated_apply_counts_nothing_twice(store: Store) -> None:
    """The writer re-runs a call after growing the map (or alone after a failed batch): same result."""
    imp = _importer(store, snap.Head(snap.VERSION, CFG, NOW, 1, 10, NOW))
    msgs = snap.Msgs([(s, s, b"r.%d" % (s % 2), b"", b"x") for s in range(1, 6)])
    txn = store.begin_write()
    from streamd.store import stream as streams

    imp.apply(streams.Batch(store, txn, NOW), [msgs])
    txn.abort()  # as on MapFullError: nothing of it is stored
    write(store, lambda b: imp.apply(b, [msgs]))
    imp.committed()
    assert (imp.messages, imp.counters.messages, imp.counters.num_subjects) == (5, 5, 2)
