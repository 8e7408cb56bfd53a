"""streamd's snapshot payload format, pure (no store): records, framing, compression and the checks that make a
corrupt, truncated or altered snapshot fail with JetStream's restore error.

The payload is wrapped in Snappy's framing format (uncompressed chunks of at most 64 KiB, each with its masked
CRC-32C): the `nats` CLI runs what it receives through an S2/Snappy reader to count progress, and that reader takes
Snappy framing. Inside: the magic ``SDSNAP`` + a u16 format version, then a zlib stream (level 1: cheap, and message
data usually shrinks) of frames, each a u32 length and a msgpack record: one ``Head`` (config, created time,
first/last seq and time), ``Msgs`` batches (seq, stored ns, subject, headers, data; gaps between seqs are deleted
messages), ``ConsumerEntry`` records (the consumers layer's own stored record and state, opaque here), and one
``End`` with the counts and a BLAKE2b digest of every frame before it.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterator

import crc32c
import msgspec

from streamd.wire import errors
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
DECODE_STEP = 1 << 20  # decompressed bytes handled per import step: memory stays bounded whatever the ratio
APPLY_MSGS = 2_000  # messages per import transaction: the writer is never held long from other streams' publishes
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


# ---- encoding -----------------------------------------------------------------------------------------------


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


# ---- decoding -----------------------------------------------------------------------------------------------


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
