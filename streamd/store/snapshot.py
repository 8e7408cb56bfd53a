"""Whole-stream export and import through the store: read in slices, written in batches (the payload format is
in snapshot_format.py).

Export reads a slice of messages per short read transaction, so the writer is never kept from growing the map
for long. Import writes under a fresh stream id that carries a "gone" mark from the first batch on: until
``finish`` writes the stream record (and removes the mark) in one transaction, the rows are invisible, and an
abandoned or crashed import is collected like a deleted stream's rows.
"""

from __future__ import annotations

import lmdb
import msgspec

from streamd.store import schedules
from streamd.store.env import Store
from streamd.store.layout import (
    SEQ,
    Counters,
    StreamDbs,
    StreamRecord,
    key_seq,
    pack_message,
    pack_pair,
    scan,
    unpack_message,
)
from streamd.store.layout import stored_size as size_of
from streamd.store.snapshot_format import (
    APPLY_MSGS,
    DECODE_STEP,
    MAGIC,
    MAX_SNAPPY_DATA,
    PREAMBLE,
    SNAPPY_ID,
    VERSION,
    ConsumerEntry,
    Decoder,
    End,
    Exporter,
    Head,
    MsgItem,
    Msgs,
    Record,
    SnapshotError,
    in_groups,
    snappy_frames,
)
from streamd.store.stream import MAX_SEQ, MAX_SUBJECT, MAX_TTL, Batch, Stream, dedup_key, parse_ttl
from streamd.wire import headers, schedule
from streamd.wire.models import StreamConfig

__all__ = [
    "APPLY_MSGS",
    "DECODE_STEP",
    "MAGIC",
    "MAX_SNAPPY_DATA",
    "PREAMBLE",
    "SNAPPY_ID",
    "VERSION",
    "ConsumerEntry",
    "Decoder",
    "End",
    "Exporter",
    "Head",
    "Importer",
    "MsgItem",
    "Msgs",
    "Record",
    "SnapshotError",
    "export_step",
    "in_groups",
    "read_slice",
    "snappy_frames",
]

SLICE_BYTES = 1 << 20  # what one export read (one short read transaction) gathers at most
SLICE_MSGS = 10_000
KNOWN_SUBJECTS = 100_000
_MAX_NS = (1 << 63) - 1


def read_slice(store: Store, stream: Stream, start: int, last: int) -> tuple[list[MsgItem], int]:
    """Messages start..last (at most SLICE_MSGS / SLICE_BYTES) in one short read transaction -> (items, next seq;
    > last when done). Short transactions, so the writer is never kept from growing the map for long."""
    items: list[MsgItem] = []
    size = 0
    with store.read() as txn:
        for key, raw in scan(txn.cursor(db=stream.dbs.msgs), stream.dbs.prefix, SEQ.pack(start)):
            seq = key_seq(key)
            if seq > last:
                return items, last + 1
            subject, hdrs, data, ts = unpack_message(raw)  # bytes: store.read() hands out copies
            items.append((seq, ts, bytes(subject), bytes(hdrs), bytes(data)))
            size += len(raw)
            if len(items) >= SLICE_MSGS or size >= SLICE_BYTES:
                return items, seq + 1
    return items, last + 1


def export_step(store: Store, stream: Stream, exporter: Exporter, start: int, last: int) -> tuple[bytes, int]:
    """One slice read, framed and compressed (for a worker thread) -> (bytes to send, next seq)."""
    items, nxt = read_slice(store, stream, start, last)
    return (exporter.add(Msgs(items)) if items else b""), nxt


