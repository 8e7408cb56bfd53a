"""store_message and the rest of a stream's write path on a real LMDB: sequencing, header rules, dedup, rollup,
discard policies, limits, age, purge and delete. Refusals carry the error table's codes."""

from __future__ import annotations

import pytest

from streamd.store import atomic, layout, reads, retention
from streamd.store import stream as streams
from streamd.store.env import Store
from streamd.wire import errors, headers
from streamd.wire.models import Discard, Retention
from tests.unit.store.support import NOW, SECOND, make_stream, publish, seqs, write


def _refused(kind: errors.ErrorKind, store: Store, stream: streams.Stream, subject: str, **kw: object) -> None:
    with pytest.raises(errors.ApiError) as info:
        publish(store, stream, subject, **kw)  # type: ignore[arg-type]
    assert (info.value.code, info.value.err_code) == (kind.code, kind.err_code)


def test_sequences_count_up_and_counters_follow(store: Store) -> None:
    s = make_stream(store)
    assert [publish(store, s, f"s.{i % 2}", b"abc") for i in range(4)] == [(i, False) for i in range(1, 5)]
    c = s.committed
    assert (c.first_seq, c.last_seq, c.messages, c.num_subjects) == (1, 4, 4, 2)
    assert c.total_bytes == 4 * layout.stored_size(3, 0, 3)
    assert c.first_ns == c.last_ns == NOW
    with store.read() as txn:  # what the batch persisted is what a restart reads
        assert store.get_counters(txn, s.id) == c


def test_first_seq_applies_to_the_first_message_only(store: Store) -> None:
    s = make_stream(store, first_seq=100)
    assert publish(store, s, "s.a") == (100, False)
    assert publish(store, s, "s.a") == (101, False)


def test_the_last_sequence_refuses_a_next_message(store: Store) -> None:
    s = make_stream(store, first_seq=streams.MAX_SEQ)
    assert publish(store, s, "s.a")[0] == streams.MAX_SEQ
    _refused(errors.STORE_FAILED, store, s, "s.a")


def test_msg_id_deduplicates_within_the_window_only(store: Store) -> None:
    s = make_stream(store, duplicate_window=10 * SECOND)
    assert publish(store, s, "s.a", hdrs={"Nats-Msg-Id": "m1"}) == (1, False)
    assert publish(store, s, "s.a", hdrs={"Nats-Msg-Id": "m1"}, now=NOW + 5 * SECOND) == (1, True)
    assert publish(store, s, "s.a", hdrs={"Nats-Msg-Id": "m2"}) == (2, False)
    assert publish(store, s, "s.a", hdrs={"Nats-Msg-Id": "m1"}, now=NOW + 11 * SECOND) == (3, False)
    assert seqs(store, s) == [1, 2, 3]


def test_expired_dedup_entries_are_trimmed(store: Store) -> None:
    s = make_stream(store, duplicate_window=10 * SECOND)
    publish(store, s, "s.a", hdrs={"Nats-Msg-Id": "m1"})
    write(store, lambda b: retention.expire(b, s), now=NOW + 11 * SECOND)
    with store.read() as txn:
        assert txn.get(s.dbs.prefix + b"m1", db=s.dbs.dedup) is None
        assert retention.next_deadline(s, txn) == 0


def test_a_long_msg_id_is_kept_as_a_digest(store: Store) -> None:
    s = make_stream(store)
    long_id = "i" * 1000
    assert publish(store, s, "s.a", hdrs={"Nats-Msg-Id": long_id}) == (1, False)
    assert publish(store, s, "s.a", hdrs={"Nats-Msg-Id": long_id}) == (1, True)
    assert s.committed.last_msg_id == streams.dedup_key(long_id.encode()) != long_id.encode()


