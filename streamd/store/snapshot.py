"""Whole-stream export and import: streamd's own snapshot format, read in slices and written in batches.

A snapshot's payload is opaque to JetStream clients, so streamd uses its own, wrapped in Snappy's framing format
(uncompressed chunks of at most 64 KiB, each with its masked CRC-32C): the `nats` CLI runs what it receives through
an S2/Snappy reader to count progress, and that reader takes Snappy framing. Inside: the magic ``SDSNAP`` + a u16
format version, then a zlib stream (level 1: cheap, and message data usually shrinks) of frames, each a u32 length and a
msgpack record: one ``Head`` (config, created time, first/last seq and time), ``Msgs`` batches (seq, stored ns,
subject, headers, data; gaps between seqs are deleted messages), ``ConsumerEntry`` records (the consumers
layer's own stored record and state, opaque here), and one ``End`` with the counts and a BLAKE2b digest of every
frame before it: a truncated, reordered or altered snapshot is refused before anything becomes visible.

Import writes under a fresh stream id that carries a "gone" mark from the first batch on: until ``finish``
writes the stream record (and removes the mark) in one transaction, the rows are invisible, and an abandoned or
crashed import is collected like a deleted stream's rows.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterator

import crc32c
import lmdb
import msgspec

from streamd.store.env import Store
from streamd.store.layout import SEQ, Counters, StreamDbs, StreamRecord, key_seq, pack_message, pack_pair, scan
from streamd.store.layout import stored_size as size_of
from streamd.store.stream import MAX_SEQ, MAX_SUBJECT, MAX_TTL, Batch, Stream, dedup_key, parse_ttl
from streamd.wire import errors, headers
from streamd.wire.models import StreamConfig

MAGIC = b"SDSNAP"
VERSION = 1
PREAMBLE = MAGIC + struct.pack(">H", VERSION)
_LEN = struct.Struct(">I")
SNAPPY_ID = b"\xff\x06\x00\x00sNaPpY"  # Snappy framing's stream identifier chunk
_CHUNK_HEAD = struct.Struct("<I")  # chunk type (low byte) and length (upper 3 bytes, little-endian)
_SNAPPY_RAW = 0x01  # an uncompressed-data chunk: masked CRC-32C (u32 LE) + data
MAX_SNAPPY_DATA = 65536
MAX_FRAME = 80 << 20  # one message of the largest max_payload (64 MiB) plus its framing, with room
SLICE_BYTES = 1 << 20  # what one export read (one short read transaction) gathers at most
SLICE_MSGS = 10_000
DECODE_STEP = 1 << 20  # decompressed bytes handled per import step: memory stays bounded whatever the ratio
KNOWN_SUBJECTS = 100_000
APPLY_MSGS = 2_000  # messages per import transaction: the writer is never held long from other streams' publishes
_MAX_NS = (1 << 63) - 1

MsgItem = tuple[int, int, bytes, bytes, bytes]  # seq, stored ns, subject, headers (b"" for none), data


class Head(msgspec.Struct, tag="head", array_like=True):
    version: int
    config: StreamConfig
    created_ns: int
    first_seq: int
    last_seq: int
    last_ns: int


class Msgs(msgspec.Struct, tag="msgs", array_like=True):
    items: list[MsgItem]


class ConsumerEntry(msgspec.Struct, tag="consumer", array_like=True):
    name: str
    record: bytes
    state: bytes | None


class End(msgspec.Struct, tag="end", array_like=True):
    messages: int
    consumers: int
    digest: bytes


Record = Head | Msgs | ConsumerEntry | End
_DECODER = msgspec.msgpack.Decoder(Record)
_ENCODER = msgspec.msgpack.Encoder()


class SnapshotError(errors.ApiError):
    """The snapshot cannot be restored: JetStream's restore failure (500/10062) saying why. An ApiError, so a
    refusal raised inside a writer call fails that call alone, never its neighbours in the batch."""

    def __init__(self, why: str) -> None:
        super().__init__(500, 10062, f"restore failed: {why}")


# ---- Snappy framing ------------------------------------------------------------------------------------------


def _masked_crc(data: bytes) -> int:
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def snappy_frames(data: bytes) -> bytes:
    """`data` as Snappy uncompressed-data chunks (the content is already compressed: no second compression)."""
    out = []
    for i in range(0, len(data), MAX_SNAPPY_DATA):
        part = data[i : i + MAX_SNAPPY_DATA]
        out.append(_CHUNK_HEAD.pack(_SNAPPY_RAW | (len(part) + 4) << 8) + _CHUNK_HEAD.pack(_masked_crc(part)) + part)
    return b"".join(out)


class _Unframer:
    """Snappy framing off, checksums checked: the identifier first, then uncompressed-data chunks only."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._started = False

    def feed(self, data: bytes) -> bytes:
        self._buf += data
        if not self._started:
            if len(self._buf) < len(SNAPPY_ID):
                return b""
            if not self._buf.startswith(SNAPPY_ID):
                raise SnapshotError("not a streamd snapshot (a JetStream server's snapshot cannot be restored here)")
            del self._buf[: len(SNAPPY_ID)]
            self._started = True
        out = []
        while len(self._buf) >= _CHUNK_HEAD.size:
            head = _CHUNK_HEAD.unpack_from(self._buf)[0]
            kind, size = head & 0xFF, head >> 8
            if kind != _SNAPPY_RAW or not 4 <= size <= MAX_SNAPPY_DATA + 4:
                raise SnapshotError("snapshot framing is corrupt")
            if len(self._buf) < _CHUNK_HEAD.size + size:
                break
            crc = _CHUNK_HEAD.unpack_from(self._buf, _CHUNK_HEAD.size)[0]
            part = bytes(self._buf[_CHUNK_HEAD.size + 4 : _CHUNK_HEAD.size + size])
            if _masked_crc(part) != crc:
                raise SnapshotError("snapshot chunk checksum does not match")
            out.append(part)
            del self._buf[: _CHUNK_HEAD.size + size]
        return b"".join(out)

    @property
    def pending(self) -> int:
        return len(self._buf)