class Importer:
    """Applies checked records to a hidden stream id, on the writer thread; ``finish`` makes the stream real.

    The writer may run a call twice (after growing the map, or alone after a failed batch): ``apply`` starts
    from the state as of the last ``committed()``, so a repeated call counts nothing twice."""

    def __init__(self, config: StreamConfig) -> None:
        self.config = config  # the config the stream is restored with (the request's, as nats-server does)
        self.head: Head | None = None
        self.counters = Counters()
        self.consumers: list[ConsumerEntry] = []
        self.messages = 0
        self.stream_id = 0
        self.dbs: StreamDbs | None = None
        self._last = 0
        self._ttl = config.allow_msg_ttl is True
        self._schedules = config.allow_msg_schedules is True
        self._known: set[bytes] = set()  # subjects checked and already in the index (a cache, bounded)
        self._saved = self._state()
        self._applying = False

    def _state(self) -> tuple[Head | None, Counters, int, int, int]:
        return self.head, msgspec.structs.replace(self.counters), len(self.consumers), self.messages, self._last

    def committed(self) -> None:
        """The last ``apply`` is committed: later calls start from here."""
        self._saved = self._state()
        self._applying = False

    def _rollback_if_repeated(self) -> None:
        if self._applying:  # the previous apply was not committed: undo what it did in memory
            self.head, counters, n, self.messages, self._last = self._saved
            self.counters = msgspec.structs.replace(counters)
            del self.consumers[n:]
            self._known.clear()
        self._applying = True

    def reserve(self, b: Batch) -> int:
        """Take a stream id whose rows are marked for collection until ``finish`` (or a restart) says otherwise."""
        self.stream_id = b.store.reserve_stream_id(b.txn)
        self.dbs = b.store.open_stream_dbs(self.stream_id)
        return self.stream_id

    def apply(self, b: Batch, records: list[Record]) -> None:
        self._rollback_if_repeated()
        for rec in records:
            if isinstance(rec, Head):
                self._head(rec)
            elif self.head is None:
                raise SnapshotError("snapshot does not start with its header")
            elif isinstance(rec, Msgs):
                self._msgs(b, rec.items)
            elif isinstance(rec, ConsumerEntry):
                self.consumers.append(rec)
            elif rec.messages != self.messages or rec.consumers != len(self.consumers):
                raise SnapshotError("snapshot counts do not match its content")

    def _head(self, head: Head) -> None:
        if self.head is not None:
            raise SnapshotError("snapshot has two headers")
        if head.version != VERSION:
            raise SnapshotError(f"snapshot format version {head.version} is not supported")
        if not (
            0 <= head.first_seq <= MAX_SEQ and 0 <= head.last_seq <= MAX_SEQ and head.last_seq >= head.first_seq - 1
        ):
            raise SnapshotError("snapshot sequence range is invalid")
        if not (0 <= head.created_ns <= _MAX_NS and 0 <= head.last_ns <= _MAX_NS):
            raise SnapshotError("snapshot times are out of range")
        self.head = head
        self._last = max(head.first_seq - 1, 0)
        self.counters.last_seq, self.counters.last_ns = head.last_seq, head.last_ns

    def _msgs(self, b: Batch, items: list[MsgItem]) -> None:
        assert self.head is not None and self.dbs is not None
        txn, dbs, c = b.txn, self.dbs, self.counters
        known = self._known
        for seq, ts, subject, hdrs, data in items:
            _check_item(seq, ts, self._last, self.head.last_seq)
            self._last = seq
            txn.put(dbs.mkey(seq), pack_message(subject, hdrs, data, ts), db=dbs.msgs)
            skey = dbs.skey(subject)
            if subject not in known:
                _check_subject(seq, subject)
                if not txn.get(skey, db=dbs.subjects):
                    c.num_subjects += 1
                if len(known) < KNOWN_SUBJECTS:
                    known.add(subject)
            txn.put(skey, SEQ.pack(seq), db=dbs.subjects, dupdata=True)
            if c.messages == 0:
                c.first_seq, c.first_ns = seq, ts
            c.messages += 1
            c.total_bytes += size_of(len(subject), len(hdrs), len(data))
            if hdrs:
                self._indexes(txn, dbs, seq, ts, headers.parse(hdrs))
        self.messages += len(items)

    def _indexes(self, txn: lmdb.Transaction, dbs: StreamDbs, seq: int, ts: int, h: dict[bytes, bytes]) -> None:
        """The per-message TTL and Nats-Msg-Id indexes the original had, rebuilt from the stored headers."""
        ttl_raw = h.get(headers.TTL)
        if self._ttl and ttl_raw is not None and ttl_raw != b"never":
            try:
                ttl = parse_ttl(ttl_raw)
            except (ValueError, UnicodeDecodeError):
                ttl = 0
            if 0 < ttl <= MAX_TTL:
                txn.put(dbs.prefix + pack_pair(min(ts + ttl, _MAX_NS), seq), b"", db=dbs.ttl)
        if self._schedules and headers.SCHEDULE in h:
            _index_schedule(txn, dbs, seq, ts, h)
        msg_id = dedup_key(h.get(headers.MSG_ID, b""))
        if msg_id:
            txn.put(dbs.prefix + msg_id, pack_pair(seq, ts), db=dbs.dedup)
            txn.put(dbs.prefix + SEQ.pack(ts) + msg_id, b"", db=dbs.dedup_age)
            self.counters.last_msg_id = msg_id

    def finish(
        self, b: Batch, config: StreamConfig, created_ns: int, consumers: list[tuple[str, bytes, bytes]]
    ) -> None:
        """Write the stream record, counters and consumers, and lift the collection mark: all or nothing."""
        if b.txn.get(b"stream:" + config.name.encode(), db=b.store.meta) is not None:
            raise SnapshotError("stream name already in use")
        c = self.counters
        if not c.messages:  # as a purged stream: first is one past last (or where the config starts)
            c.first_seq = min(c.last_seq + 1, MAX_SEQ) if c.last_seq else (self.head.first_seq if self.head else 0)
        b.store.put_stream(b.txn, StreamRecord(self.stream_id, config, created_ns))
        b.store.put_counters(b.txn, self.stream_id, c)
        for name, record, state in consumers:
            b.store.put_consumer(b.txn, self.stream_id, name, record)
            b.store.put_consumer_state(b.txn, self.stream_id, name, state)
        b.store.unmark_gone(b.txn, self.stream_id)


def _check_item(seq: int, ts: int, after: int, last: int) -> None:
    if not after < seq <= last:
        raise SnapshotError(f"message sequence {seq} is out of order or outside the snapshot's range")
    if not 0 <= ts <= _MAX_NS:
        raise SnapshotError(f"message {seq} has an invalid time")


def _check_subject(seq: int, subject: bytes) -> None:
    if not subject or len(subject) > MAX_SUBJECT:
        raise SnapshotError(f"message {seq} has an invalid subject")
    try:
        subject.decode()
    except UnicodeDecodeError:
        raise SnapshotError(f"message {seq} has a subject that is not UTF-8") from None


def _index_schedule(txn: lmdb.Transaction, dbs: StreamDbs, seq: int, ts: int, h: dict[bytes, bytes]) -> None:
    """A restored schedule is due when it was (from its stored time); one replaced later in the snapshot leaves a
    stale row the scheduler drops."""
    try:
        due = schedule.next_fire(h[headers.SCHEDULE].decode(), schedule.zone(h.get(headers.SCHEDULE_TZ)), ts, ts)[0]
    except (schedule.Invalid, UnicodeDecodeError):
        return
    if due:
        schedules.index(txn, dbs, due, seq)