def test_expected_last_sequence_headers(store: Store) -> None:
    s = make_stream(store)
    publish(store, s, "s.a")
    publish(store, s, "s.b")
    assert publish(store, s, "s.a", hdrs={"Nats-Expected-Last-Sequence": "2"})[0] == 3
    _refused(errors.WRONG_LAST_SEQUENCE, store, s, "s.a", hdrs={"Nats-Expected-Last-Sequence": "2"})
    assert publish(store, s, "s.b", hdrs={"Nats-Expected-Last-Subject-Sequence": "2"})[0] == 4
    _refused(errors.WRONG_LAST_SEQUENCE, store, s, "s.b", hdrs={"Nats-Expected-Last-Subject-Sequence": "2"})
    _refused(errors.WRONG_LAST_SEQUENCE, store, s, "s.new", hdrs={"Nats-Expected-Last-Subject-Sequence": "1"})
    assert publish(store, s, "s.new", hdrs={"Nats-Expected-Last-Subject-Sequence": "0"})[0] == 5
    # The subject the expectation is about may differ from the one published to, and be a wildcard.
    wild = {"Nats-Expected-Last-Subject-Sequence": "4", "Nats-Expected-Last-Subject-Sequence-Subject": "s.*"}
    _refused(errors.WRONG_LAST_SEQUENCE, store, s, "s.c", hdrs=wild)
    wild["Nats-Expected-Last-Subject-Sequence"] = "5"
    assert publish(store, s, "s.c", hdrs=wild)[0] == 6
    _refused(errors.BAD_REQUEST, store, s, "s.a", hdrs={"Nats-Expected-Last-Sequence": "six"})
    assert seqs(store, s) == [1, 2, 3, 4, 5, 6]


def test_expected_stream_and_last_msg_id(store: Store) -> None:
    s = make_stream(store)
    _refused(errors.EXPECTED_STREAM, store, s, "s.a", hdrs={"Nats-Expected-Stream": "OTHER"})
    assert publish(store, s, "s.a", hdrs={"Nats-Expected-Stream": "S", "Nats-Msg-Id": "a"})[0] == 1
    _refused(errors.WRONG_LAST_MSG_ID, store, s, "s.a", hdrs={"Nats-Expected-Last-Msg-Id": "b"})
    assert publish(store, s, "s.a", hdrs={"Nats-Expected-Last-Msg-Id": "a"})[0] == 2
    assert seqs(store, s) == [1, 2]


def test_refusals_at_the_door(store: Store) -> None:
    s = make_stream(store, max_msg_size=10)
    _refused(errors.MESSAGE_TOO_BIG, store, s, "s.a", data=b"x" * 11)
    _refused(errors.STORE_FAILED, store, s, "s." + "x" * streams.MAX_SUBJECT)
    big_header = {"X-Big": "h" * (streams.MAX_HEADER + 1)}
    _refused(errors.HEADER_TOO_BIG, store, s, "s.a", hdrs=big_header)
    _refused(errors.MSG_TTL_DISABLED, store, s, "s.a", hdrs={"Nats-TTL": "5s"})
    with pytest.raises(errors.ApiError) as info:
        write(store, lambda b: streams.store_message(b, s, b"s.\xff", None, b""))
    assert info.value.err_code == errors.STORE_FAILED.err_code
    s.config.sealed = True
    _refused(errors.SEALED, store, s, "s.a")
    s.deleted = True
    _refused(errors.STREAM_NOT_FOUND, store, s, "s.a")
    assert seqs(store, s) == []


def test_per_message_ttl(store: Store) -> None:
    s = make_stream(store, allow_msg_ttl=True)
    _refused(errors.MSG_TTL_INVALID, store, s, "s.a", hdrs={"Nats-TTL": "soon"})
    _refused(errors.MSG_TTL_INVALID, store, s, "s.a", hdrs={"Nats-TTL": "500ms"})
    publish(store, s, "s.a", hdrs={"Nats-TTL": "2s"})
    publish(store, s, "s.b", hdrs={"Nats-TTL": "never"})
    publish(store, s, "s.c", hdrs={"Nats-TTL": "3"})  # plain seconds
    with store.read() as txn:
        assert retention.next_deadline(s, txn) == NOW + 2 * SECOND
    write(store, lambda b: retention.expire(b, s), now=NOW + 2 * SECOND)
    assert seqs(store, s) == [2, 3]
    write(store, lambda b: retention.expire(b, s), now=NOW + 3 * SECOND)
    assert seqs(store, s) == [2]


