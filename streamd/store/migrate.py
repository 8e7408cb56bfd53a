"""The move from the old layout (five LMDB databases per stream) to the shared tables, in place and resumable.

Kept apart from ``env``: it runs once per old data directory, before the store opens, and never again.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import lmdb

from streamd.store.layout import DELETE_CHUNK, FORMAT_VERSION, MAX_DBS, OLD_MAX_DBS, SID, Tables, open_env

logger = logging.getLogger(__name__)


class MigrationStopped(RuntimeError):
    """A stop was asked for during the layout migration; what moved stays moved and the next start carries on."""


def layout_version(path: Path, sync: bool, map_size: int) -> int:
    """The data directory's layout version; a new directory is stamped with the current one."""
    env = open_env(path, sync, map_size, MAX_DBS)
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
    env = open_env(path, sync, map_size, OLD_MAX_DBS)
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
