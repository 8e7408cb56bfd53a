"""The LMDB environment: layout, record codecs, the directory lock and map growth.

Layout (one environment per data directory):

    meta                 b"stream:" + name  -> StreamRecord (msgpack: id, config, created)
                         b"state:" + id     -> counters (fixed binary, rewritten once per write batch)
                         b"next-id"         -> u32
    m.<id>               seq (u64 BE)       -> message record (see ``pack_message``)
    s.<id>  dupsort      subject            -> seq (u64 BE), one value per stored message on the subject
    d.<id>               msg id             -> seq u64 | stored ns u64      (dedup table)
    t.<id>               stored ns | msg id -> b""                          (dedup table, by age)
    x.<id>               expiry ns | seq    -> b""                          (per-message TTL)

Write transactions belong to one thread (``writer.Writer``). Reads happen anywhere through ``Store.read()``, which
also keeps map growth (``set_mapsize`` needs no live transaction in this process) from running under a reader.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import lmdb
import msgspec

from .models import StreamConfig

logger = logging.getLogger(__name__)

SEQ = struct.Struct(">Q")
_MSG_HEAD = struct.Struct(">QIH")  # stored ns, header length, subject length
_TWO_U64 = struct.Struct(">QQ")
_COUNTERS = struct.Struct(">QQQQQQQ")  # first_seq last_seq messages bytes first_ns last_ns num_subjects

INITIAL_MAP_SIZE = 1 << 30
Buf = bytes | memoryview  # what LMDB hands back
MAX_DBS = 16384


class StoreLocked(RuntimeError):
    """Another process holds this data directory."""


class StreamRecord(msgspec.Struct, array_like=True):
    id: int
    config: StreamConfig
    created_ns: int


class Counters(msgspec.Struct):
    """A stream's running totals; persisted with every batch that changes them, so startup reads, never scans."""

    first_seq: int = 0
    last_seq: int = 0
    messages: int = 0
    total_bytes: int = 0
    first_ns: int = 0
    last_ns: int = 0
    num_subjects: int = 0
    last_msg_id: bytes = b""

    def pack(self) -> bytes:
        return (
            _COUNTERS.pack(
                self.first_seq,
                self.last_seq,
                self.messages,
                self.total_bytes,
                self.first_ns,
                self.last_ns,
                self.num_subjects,
            )
            + self.last_msg_id
        )

    @classmethod
    def unpack(cls, raw: Buf) -> Counters:
        f, la, m, b, fn, ln, ns = _COUNTERS.unpack_from(raw)
        return cls(f, la, m, b, fn, ln, ns, bytes(raw[_COUNTERS.size :]))


def pack_message(subject: bytes, hdrs: bytes | None, data: bytes, ts_ns: int) -> bytes:
    """Fixed head (time, header and subject lengths) so that retention can read a time without decoding."""
    h = hdrs or b""
    return b"".join((_MSG_HEAD.pack(ts_ns, len(h), len(subject)), subject, h, data))


def unpack_message(raw: Buf) -> tuple[Buf, Buf, Buf, int]:
    """-> subject, headers (b"" when none), data, stored ns."""
    ts, hlen, slen = _MSG_HEAD.unpack_from(raw)
    o = _MSG_HEAD.size
    return raw[o : o + slen], raw[o + slen : o + slen + hlen], raw[o + slen + hlen :], ts


def message_time(raw: Buf) -> int:
    return int(SEQ.unpack_from(raw)[0])


def message_subject(raw: Buf) -> bytes:
    _ts, _hlen, slen = _MSG_HEAD.unpack_from(raw)
    return bytes(raw[_MSG_HEAD.size : _MSG_HEAD.size + slen])


def stored_size(subject_len: int, hdr_len: int, data_len: int) -> int:
    """Bytes a message counts against max_bytes, by the file store's formula so the numbers match JetStream."""
    return 22 + subject_len + data_len + 8 + (4 + hdr_len if hdr_len else 0)


