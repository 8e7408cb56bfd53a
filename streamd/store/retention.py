"""A stream's retention, run by the service's timer in the writer: max_age (with subject delete markers),
per-message TTLs, the dedup window, due message schedules, limits lowered by an update, and when each stream
next has such work.

Everything here runs inside a writer batch, like the write path in ``stream`` whose removals it uses.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import lmdb

from streamd.store import scheduler
from streamd.store.layout import MAX_STREAM_ID, SEQ, SID, Tables, message_subject, seek_first, unpack_pair
from streamd.store.stream import (
    Batch,
    Stream,
    delete_seq,
    store_message,
    subject_count,
    trim_front,
    trim_subject,
)
from streamd.wire import durations, errors

MARKER_REASON = b"Nats-Marker-Reason"
_NS = 1_000_000_000


def expire(b: Batch, stream: Stream) -> None:
    """Apply max_age, per-message TTLs and the dedup window at `b.now_ns`."""
    cfg, c = stream.config, stream.counters
    if stream.deleted:
        return
    if cfg.max_age > 0:
        cutoff = b.now_ns - cfg.max_age
        emptied: list[bytes] = []
        while c.messages and c.first_ns and c.first_ns <= cutoff:
            raw = b.txn.get(stream.dbs.mkey(c.first_seq), db=stream.dbs.msgs)
            delete_seq(b, stream, c.first_seq)
            if raw is not None and MARKER_REASON not in bytes(raw[:4096]):
                subject = message_subject(raw)
                if not subject_count(b, stream, subject):
                    emptied.append(subject)
        marker_ttl = cfg.subject_delete_marker_ttl
        if isinstance(marker_ttl, int) and marker_ttl > 0:
            for subject in emptied:
                _write_marker(b, stream, subject, b"MaxAge", marker_ttl)
    cur = b.txn.cursor(db=stream.dbs.ttl)
    while seek_first(cur, stream.dbs.prefix):
        due, seq = unpack_pair(cur.key()[4:])
        if due > b.now_ns:
            break
        cur.delete()
        delete_seq(b, stream, seq)
    trim_dedup(b, stream)
    scheduler.fire_due(b, stream)


def _write_marker(b: Batch, stream: Stream, subject: bytes, reason: bytes, ttl_ns: int) -> None:
    """A subject delete marker: watchers learn the subject is gone; it expires itself after `ttl_ns`."""
    ttl = durations.format(ttl_ns // _NS * _NS)  # whole seconds, as nats-server writes it
    hdrs = b"NATS/1.0\r\n" + MARKER_REASON + b": " + reason + b"\r\nNats-TTL: " + ttl.encode() + b"\r\n\r\n"
    try:
        store_message(b, stream, subject, hdrs, b"")
    except errors.ApiError:
        pass  # a full stream (discard new) refuses the marker, as it would any message


def trim_dedup(b: Batch, stream: Stream) -> None:
    cutoff = b.now_ns - stream.config.duplicate_window
    dbs = stream.dbs
    cur = b.txn.cursor(db=dbs.dedup_age)
    while seek_first(cur, dbs.prefix):
        key = cur.key()
        ts = SEQ.unpack_from(key, 4)[0]
        if ts > cutoff:
            break
        id_key = dbs.prefix + bytes(key[12:])  # copy: the cursor's buffer is reused
        cur.delete()
        prior = b.txn.get(id_key, db=dbs.dedup)
        if prior is not None and unpack_pair(prior)[1] == ts:
            b.txn.delete(id_key, db=dbs.dedup)


def next_deadline(stream: Stream, txn: lmdb.Transaction) -> int:
    """When `expire` next has work for this stream (ns), or 0 for never."""
    cfg, c = stream.config, stream.committed
    deadlines = []
    if cfg.max_age > 0 and c.messages and c.first_ns:
        deadlines.append(c.first_ns + cfg.max_age)
    cur = txn.cursor(db=stream.dbs.ttl)
    if seek_first(cur, stream.dbs.prefix):
        deadlines.append(SEQ.unpack_from(cur.key(), 4)[0])
    cur = txn.cursor(db=stream.dbs.dedup_age)
    if seek_first(cur, stream.dbs.prefix):
        deadlines.append(SEQ.unpack_from(cur.key(), 4)[0] + cfg.duplicate_window)
    cur = txn.cursor(db=stream.dbs.sched)
    if seek_first(cur, stream.dbs.prefix):
        deadlines.append(SEQ.unpack_from(cur.key(), 4)[0])
    return min(deadlines) if deadlines else 0


def first_rows(txn: lmdb.Transaction, db: lmdb._Database) -> Iterator[tuple[int, int]]:
    """(stream id, time) of the first row of every stream in a table keyed sid | ns | ...: one seek per stream
    that has rows, however many streams exist."""
    cur = txn.cursor(db=db)
    found = cur.first()
    while found:
        key = cur.key()
        sid = int(SID.unpack_from(key)[0])
        yield sid, int(SEQ.unpack_from(key, SID.size)[0])
        found = sid < MAX_STREAM_ID and cur.set_range(SID.pack(sid + 1))


def deadlines(txn: lmdb.Transaction, tables: Tables, live: Iterable[Stream]) -> list[tuple[Stream, int]]:
    """(stream, when `expire` next has work) for every live stream that has some; what ``next_deadline`` says
    for each, without a read per stream (there may be 100,000 of them)."""
    by_id = {s.id: s for s in live if not s.deleted}
    soonest: dict[int, int] = {}
    for sid, s in by_id.items():
        cfg, c = s.config, s.committed
        if cfg.max_age > 0 and c.messages and c.first_ns:
            soonest[sid] = c.first_ns + cfg.max_age
    for table in (tables.ttl, tables.sched):
        for sid, due in first_rows(txn, table):
            soonest[sid] = min(soonest.get(sid, due), due)
    for sid, ts in first_rows(txn, tables.dedup_age):
        owner = by_id.get(sid)
        if owner is not None:
            due = ts + owner.config.duplicate_window
            soonest[sid] = min(soonest.get(sid, due), due)
    return [(by_id[sid], due) for sid, due in soonest.items() if sid in by_id]


def trim_to_limits(b: Batch, stream: Stream) -> None:
    """Bring a stream within its (possibly just lowered) limits, oldest first."""
    keep = stream.config.max_msgs_per_subject
    if keep > 0:
        for subject in _subjects_over(b, stream, keep):
            trim_subject(b, stream, subject, keep)
    trim_front(b, stream)
    expire(b, stream)


def _subjects_over(b: Batch, stream: Stream, keep: int) -> list[bytes]:
    cur = b.txn.cursor(db=stream.dbs.subjects)
    over: list[bytes] = []
    if seek_first(cur, stream.dbs.prefix):
        while cur.key()[:4] == stream.dbs.prefix:
            if cur.count() > keep:
                over.append(bytes(cur.key()[4:]))
            if not cur.next_nodup():
                break
    return over