# ---- export -------------------------------------------------------------------------------------------------


class Exporter:
    """Frames, digest and compression of one snapshot; used by one task (its steps may run in worker threads)."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(1)
        self._digest = hashlib.blake2b(digest_size=32)
        self.messages = 0
        self.consumers = 0

    def start(self, head: Head) -> bytes:
        return SNAPPY_ID + snappy_frames(PREAMBLE + self._frame(head))

    def add(self, rec: Msgs | ConsumerEntry) -> bytes:
        if isinstance(rec, Msgs):
            self.messages += len(rec.items)
        else:
            self.consumers += 1
        return snappy_frames(self._frame(rec))

    def end(self) -> bytes:
        frame = _frame_bytes(End(self.messages, self.consumers, self._digest.digest()))
        return snappy_frames(self._z.compress(frame) + self._z.flush())

    def _frame(self, rec: Record) -> bytes:
        frame = _frame_bytes(rec)
        self._digest.update(frame)
        return self._z.compress(frame)


def _frame_bytes(rec: Record) -> bytes:
    body = _ENCODER.encode(rec)
    return _LEN.pack(len(body)) + body


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
            ts, hlen, slen = _HEAD.unpack_from(raw)
            o = _HEAD.size
            h = o + slen
            items.append((seq, ts, bytes(raw[o:h]), bytes(raw[h : h + hlen]), bytes(raw[h + hlen :])))
            size += len(raw)
            if len(items) >= SLICE_MSGS or size >= SLICE_BYTES:
                return items, seq + 1
    return items, last + 1


_HEAD = struct.Struct(">QIH")  # layout's message head: stored ns, header length, subject length


def export_step(store: Store, stream: Stream, exporter: Exporter, start: int, last: int) -> tuple[bytes, int]:
    """One slice read, framed and compressed (for a worker thread) -> (bytes to send, next seq)."""
    items, nxt = read_slice(store, stream, start, last)
    return (exporter.add(Msgs(items)) if items else b""), nxt


# ---- import -------------------------------------------------------------------------------------------------


class Decoder:
    """Bytes in, checked records out, in bounded steps (zlib's max_length keeps a compression bomb small)."""

    def __init__(self) -> None:
        self._z = zlib.decompressobj()
        self._raw = b""  # bytes before the preamble is complete
        self._started = False
        self._tail = b""  # compressed input not yet decompressed
        self._buf = bytearray()  # decompressed bytes not yet framed
        self._digest = hashlib.blake2b(digest_size=32)
        self._unframer = _Unframer()
        self._full = False
        self.ended = False

    def feed(self, data: bytes) -> None:
        data = self._unframer.feed(data)
        if self.ended and data:
            raise SnapshotError("data after the end of the snapshot")
        if not self._started:
            self._raw += data
            if len(self._raw) < len(PREAMBLE):
                return
            if not self._raw.startswith(MAGIC):
                raise SnapshotError("not a streamd snapshot (a JetStream server's snapshot cannot be restored here)")
            version = struct.unpack_from(">H", self._raw, len(MAGIC))[0]
            if version != VERSION:
                raise SnapshotError(
                    f"snapshot format version {version} is not supported (this streamd reads {VERSION})"
                )
            self._started = True
            data, self._raw = self._raw[len(PREAMBLE) :], b""
        self._tail += data

    @property
    def has_more(self) -> bool:
        return (bool(self._tail) or self._full) and not self._z.eof

    def step(self) -> list[Record]:
        """Decompress up to DECODE_STEP bytes and return the whole records they complete."""
        try:
            out = self._z.decompress(self._tail, DECODE_STEP)
        except zlib.error as exc:
            raise SnapshotError(f"snapshot data is corrupt ({exc})") from None
        self._tail = self._z.unconsumed_tail
        self._full = len(out) == DECODE_STEP  # zlib may hold more output even with no input left
        if self._z.unused_data:
            raise SnapshotError("data after the end of the snapshot")
        self._buf += out
        return list(self._frames())

    def _frames(self) -> Iterator[Record]:
        while len(self._buf) >= _LEN.size:
            n = _LEN.unpack_from(self._buf)[0]
            if n > MAX_FRAME:
                raise SnapshotError(f"snapshot record of {n} bytes is larger than allowed ({MAX_FRAME})")
            if len(self._buf) < _LEN.size + n:
                return
            frame = bytes(self._buf[: _LEN.size + n])
            del self._buf[: _LEN.size + n]
            try:
                rec = _DECODER.decode(frame[_LEN.size :])
            except msgspec.DecodeError as exc:
                raise SnapshotError(f"snapshot record is corrupt ({exc})") from None
            if self.ended:
                raise SnapshotError("data after the end of the snapshot")
            if isinstance(rec, End):
                if rec.digest != self._digest.digest():
                    raise SnapshotError("snapshot digest does not match its content")
                self.ended = True
            else:
                self._digest.update(frame)
            yield rec

    def check_complete(self) -> None:
        if not self.ended or not self._z.eof or self._buf or self._tail or self._unframer.pending:
            raise SnapshotError("snapshot is truncated")


def in_groups(records: list[Record], size: int = APPLY_MSGS) -> Iterator[list[Record]]:
    """`records` in order, cut so that no group holds more than `size` messages (a Msgs record is split)."""
    group: list[Record] = []
    count = 0
    for rec in records:
        if not isinstance(rec, Msgs):
            group.append(rec)
            continue
        items = rec.items
        while items:
            room = size - count
            group.append(Msgs(items[:room]))
            count += len(items[:room])
            items = items[room:]
            if count >= size:
                yield group
                group, count = [], 0
    if group:
        yield group


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
