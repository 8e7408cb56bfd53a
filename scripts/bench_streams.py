"""Many streams in one store: create N streams (one message and one durable consumer record each) directly in
a fresh LMDB store, reopen it, and time what startup and the retention pass do with that many.

Usage (from the project root, with the project's venv):

    .venv/bin/python scripts/bench_streams.py [--streams 100000] [--batch 5000] [--dir PATH]

It drives the store code streamd itself runs (``Store``, ``streams.store_message``, ``StreamManager.recover``,
the consumers' ``persistence.ConsumerRecord``), not the API: the API path is shown by tests/test_many_streams.py. Prints
one line per phase (seconds) and the data size. Exit status 1 if any stream's message or record is missing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import msgspec

from streamd.consumers.persistence import ConsumerRecord
from streamd.store import reads, retention
from streamd.store import stream as streams
from streamd.store.env import Store
from streamd.store.layout import Counters, StreamRecord
from streamd.streams import rules as config_rules
from streamd.streams.manager import StreamManager
from streamd.wire.models import ConsumerConfig, StreamConfig


def create(store: Store, n: int, batch: int, consumers: bool = True) -> None:
    """n streams, batch of them per write transaction, each with one message and one consumer record."""
    now = time.time_ns()
    consumer = msgspec.msgpack.encode(ConsumerRecord(ConsumerConfig(durable_name="C"), now))
    for start in range(0, n, batch):
        with store.env.begin(write=True) as txn:
            b = streams.Batch(store, txn, now)
            for i in range(start, min(n, start + batch)):
                cfg = config_rules.normalize(StreamConfig(name=f"S{i}", subjects=[f"s.{i}"]))
                sid = store.next_stream_id(txn)
                store.put_stream(txn, StreamRecord(sid, cfg, now))
                stream = streams.Stream(sid, cfg, now, Counters(), store.open_stream_dbs(sid))
                streams.store_message(b, stream, f"s.{i}".encode(), None, b"message %d" % i)
                store.put_counters(txn, sid, stream.counters)
                if consumers:
                    store.put_consumer(txn, sid, "C", consumer)


def check(store: Store, registry: dict[str, streams.Stream], n: int, consumers: bool) -> int:
    """-> how many streams are missing their message or consumer record."""
    missing = 0
    with store.read() as txn:
        for i in range(0, n, max(1, n // 1000)):
            found = reads.load(txn, registry[f"S{i}"], 1)
            missing += found is None or found.data != b"message %d" % i
    missing += sum(1 for s in registry.values() if len(store.load_consumers(s.id)) != consumers)
    return missing + (n - len(registry))


def timed(label: str, start: float) -> float:
    now = time.monotonic()
    print(f"{label:<44} {now - start:8.2f} s", flush=True)
    return now


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=5_000)
    ap.add_argument("--no-consumers", action="store_true", help="no consumer record per stream")
    ap.add_argument("--dir", type=Path, default=None, help="data directory (default: a new temp dir)")
    args = ap.parse_args()
    path = args.dir or Path(tempfile.mkdtemp(prefix="streamd-bench-streams-")) / "data"
    print(f"{args.streams} streams, {args.batch} per transaction, in {path}")
    t = time.monotonic()
    store = Store.open(path, sync=True)
    create(store, args.streams, args.batch, not args.no_consumers)
    store.close()
    t = timed(f"create {args.streams} streams + messages + consumers", t)
    store = Store.open(path, sync=True)
    t = timed("reopen", t)
    registry: dict[str, streams.Stream] = {}
    StreamManager(store, registry, None).recover()  # type: ignore[arg-type]
    t = timed("load every stream (recover)", t)
    with store.read() as txn:
        due = retention.deadlines(txn, store.tables, list(registry.values()))
    t = timed("retention pass: deadlines of every stream", t)
    missing = check(store, registry, args.streams, not args.no_consumers)
    t = timed("check: messages, consumer records (per stream)", t)
    used = store.env.info()["last_pgno"] * store.env.stat()["psize"]
    store.close()
    size = os.path.getsize(path / "data.mdb")
    print(f"data: {used / 2**20:.1f} MiB used, data.mdb {size / 2**20:.1f} MiB", end="; ")
    print(f"deadlines {len(due)}; missing {missing}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
