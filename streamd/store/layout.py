"""The on-disk layout: key structure, record codecs, the shared tables and cursor walks bounded by a stream's
key prefix; how the environment is opened.

One environment per data directory, with a fixed set of shared tables, so the number of streams is not bounded
by LMDB's max_dbs. ``sid`` is the stream id as u32 big-endian: every stream's keys share that prefix, so LMDB
order is (stream, key) order and a publish inserts at the end of its stream's range.

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
    sched                sid | ns | seq     -> b""                          (message schedules, by due time)
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import lmdb
import msgspec

from streamd.wire.models import StreamConfig

SEQ = struct.Struct(">Q")
_MSG_HEAD = struct.Struct(">QIH")  # stored ns, header length, subject length
MSG_HEAD = _MSG_HEAD  # for readers that split a record themselves (reads.Found, once per delivery)
_TWO_U64 = struct.Struct(">QQ")
_COUNTERS = struct.Struct(">QQQQQQQ")  # first_seq last_seq messages bytes first_ns last_ns num_subjects
Buf = bytes | memoryview  # what LMDB hands back


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


class Tables:
    """Handles of the shared tables, opened once per environment."""

    __slots__ = ("dedup", "dedup_age", "msgs", "sched", "subjects", "ttl")

    def __init__(self, env: lmdb.Environment) -> None:
        with env.begin(write=True) as txn:
            self.msgs = env.open_db(b"msgs", txn=txn)
            self.subjects = env.open_db(b"subjects", txn=txn, dupsort=True, dupfixed=True)
            self.dedup = env.open_db(b"dedup", txn=txn)
            self.dedup_age = env.open_db(b"dedup-age", txn=txn)
            self.ttl = env.open_db(b"ttl", txn=txn)
            self.sched = env.open_db(b"sched", txn=txn)

    def all(self) -> tuple[lmdb._Database, ...]:
        return (self.msgs, self.subjects, self.dedup, self.dedup_age, self.ttl, self.sched)


class StreamDbs:
    """One stream's view of the shared tables: their handles plus the stream's key prefix."""

    __slots__ = ("dedup", "dedup_age", "msgs", "prefix", "sched", "subjects", "ttl")

    def __init__(self, tables: Tables, stream_id: int) -> None:
        self.prefix = SID.pack(stream_id)
        self.msgs = tables.msgs
        self.subjects = tables.subjects
        self.dedup = tables.dedup
        self.dedup_age = tables.dedup_age
        self.ttl = tables.ttl
        self.sched = tables.sched

    def all(self) -> tuple[lmdb._Database, ...]:
        return (self.msgs, self.subjects, self.dedup, self.dedup_age, self.ttl, self.sched)

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


def open_env(path: Path, sync: bool, map_size: int, max_dbs: int) -> lmdb.Environment:
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