def record_size(raw: Buf) -> int:
    _ts, hlen, slen = _MSG_HEAD.unpack_from(raw)
    return stored_size(slen, hlen, len(raw) - _MSG_HEAD.size - slen - hlen)


def pack_pair(a: int, b: int) -> bytes:
    return _TWO_U64.pack(a, b)


def unpack_pair(raw: Buf) -> tuple[int, int]:
    a, b = _TWO_U64.unpack_from(raw)
    return int(a), int(b)


class StreamDbs:
    """Handles of one stream's sub-databases."""

    __slots__ = ("dedup", "dedup_age", "msgs", "subjects", "ttl")

    def __init__(self, env: lmdb.Environment, stream_id: int, txn: lmdb.Transaction) -> None:
        self.msgs = env.open_db(b"m.%d" % stream_id, txn=txn, integerkey=False)
        self.subjects = env.open_db(b"s.%d" % stream_id, txn=txn, dupsort=True, dupfixed=True)
        self.dedup = env.open_db(b"d.%d" % stream_id, txn=txn)
        self.dedup_age = env.open_db(b"t.%d" % stream_id, txn=txn)
        self.ttl = env.open_db(b"x.%d" % stream_id, txn=txn)

    def all(self) -> tuple[lmdb._Database, ...]:
        return (self.msgs, self.subjects, self.dedup, self.dedup_age, self.ttl)


