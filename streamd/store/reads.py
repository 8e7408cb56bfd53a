"""Read-side queries over committed data (info, message get, subject counts); safe from any thread."""

from __future__ import annotations

from collections.abc import Callable

import lmdb

from streamd.store.env import Store
from streamd.store.layout import (
    MSG_HEAD,
    SEQ,
    Buf,
    key_seq,
    message_subject,
    message_time,
    scan,
    seek_first,
    seek_last,
)
from streamd.store.stream import Stream, matching_subjects
from streamd.wire import errors, subjects

_HEAD = MSG_HEAD.size


class Found:
    __slots__ = ("data", "hdrs", "seq", "subject", "ts_ns")

    def __init__(self, seq: int, raw: Buf) -> None:
        # unpack_message inlined: one of these per delivery, and its tuple of slices measured ~30% of the cost
        ts, hlen, slen = MSG_HEAD.unpack_from(raw)
        end = _HEAD + slen
        body = end + hlen
        self.seq = seq
        self.subject = bytes(raw[_HEAD:end])
        self.hdrs = bytes(raw[end:body]) if hlen else b""
        self.data = bytes(raw[body:])
        self.ts_ns = ts


def load(txn: lmdb.Transaction, stream: Stream, seq: int) -> Found | None:
    raw = txn.get(stream.dbs.mkey(seq), db=stream.dbs.msgs)
    return Found(seq, raw) if raw is not None else None


def last_by_subject(txn: lmdb.Transaction, stream: Stream, filter_subject: str) -> Found | None:
    best = 0
    cur = txn.cursor(db=stream.dbs.subjects)
    for subject in matching_subjects(txn, stream, filter_subject):
        if cur.set_key(stream.dbs.skey(subject)) and cur.last_dup():
            best = max(best, SEQ.unpack(cur.value())[0])
    return load(txn, stream, best) if best else None


def next_by_subject(txn: lmdb.Transaction, stream: Stream, filter_subject: str, start: int) -> Found | None:
    """First message with seq >= start on a subject the filter selects."""
    start = max(start, 1)
    if subjects.is_literal(filter_subject):
        cur = txn.cursor(db=stream.dbs.subjects)
        if cur.set_range_dup(stream.dbs.skey(filter_subject.encode()), SEQ.pack(start)):
            return load(txn, stream, SEQ.unpack(cur.value())[0])
        return None
    if filter_subject == ">" or any(subjects.is_subset(s, filter_subject) for s in stream.config.subjects):
        cur = txn.cursor(db=stream.dbs.msgs)
        if seek_first(cur, stream.dbs.prefix, SEQ.pack(start)):
            return Found(key_seq(cur.key()), cur.value())
        return None
    best = 0
    cur = txn.cursor(db=stream.dbs.subjects)
    for subject in matching_subjects(txn, stream, filter_subject):
        if cur.set_range_dup(stream.dbs.skey(subject), SEQ.pack(start)):
            seq = SEQ.unpack(cur.value())[0]
            best = seq if not best else min(best, seq)
    return load(txn, stream, best) if best else None


def subject_counts(txn: lmdb.Transaction, stream: Stream, filter_subject: str) -> dict[str, int]:
    cur = txn.cursor(db=stream.dbs.subjects)
    out: dict[str, int] = {}
    for subject in matching_subjects(txn, stream, filter_subject):
        if cur.set_key(stream.dbs.skey(subject)):
            out[subject.decode()] = cur.count()
    return out


def deleted_seqs(txn: lmdb.Transaction, stream: Stream, limit: int = 1_000_000) -> list[int]:
    """Interior gaps between first and last sequence (what STREAM.INFO's deleted_details lists)."""
    c = stream.committed
    out: list[int] = []
    expect = c.first_seq
    if not c.messages:
        return out
    for key, _raw in scan(txn.cursor(db=stream.dbs.msgs), stream.dbs.prefix, SEQ.pack(c.first_seq)):
        seq = key_seq(key)
        out.extend(range(expect, min(seq, expect + limit - len(out))))
        expect = seq + 1
        if len(out) >= limit:
            break
    return out


def require(store: Store, stream: Stream | None) -> Stream:
    if stream is None or stream.deleted:
        raise errors.STREAM_NOT_FOUND()
    return stream


def covers_all(stream: Stream, filters: list[str]) -> bool:
    """True when the filters select every subject the stream can hold (so no per-message matching is needed)."""
    if not filters:
        return True
    return all(any(subjects.is_subset(s, f) for f in filters) for s in stream.config.subjects)


def matches_any(filters: list[str], subject: str) -> bool:
    return not filters or any(subjects.matches(f, subject) for f in filters)