def test_rollup_sub_and_all(store: Store) -> None:
    s = make_stream(store, allow_rollup_hdrs=True)
    for subject in ("s.a", "s.b", "s.a", "s.b"):
        publish(store, s, subject)
    assert publish(store, s, "s.a", hdrs={"Nats-Rollup": "sub"})[0] == 5
    assert seqs(store, s) == [2, 4, 5]
    assert publish(store, s, "s.b", hdrs={"Nats-Rollup": "all"})[0] == 6
    assert seqs(store, s) == [6]
    assert (s.committed.first_seq, s.committed.messages, s.committed.num_subjects) == (6, 1, 1)
    _refused(errors.ROLLUP_FAILED, store, s, "s.b", hdrs={"Nats-Rollup": "some"})
    plain = make_stream(store, "P")
    _refused(errors.ROLLUP_FAILED, store, plain, "p.a", hdrs={"Nats-Rollup": "all"})


def test_discard_old_drops_the_oldest(store: Store) -> None:
    s = make_stream(store, max_msgs=3)
    for i in range(5):
        publish(store, s, f"s.{i}")
    assert seqs(store, s) == [3, 4, 5]
    assert (s.committed.first_seq, s.committed.messages, s.committed.num_subjects) == (3, 3, 3)
    size = layout.stored_size(3, 0, 1)
    b = make_stream(store, "B", max_bytes=2 * size)
    for _ in range(4):
        publish(store, b, "b.a")
    assert seqs(store, b) == [3, 4]
    assert b.committed.total_bytes == 2 * size


def test_discard_new_refuses_and_keeps_what_is_stored(store: Store) -> None:
    s = make_stream(store, max_msgs=2, discard=Discard.NEW)
    publish(store, s, "s.a")
    publish(store, s, "s.b")
    _refused(errors.STORE_FAILED, store, s, "s.c")
    assert seqs(store, s) == [1, 2] and s.committed.last_seq == 2
    b = make_stream(store, "B", max_bytes=layout.stored_size(3, 0, 5), discard=Discard.NEW)
    publish(store, b, "b.a", b"12345")
    _refused(errors.STORE_FAILED, store, b, "b.a", data=b"1")


def test_max_msgs_per_subject_and_discard_new_per_subject(store: Store) -> None:
    s = make_stream(store, max_msgs_per_subject=2)
    for subject in ("s.a", "s.a", "s.b", "s.a"):
        publish(store, s, subject)
    assert seqs(store, s) == [2, 3, 4]
    n = make_stream(store, "N", max_msgs_per_subject=1, discard=Discard.NEW, discard_new_per_subject=True)
    publish(store, n, "n.a")
    _refused(errors.STORE_FAILED, store, n, "n.a")
    assert publish(store, n, "n.b")[0] == 2


def test_max_age_expires_from_the_front(store: Store) -> None:
    s = make_stream(store, max_age=10 * SECOND)
    publish(store, s, "s.a", now=NOW)
    publish(store, s, "s.b", now=NOW + 5 * SECOND)
    with store.read() as txn:
        assert retention.next_deadline(s, txn) == NOW + 10 * SECOND
    write(store, lambda b: retention.expire(b, s), now=NOW + 10 * SECOND)
    assert seqs(store, s) == [2]
    write(store, lambda b: retention.expire(b, s), now=NOW + 15 * SECOND)
    assert seqs(store, s) == [] and s.committed.first_seq == 3 and s.committed.num_subjects == 0


def test_max_age_leaves_a_subject_delete_marker(store: Store) -> None:
    s = make_stream(store, max_age=10 * SECOND, subject_delete_marker_ttl=5 * SECOND)
    publish(store, s, "s.a")
    write(store, lambda b: retention.expire(b, s), now=NOW + 10 * SECOND)
    with store.read() as txn:
        marker = reads.load(txn, s, 2)
    assert marker is not None and marker.subject == b"s.a"
    assert b"Nats-Marker-Reason: MaxAge" in marker.hdrs and b"Nats-TTL: 5s" in marker.hdrs


def test_interest_retention_without_interest_uses_the_sequence_only(store: Store) -> None:
    s = make_stream(store, retention=Retention.INTEREST)
    assert publish(store, s, "s.a") == (1, False)
    assert seqs(store, s) == [] and s.committed.first_seq == 2 and s.committed.last_seq == 1
    s.has_interest = lambda subject: True
    assert publish(store, s, "s.a") == (2, False)
    assert seqs(store, s) == [2]


