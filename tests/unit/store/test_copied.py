"""The write path of copied messages: mirrors at the origin's sequence and time, sources with their progress."""

from __future__ import annotations

from streamd.store import copied
from streamd.store.env import Store
from streamd.store.layout import unpack_message
from streamd.streams import copying
from streamd.wire.models import StreamSource
from tests.unit.store.support import NOW, make_stream, publish, write


def _msg(seq: int, subject: bytes = b"o.x", hdrs: bytes | None = None) -> copied.Copied:
    return copied.Copied(seq, NOW - 1000 + seq, subject, hdrs, b"m%d" % seq)


def test_mirror_stores_at_origin_sequences_and_times_and_skips_what_it_has(store: Store) -> None:
    m = make_stream(store, "M", subjects=["unused.m"])
    assert write(store, lambda b: copied.store_mirrored(b, m, [_msg(1), _msg(2), _msg(5)])) == 3
    assert write(store, lambda b: copied.store_mirrored(b, m, [_msg(5), _msg(4), _msg(6)])) == 1  # 4, 5 known
    c = m.committed
    assert (c.first_seq, c.last_seq, c.messages, c.last_ns) == (1, 6, 4, NOW - 1000 + 6)
    assert m.num_deleted() == 2
    with store.read() as txn:
        raw = txn.get(m.dbs.mkey(5), db=m.dbs.msgs)
        assert raw is not None and unpack_message(raw)[3] == NOW - 1000 + 5


def test_source_progress_is_recorded_with_the_messages_and_found_again_in_headers(store: Store) -> None:
    s = make_stream(store, "S", subjects=["s.>"])
    iname = copying.index_name(StreamSource(name="O"))
    batch = [
        copied.Copied(seq, 0, b"s.x", copying.sourced_headers(None, iname, seq, b"s.x", "Id3nt1ty"), b"d")
        for seq in (3, 4, 9)
    ]
    assert write(store, lambda b: copied.store_sourced(b, s, iname, batch, "Id3nt1ty")) is None
    publish(store, s, "s.own")  # a message of its own, after the sourced ones
    with store.read() as txn:
        assert copied.source_progress(txn, store.meta, s.id, iname) == (9, "Id3nt1ty")
        assert copied.scan_source_headers(txn, s, {iname, "P > >"}) == {iname: (9, "Id3nt1ty")}


def test_a_refused_source_message_stops_the_batch_before_it(store: Store) -> None:
    s = make_stream(store, "S", subjects=["s.>"], max_msgs=2, discard="new")
    iname = "O > >"
    batch = [copied.Copied(seq, 0, b"s.x", None, b"d") for seq in (1, 2, 3)]
    refusal = write(store, lambda b: copied.store_sourced(b, s, iname, batch))
    assert refusal is not None and refusal.err_code == 10077
    with store.read() as txn:
        assert copied.source_progress(txn, store.meta, s.id, iname) == (2, "")
    assert s.committed.messages == 2
