"""The LMDB environment: layout, record codecs, the directory lock, map growth and the layout migration.

Layout (one environment per data directory; a fixed set of shared tables, so the number of streams is not
bounded by LMDB's max_dbs). ``sid`` is the stream id as u32 big-endian: every stream's keys share that prefix,
so LMDB order is (stream, key) order and a publish inserts at the end of its stream's range.

    meta                 b"stream:" + name  -> StreamRecord (msgpack: id, config, created)
                         b"state:" + id     -> counters (fixed binary, rewritten once per write batch)
                         b"next-id"         -> u32
                         b"format"          -> u32 layout version (absent: the old one-db-per-stream layout)
                         b"gone:" + sid     -> b"" (a deleted stream whose rows are still being removed)
    msgs                 sid | seq u64      -> message record (see ``pack_message``)
    subjects  dupsort    sid | subject      -> seq (u64 BE), one value per stored message on the subject
    dedup                sid | msg id       -> seq u64 | stored ns u64      (dedup table)
    dedup-age            sid | ns | msg id  -> b""                          (dedup table, by age)
    ttl                  sid | ns | seq     -> b""                          (per-message TTL)

Write transactions belong to one thread (``writer.Writer``). Reads happen anywhere through ``Store.read()``, which
also keeps map growth (``set_mapsize`` needs no live transaction in this process) from running under a reader.
The data directory is 0700 and its files 0600 whatever the umask: messages are nobody else's to read.
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

from streamd.wire import errors
from streamd.wire.models import StreamConfig

logger = logging.getLogger(__name__)

SEQ = struct.Struct(">Q")
_MSG_HEAD = struct.Struct(">QIH")  # stored ns, header length, subject length
_TWO_U64 = struct.Struct(">QQ")
_COUNTERS = struct.Struct(">QQQQQQQ")  # first_seq last_seq messages bytes first_ns last_ns num_subjects

INITIAL_MAP_SIZE = 1 << 30
Buf = bytes | memoryview  # what LMDB hands back


class StoreLocked(RuntimeError):
    """Another process holds this data directory."""


class MigrationStopped(RuntimeError):
    """A stop was asked for during the layout migration; what moved stays moved and the next start carries on."""


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
        return _COUNTERS.pack(*msgspec.structs.astuple(self)[:-1]) + self.last_msg_id

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


SID = struct.Struct(">I")
FORMAT_VERSION = 2
MAX_DBS = 16  # the shared tables below plus room; one environment never needs more
OLD_MAX_DBS = 16384  # the old layout's limit: only a migration opens that many
MAX_STREAM_ID = (1 << 32) - 1
MAX_KEY = 511  # LMDB's key size limit (the default build)
DELETE_CHUNK = 10_000  # rows a stream delete or migration removes per transaction
_GONE = b"gone:"


class Tables:
    """Handles of the shared tables, opened once per environment."""

    __slots__ = ("dedup", "dedup_age", "msgs", "subjects", "ttl")

    def __init__(self, env: lmdb.Environment) -> None:
        with env.begin(write=True) as txn:
            self.msgs = env.open_db(b"msgs", txn=txn)
            self.subjects = env.open_db(b"subjects", txn=txn, dupsort=True, dupfixed=True)
            self.dedup = env.open_db(b"dedup", txn=txn)
            self.dedup_age = env.open_db(b"dedup-age", txn=txn)
            self.ttl = env.open_db(b"ttl", txn=txn)

    def all(self) -> tuple[lmdb._Database, ...]:
        return (self.msgs, self.subjects, self.dedup, self.dedup_age, self.ttl)


class StreamDbs:
    """One stream's view of the shared tables: their handles plus the stream's key prefix."""

    __slots__ = ("dedup", "dedup_age", "msgs", "prefix", "subjects", "ttl")

    def __init__(self, tables: Tables, stream_id: int) -> None:
        self.prefix = SID.pack(stream_id)
        self.msgs = tables.msgs
        self.subjects = tables.subjects
        self.dedup = tables.dedup
        self.dedup_age = tables.dedup_age
        self.ttl = tables.ttl

    def all(self) -> tuple[lmdb._Database, ...]:
        return (self.msgs, self.subjects, self.dedup, self.dedup_age, self.ttl)

    def mkey(self, seq: int) -> bytes:
        return self.prefix + SEQ.pack(seq)

    def skey(self, subject: bytes) -> bytes:
        """The subject index key; a subject too long to be a key was never stored, so it maps to a key that
        matches nothing (0xff never occurs in UTF-8) instead of failing the lookup."""
        return self.prefix + (subject if len(subject) <= MAX_KEY - SID.size else b"\xff")


def key_seq(key: Buf) -> int:
    """The seq of a ``msgs`` key (after the 4-byte stream prefix)."""
    return int(SEQ.unpack_from(key, 4)[0])


def seek_first(cur: lmdb.Cursor, prefix: bytes, start: bytes = b"") -> bool:
    """Position at the first key >= prefix+start that still has the prefix."""
    return bool(cur.set_range(prefix + start)) and bytes(cur.key()[: len(prefix)]) == prefix


def seek_last(cur: lmdb.Cursor, prefix: bytes) -> bool:
    """Position at the last key with the prefix (the last duplicate in a dupsort table)."""
    n = int.from_bytes(prefix, "big")
    found = cur.prev() if n < MAX_STREAM_ID and cur.set_range(SID.pack(n + 1)) else cur.last()
    return bool(found) and bytes(cur.key()[: len(prefix)]) == prefix


def scan(cur: lmdb.Cursor, prefix: bytes, start: bytes = b"") -> Iterator[tuple[Buf, Buf]]:
    """(key, value) from prefix+start on, while the key has the prefix."""
    if not seek_first(cur, prefix, start):
        return
    n = len(prefix)
    for key, value in cur:
        if key[:n] != prefix:
            return
        yield key, value


def delete_prefix(cur: lmdb.Cursor, prefix: bytes, budget: int) -> int:
    """Delete up to `budget` rows whose key has the prefix; -> rows deleted (< budget: none are left)."""
    n = 0
    if not seek_first(cur, prefix):
        return 0
    while n < budget:
        if bytes(cur.key()[: len(prefix)]) != prefix:
            break
        n += 1
        if not cur.delete() or not cur.key():
            break
    return n


class Store:
    """Owns the environment. Open with ``Store.open(path, sync=...)``; close once everything has stopped."""

    def __init__(self, path: Path, env: lmdb.Environment, lock_fd: int) -> None:
        self.path = path
        self.env = env
        self._lock_fd = lock_fd
        self._map_lock = threading.RLock()
        self.meta = env.open_db(b"meta")
        self.tables = Tables(env)

    @classmethod
    def open(
        cls, path: Path, *, sync: bool = True, map_size: int = INITIAL_MAP_SIZE, stop: threading.Event | None = None
    ) -> Store:
        """Lock, migrate an old layout (checking `stop` between transactions: SIGTERM is honoured) and open."""
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path, 0o700)
        lock_fd = os.open(path / "streamd.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.fchmod(lock_fd, 0o600)
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
            if _layout(path, sync, map_size) < FORMAT_VERSION:
                migrate(path, sync, map_size, stop or threading.Event())
            env = _open_env(path, sync, map_size, MAX_DBS)
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

    def open_stream_dbs(self, stream_id: int) -> StreamDbs:
        return StreamDbs(self.tables, stream_id)

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
        if nid > MAX_STREAM_ID:  # ids are never reused, so this counts every stream ever created
            raise errors.MAX_STREAMS()
        txn.put(b"next-id", nid.to_bytes(4, "big"), db=self.meta)
        return nid

    def put_stream(self, txn: lmdb.Transaction, rec: StreamRecord) -> None:
        txn.put(b"stream:" + rec.config.name.encode(), msgspec.msgpack.encode(rec), db=self.meta)

    def put_counters(self, txn: lmdb.Transaction, stream_id: int, counters: Counters) -> None:
        txn.put(b"state:%d" % stream_id, counters.pack(), db=self.meta)

    def get_counters(self, txn: lmdb.Transaction, stream_id: int) -> Counters:
        raw = txn.get(b"state:%d" % stream_id, db=self.meta)
        return Counters.unpack(raw) if raw else Counters()

    def drop_stream(self, txn: lmdb.Transaction, name: str, stream_id: int) -> None:
        """Remove the stream's records and mark its rows for collection, in one transaction.

        Without its record the stream cannot come back, and stream ids are never reused, so rows not yet
        collected are invisible; ``collect`` removes them in bounded transactions (resumed after a restart).
        """
        txn.delete(b"stream:" + name.encode(), db=self.meta)
        txn.delete(b"state:%d" % stream_id, db=self.meta)
        for prefix in (b"consumer:%d:" % stream_id, b"cstate:%d:" % stream_id):
            for key in self._keys_with_prefix(txn, prefix):
                txn.delete(key, db=self.meta)
        txn.put(_GONE + SID.pack(stream_id), b"", db=self.meta)

    def collect(self, txn: lmdb.Transaction, stream_id: int, budget: int = 0) -> bool:
        """Delete up to `budget` (DELETE_CHUNK) rows of a dropped stream; True when none are left (its mark is
        then removed)."""
        budget = budget or DELETE_CHUNK
        prefix = SID.pack(stream_id)
        for db in self.tables.all():
            budget -= delete_prefix(txn.cursor(db=db), prefix, budget)
            if budget <= 0:
                return False
        txn.delete(_GONE + prefix, db=self.meta)
        return True

    def dropped(self) -> list[int]:
        """Ids of deleted streams whose rows are not all collected yet."""
        with self.read() as txn:
            return [SID.unpack(k[len(_GONE) :])[0] for k in self._keys_with_prefix(txn, _GONE)]

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


def _open_env(path: Path, sync: bool, map_size: int, max_dbs: int) -> lmdb.Environment:
    # writemap stays off: with it, a full disk turns into SIGBUS instead of a failed commit.
    env = lmdb.open(
        str(path),
        map_size=map_size,
        max_dbs=max_dbs,
        sync=sync,
        metasync=sync,
        readahead=False,
        max_readers=256,
        lock=True,
        mode=0o600,
    )
    for name in ("data.mdb", "lock.mdb"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path / name, 0o600)
    return env


def _layout(path: Path, sync: bool, map_size: int) -> int:
    """The data directory's layout version; a new directory is stamped with the current one."""
    env = _open_env(path, sync, map_size, MAX_DBS)
    try:
        with env.begin(write=True) as txn:
            meta = env.open_db(b"meta", txn=txn)
            raw = txn.get(b"format", db=meta)
            if raw is not None:
                return int.from_bytes(raw, "big")
            if txn.get(b"next-id", db=meta) is not None:
                return 1  # streams were created by the old code (next-id is never removed)
            txn.put(b"format", FORMAT_VERSION.to_bytes(4, "big"), db=meta)
            return FORMAT_VERSION
    finally:
        env.close()