def test_purge_all_filtered_below_seq_and_keep(store: Store) -> None:
    s = make_stream(store)
    for i in range(1, 11):
        publish(store, s, "s.a" if i % 2 else "s.b")
    assert write(store, lambda b: streams.purge(b, s, filter_subject="s.a", keep=2)) == 3
    assert seqs(store, s) == [2, 4, 6, 7, 8, 9, 10]
    assert write(store, lambda b: streams.purge(b, s, filter_subject="s.b", seq=6)) == 2
    assert seqs(store, s) == [6, 7, 8, 9, 10]
    assert write(store, lambda b: streams.purge(b, s, seq=8)) == 2
    assert seqs(store, s) == [8, 9, 10]
    assert write(store, lambda b: streams.purge(b, s, keep=1)) == 2
    assert seqs(store, s) == [10]
    assert write(store, lambda b: streams.purge(b, s)) == 1
    c = s.committed
    assert seqs(store, s) == [] and (c.first_seq, c.last_seq, c.messages, c.total_bytes) == (11, 10, 0, 0)
    assert publish(store, s, "s.a")[0] == 11


def test_delete_keeps_counters_and_subject_index_right(store: Store) -> None:
    s = make_stream(store)
    for subject in ("s.a", "s.b", "s.a"):
        publish(store, s, subject)
    assert write(store, lambda b: streams.delete_seq(b, s, 2)) is True
    assert write(store, lambda b: streams.delete_seq(b, s, 2)) is False
    assert (s.committed.messages, s.committed.num_subjects, s.num_deleted()) == (2, 1, 1)
    assert write(store, lambda b: streams.delete_seq(b, s, 1)) is True
    assert (s.committed.first_seq, s.committed.messages) == (3, 1)
    with store.read() as txn:
        assert reads.subject_counts(txn, s, ">") == {"s.a": 1}


def test_lowered_limits_are_applied_by_trim(store: Store) -> None:
    s = make_stream(store)
    for subject in ("s.a", "s.a", "s.a", "s.b", "s.b"):
        publish(store, s, subject)
    s.config.max_msgs_per_subject = 1
    write(store, lambda b: retention.trim_to_limits(b, s))
    assert seqs(store, s) == [3, 5]
    s.config.max_msgs = 1
    write(store, lambda b: retention.trim_to_limits(b, s))
    assert seqs(store, s) == [5]


def test_a_refused_message_leaves_its_batch_neighbours_alone(store: Store) -> None:
    s = make_stream(store, max_msgs=1, discard=Discard.NEW)

    def batch(b: streams.Batch) -> list[object]:
        out: list[object] = [streams.store_message(b, s, b"s.a", None, b"1")]
        try:
            streams.store_message(b, s, b"s.b", None, b"2")
        except errors.ApiError as exc:
            out.append(exc.err_code)
        return out

    assert write(store, batch) == [(1, False), errors.STORE_FAILED.err_code]
    assert seqs(store, s) == [1] and s.committed.last_seq == 1


def test_an_atomic_batch_refused_part_way_leaves_its_neighbours_in_the_transaction(store: Store) -> None:
    """store_batch runs in a child transaction: a refusal undoes the batch's writes and counters only."""
    s = make_stream(store, allow_atomic=True)
    msgs: list[atomic.Staged] = [
        (b"s.a", None, b"1"),
        (b"s.b", headers.build([("Nats-Expected-Last-Sequence", "0")]), b"2"),
    ]

    def run(b: streams.Batch) -> int:
        streams.store_message(b, s, b"s.before", None, b"x")
        with pytest.raises(errors.ApiError) as caught:
            atomic.store_batch(b, s, msgs)
        assert caught.value.err_code == 10164
        streams.store_message(b, s, b"s.after", None, b"x")
        return atomic.store_batch(b, s, msgs[:1])

    assert write(store, run) == 3
    assert seqs(store, s) == [1, 2, 3]
    assert (s.committed.messages, s.committed.last_seq, s.committed.num_subjects) == (3, 3, 3)
