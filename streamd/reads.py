"""Read-side queries over committed data (info, message get, subject counts); safe from any thread."""

from __future__ import annotations

import lmdb

from . import errors, subjects
from .store import SEQ, Buf, Store, unpack_message
from .streams import Stream, matching_subjects


class Found:
    __slots__ = ("data", "hdrs", "seq", "subject", "ts_ns")

    def __init__(self, seq: int, raw: Buf) -> None:
        subject, hdrs, data, ts = unpack_message(raw)
        self.seq = seq
        self.subject = bytes(subject)
        self.hdrs = bytes(hdrs)
        self.data = bytes(data)
        self.ts_ns = ts


def load(txn: lmdb.Transaction, stream: Stream, seq: int) -> Found | None:
    raw = txn.get(SEQ.pack(seq), db=stream.dbs.msgs)
    return Found(seq, raw) if raw is not None else None


def last_by_subject(txn: lmdb.Transaction, stream: Stream, filter_subject: str) -> Found | None:
    best = 0
    cur = txn.cursor(db=stream.dbs.subjects)
    for subject in matching_subjects(txn, stream, filter_subject):
        if cur.set_key(subject) and cur.last_dup():
            best = max(best, SEQ.unpack(cur.value())[0])
    return load(txn, stream, best) if best else None


def next_by_subject(txn: lmdb.Transaction, stream: Stream, filter_subject: str, start: int) -> Found | None:
    """First message with seq >= start on a subject the filter selects."""
    start = max(start, 1)
    if subjects.is_literal(filter_subject):
        cur = txn.cursor(db=stream.dbs.subjects)
        if cur.set_range_dup(filter_subject.encode(), SEQ.pack(start)):
            return load(txn, stream, SEQ.unpack(cur.value())[0])
        return None
    if filter_subject == ">" or any(subjects.is_subset(s, filter_subject) for s in stream.config.subjects):
        cur = txn.cursor(db=stream.dbs.msgs)
        if cur.set_range(SEQ.pack(start)):
            return Found(SEQ.unpack(cur.key())[0], cur.value())
        return None
    best = 0
    cur = txn.cursor(db=stream.dbs.subjects)
    for subject in matching_subjects(txn, stream, filter_subject):
        if cur.set_range_dup(subject, SEQ.pack(start)):
            seq = SEQ.unpack(cur.value())[0]
            best = seq if not best else min(best, seq)
    return load(txn, stream, best) if best else None


def subject_counts(txn: lmdb.Transaction, stream: Stream, filter_subject: str) -> dict[str, int]:
    cur = txn.cursor(db=stream.dbs.subjects)
    out: dict[str, int] = {}
    for subject in matching_subjects(txn, stream, filter_subject):
        if cur.set_key(subject):
            out[subject.decode()] = cur.count()
    return out


def deleted_seqs(txn: lmdb.Transaction, stream: Stream, limit: int = 1_000_000) -> list[int]:
    """Interior gaps between first and last sequence (what STREAM.INFO's deleted_details lists)."""
    c = stream.committed
    out: list[int] = []
    expect = c.first_seq
    cur = txn.cursor(db=stream.dbs.msgs)
    if not c.messages or not cur.set_range(SEQ.pack(c.first_seq)):
        return out
    for key in cur.iternext(keys=True, values=False):
        seq = SEQ.unpack(key)[0]
        out.extend(range(expect, min(seq, expect + limit - len(out))))
        expect = seq + 1
        if len(out) >= limit:
            break
    return out


def require(store: Store, stream: Stream | None) -> Stream:
    if stream is None or stream.deleted:
        raise errors.STREAM_NOT_FOUND()
    return stream