def migrate(path: Path, sync: bool, map_size: int, stop: threading.Event) -> None:
    """Move the old layout (five databases per stream) into the shared tables, in place.

    Each transaction moves up to DELETE_CHUNK rows (copy, then delete from the old database), so a kill at any
    point leaves every row in exactly one place and a re-run carries on; the format stamp comes last. `stop` is
    looked at before every transaction.
    """
    env = _open_env(path, sync, map_size, OLD_MAX_DBS)
    try:
        meta = env.open_db(b"meta")
        tables = Tables(env)
        with env.begin() as txn:
            names = [bytes(k) for k, _v in txn.cursor()]
        old = [n for n in names if n[:2] in _OLD_TABLES and n[2:].isdigit()]
        logger.warning("data directory %s has the old layout: migrating %d tables in place", path, len(old))
        for name in old:
            while True:
                try:
                    _move_table(env, name, getattr(tables, _OLD_TABLES[name[:2]]), SID.pack(int(name[2:])), stop)
                    break
                except lmdb.MapFullError:  # the chunk was aborted whole: grow and carry on
                    env.set_mapsize(env.info()["map_size"] * 2)
        with env.begin(write=True) as txn:
            txn.put(b"format", FORMAT_VERSION.to_bytes(4, "big"), db=meta)
        logger.warning("data directory %s migrated to layout %d", path, FORMAT_VERSION)
    finally:
        env.close()


_OLD_TABLES = {b"m.": "msgs", b"s.": "subjects", b"d.": "dedup", b"t.": "dedup_age", b"x.": "ttl"}


def _move_table(env: lmdb.Environment, name: bytes, new: lmdb._Database, prefix: bytes, stop: threading.Event) -> None:
    """Move one old table's rows under `prefix`, DELETE_CHUNK per transaction, then drop it."""
    dupsort = name[:2] == b"s."
    while True:
        if stop.is_set():
            raise MigrationStopped("stopped during the layout migration; the next start carries on where it stopped")
        with env.begin(write=True) as txn:
            old = env.open_db(name, txn=txn, dupsort=dupsort, dupfixed=dupsort)
            cur = txn.cursor(db=old)
            moved = 0
            if cur.first():
                while moved < DELETE_CHUNK:
                    txn.put(prefix + cur.key(), cur.value(), db=new, dupdata=dupsort)
                    moved += 1
                    if not cur.delete() or not cur.key():
                        break
            if moved < DELETE_CHUNK:
                txn.drop(old, delete=True)
                return