class Store:
    """Owns the environment. Open with ``Store.open(path, sync=...)``; close once everything has stopped."""

    def __init__(self, path: Path, env: lmdb.Environment, lock_fd: int) -> None:
        self.path = path
        self.env = env
        self._lock_fd = lock_fd
        self._map_lock = threading.RLock()
        self.meta = env.open_db(b"meta")

    @classmethod
    def open(cls, path: Path, *, sync: bool = True, map_size: int = INITIAL_MAP_SIZE) -> Store:
        path.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(path / "streamd.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(lock_fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StoreLocked(f"data directory {path} is in use by another streamd process") from None
            raise
        try:
            data_file = path / "data.mdb"
            if data_file.exists():
                map_size = max(map_size, _round_up(data_file.stat().st_size * 2, map_size))
            # writemap stays off: with it, a full disk turns into SIGBUS instead of a failed commit.
            env = lmdb.open(
                str(path),
                map_size=map_size,
                max_dbs=MAX_DBS,
                sync=sync,
                metasync=sync,
                readahead=False,
                max_readers=256,
                lock=True,
            )
        except BaseException:
            os.close(lock_fd)
            raise
        return cls(path, env, lock_fd)

    def close(self) -> None:
        with self._map_lock:
            self.env.close()
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)

    @contextlib.contextmanager
    def read(self) -> Iterator[lmdb.Transaction]:
        with self._map_lock, self.env.begin(buffers=False) as txn:
            yield txn

    def begin_write(self) -> lmdb.Transaction:
        return self.env.begin(write=True)

    def grow(self) -> int:
        """Double the map; called by the writer between transactions."""
        with self._map_lock:
            new_size = self.env.info()["map_size"] * 2
            self.env.set_mapsize(new_size)
        logger.info("store map grown to %d MiB", new_size >> 20)
        return int(new_size)

    def sync(self) -> None:
        self.env.sync(True)

    def open_stream_dbs(self, stream_id: int, txn: lmdb.Transaction) -> StreamDbs:
        return StreamDbs(self.env, stream_id, txn)

    # ---- meta records -------------------------------------------------------------------------------------

    def load_streams(self) -> list[tuple[StreamRecord, Counters]]:
        out: list[tuple[StreamRecord, Counters]] = []
        dec = msgspec.msgpack.Decoder(StreamRecord)
        with self.read() as txn:
            cur = txn.cursor(db=self.meta)
            if cur.set_range(b"stream:"):
                for key, value in cur:
                    if not bytes(key).startswith(b"stream:"):
                        break
                    rec = dec.decode(value)
                    raw = txn.get(b"state:%d" % rec.id, db=self.meta)
                    out.append((rec, Counters.unpack(raw) if raw else Counters()))
        return out

    def get_stream_record(self, txn: lmdb.Transaction, name: str) -> StreamRecord | None:
        raw = txn.get(b"stream:" + name.encode(), db=self.meta)
        return msgspec.msgpack.decode(raw, type=StreamRecord) if raw is not None else None

    def next_stream_id(self, txn: lmdb.Transaction) -> int:
        raw = txn.get(b"next-id", db=self.meta)
        nid = (int.from_bytes(raw, "big") if raw else 0) + 1
        txn.put(b"next-id", nid.to_bytes(4, "big"), db=self.meta)
        return nid

    def put_stream(self, txn: lmdb.Transaction, rec: StreamRecord) -> None:
        txn.put(b"stream:" + rec.config.name.encode(), msgspec.msgpack.encode(rec), db=self.meta)

    def put_counters(self, txn: lmdb.Transaction, stream_id: int, counters: Counters) -> None:
        txn.put(b"state:%d" % stream_id, counters.pack(), db=self.meta)

    def get_counters(self, txn: lmdb.Transaction, stream_id: int) -> Counters:
        raw = txn.get(b"state:%d" % stream_id, db=self.meta)
        return Counters.unpack(raw) if raw else Counters()

    def drop_stream(self, txn: lmdb.Transaction, name: str, stream_id: int, dbs: StreamDbs) -> None:
        txn.delete(b"stream:" + name.encode(), db=self.meta)
        txn.delete(b"state:%d" % stream_id, db=self.meta)
        for prefix in (b"consumer:%d:" % stream_id, b"cstate:%d:" % stream_id):
            for key in self._keys_with_prefix(txn, prefix):
                txn.delete(key, db=self.meta)
        for db in dbs.all():
            txn.drop(db, delete=True)

    def _keys_with_prefix(self, txn: lmdb.Transaction, prefix: bytes) -> list[bytes]:
        cur = txn.cursor(db=self.meta)
        out: list[bytes] = []
        if cur.set_range(prefix):
            for key in cur.iternext(keys=True, values=False):
                key = bytes(key)
                if not key.startswith(prefix):
                    break
                out.append(key)
        return out

    # ---- consumers: config record and state record, keyed by stream id and name ---------------------------

    def put_consumer(self, txn: lmdb.Transaction, stream_id: int, name: str, record: bytes) -> None:
        txn.put(b"consumer:%d:" % stream_id + name.encode(), record, db=self.meta)

    def put_consumer_state(self, txn: lmdb.Transaction, stream_id: int, name: str, state: bytes) -> None:
        txn.put(b"cstate:%d:" % stream_id + name.encode(), state, db=self.meta)

    def delete_consumer(self, txn: lmdb.Transaction, stream_id: int, name: str) -> None:
        txn.delete(b"consumer:%d:" % stream_id + name.encode(), db=self.meta)
        txn.delete(b"cstate:%d:" % stream_id + name.encode(), db=self.meta)

    def load_consumers(self, stream_id: int) -> list[tuple[str, bytes, bytes | None]]:
        """(name, config record, state record or None) of every consumer of a stream."""
        prefix = b"consumer:%d:" % stream_id
        out: list[tuple[str, bytes, bytes | None]] = []
        with self.read() as txn:
            for key in self._keys_with_prefix(txn, prefix):
                name = key[len(prefix) :].decode()
                record = bytes(txn.get(key, db=self.meta) or b"")
                state = txn.get(b"cstate:%d:" % stream_id + name.encode(), db=self.meta)
                out.append((name, record, bytes(state) if state is not None else None))
        return out


def _round_up(n: int, start: int) -> int:
    size = max(start, 1 << 20)
    while size < n:
        size *= 2
    return size
