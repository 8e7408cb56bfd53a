"""The store: one LMDB environment per data directory, its directory lock, map growth and the meta records
(streams, counters, consumers). The key layout and record codecs are in ``layout``, the old-layout migration in
``migrate``.

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
import threading
from collections.abc import Iterator
from pathlib import Path

import lmdb
import msgspec

from streamd.store import migrate
from streamd.store.layout import (
    DELETE_CHUNK,
    FORMAT_VERSION,
    MAX_DBS,
    MAX_STREAM_ID,
    SID,
    Counters,
    StreamDbs,
    StreamRecord,
    Tables,
    delete_prefix,
    open_env,
)
from streamd.wire import errors

logger = logging.getLogger(__name__)

INITIAL_MAP_SIZE = 1 << 30
_GONE = b"gone:"


class StoreLocked(RuntimeError):
    """Another process holds this data directory."""


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
            if migrate.layout_version(path, sync, map_size) < FORMAT_VERSION:
                migrate.migrate(path, sync, map_size, stop or threading.Event())
            env = open_env(path, sync, map_size, MAX_DBS)
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
        for prefix in (b"consumer:%d:" % stream_id, b"cstate:%d:" % stream_id, b"srcstate:%d:" % stream_id):
            for key in self._keys_with_prefix(txn, prefix):
                txn.delete(key, db=self.meta)
        txn.put(_GONE + SID.pack(stream_id), b"", db=self.meta)

    def reserve_stream_id(self, txn: lmdb.Transaction) -> int:
        """A new stream id whose rows count as a deleted stream's (collected) until ``unmark_gone``: an import
        writes under it in many transactions and only its last one makes the stream exist."""
        sid = self.next_stream_id(txn)
        txn.put(_GONE + SID.pack(sid), b"", db=self.meta)
        return sid

    def unmark_gone(self, txn: lmdb.Transaction, stream_id: int) -> None:
        txn.delete(_GONE + SID.pack(stream_id), db=self.meta)

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