def next_matching(
    txn: lmdb.Transaction,
    stream: Stream,
    filters: list[str],
    start: int,
    limit: int,
    scan_limit: int = 10_000,
    match: Callable[[str], bool] | None = None,
) -> tuple[list[Found], int]:
    """Up to `limit` messages with seq >= start that the filters select, in order; -> (found, resume_seq).

    `resume_seq` is where a later call may continue: after the last record this read transaction saw (returned,
    or scanned and skipped; a filtered scan gives up after `scan_limit` records so a sparse filter never stalls
    the loop). It is never derived from the stream's live counters: those may already include commits that this
    snapshot does not, and skipping past them would lose those messages for the consumer. `match` replaces the
    scan over `filters` per message (a consumer with thousands of filters passes its subject tree).
    """
    out: list[Found] = []
    start = max(start, 1)
    every = covers_all(stream, filters)
    if not every and all(subjects.is_literal(f) for f in filters):
        cur = txn.cursor(db=stream.dbs.subjects)
        heads: list[int] = []
        for f in filters:
            if cur.set_range_dup(stream.dbs.skey(f.encode()), SEQ.pack(start)):
                heads.extend(SEQ.unpack(v)[0] for v in _take_dups(cur, limit))
        for seq in sorted(heads)[:limit]:
            found = load(txn, stream, seq)
            if found is not None:
                out.append(found)
        if len(out) >= limit:
            return out, out[-1].seq + 1
        # Resume after what this snapshot holds, never after what was committed since (that is not seen here).
        return out, max(start, _snapshot_last(txn, stream) + 1)
    scanned = 0
    seq = start - 1
    for key, raw in scan(txn.cursor(db=stream.dbs.msgs), stream.dbs.prefix, SEQ.pack(start)):
        seq = key_seq(key)
        scanned += 1
        if every or (match(message_subject_str(raw)) if match else matches_any(filters, message_subject_str(raw))):
            out.append(Found(seq, raw))
            if len(out) >= limit:
                return out, seq + 1
        if scanned >= scan_limit:
            return out, seq + 1
    return out, seq + 1


def _snapshot_last(txn: lmdb.Transaction, stream: Stream) -> int:
    cur = txn.cursor(db=stream.dbs.msgs)
    return key_seq(cur.key()) if seek_last(cur, stream.dbs.prefix) else 0


def _take_dups(cur: lmdb.Cursor, limit: int) -> list[bytes]:
    out = [bytes(cur.value())]
    while len(out) < limit and cur.next_dup():
        out.append(bytes(cur.value()))
    return out


def message_subject_str(raw: Buf) -> str:
    return message_subject(raw).decode(errors="replace")


def count_after(txn: lmdb.Transaction, stream: Stream, filters: list[str], after: int) -> int:
    """Stored messages with seq > after that the filters select (exact; O(matching messages) at worst)."""
    c = stream.committed
    if not c.messages or after >= c.last_seq:
        return 0
    if covers_all(stream, filters):
        if not stream.num_deleted():
            return c.last_seq - max(after, c.first_seq - 1)
        return sum(1 for _ in scan(txn.cursor(db=stream.dbs.msgs), stream.dbs.prefix, SEQ.pack(after + 1)))
    total = 0
    cur = txn.cursor(db=stream.dbs.subjects)
    for f in filters:
        for subject in matching_subjects(txn, stream, f):
            skey = stream.dbs.skey(subject)
            if cur.set_key(skey):
                if SEQ.unpack(cur.value())[0] > after:
                    total += cur.count()
                    continue
                if cur.set_range_dup(skey, SEQ.pack(after + 1)):
                    total += 1 + sum(1 for _ in iter(cur.next_dup, False))
    return total


def last_per_subject(txn: lmdb.Transaction, stream: Stream, filters: list[str]) -> list[int]:
    """The last stored seq of every subject the filters select, ascending (deliver policy last_per_subject)."""
    seqs: list[int] = []
    cur = txn.cursor(db=stream.dbs.subjects)
    for f in filters or list(stream.config.subjects):
        for subject in matching_subjects(txn, stream, f):
            if cur.set_key(stream.dbs.skey(subject)) and cur.last_dup():
                seqs.append(SEQ.unpack(cur.value())[0])
    return sorted(set(seqs))


def first_seq_at_or_after(txn: lmdb.Transaction, stream: Stream, ts_ns: int) -> int:
    """The first seq stored at or after `ts_ns` (binary search: stored times grow with the sequence)."""
    c = stream.committed
    lo, hi = c.first_seq, c.last_seq + 1
    cur = txn.cursor(db=stream.dbs.msgs)
    while lo < hi:
        mid = (lo + hi) // 2
        if not seek_first(cur, stream.dbs.prefix, SEQ.pack(mid)):
            hi = mid
            continue
        seq = key_seq(cur.key())
        if message_time(cur.value()) >= ts_ns:
            hi = mid
        else:
            lo = seq + 1
    return lo
