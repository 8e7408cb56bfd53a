"""A Store on a temp directory and the few steps a test of the write path needs: create a stream, run one write
transaction the way the writer does (counters persisted, committed counters refreshed), publish."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import msgspec

from streamd.store import stream as streams
from streamd.store.env import Store
from streamd.store.layout import Counters, StreamRecord, key_seq, scan
from streamd.streams import rules
from streamd.wire import headers
from streamd.wire.models import StreamConfig

T = TypeVar("T")
NOW = 1_800_000_000 * 1_000_000_000  # a fixed clock: windows and ages are exact
SECOND = 1_000_000_000


def make_stream(store: Store, name: str = "S", subjects: list[str] | None = None, **cfg: object) -> streams.Stream:
    config = rules.normalize(StreamConfig(name=name, subjects=subjects or [f"{name.lower()}.>"], **cfg))  # type: ignore[arg-type]
    with store.env.begin(write=True) as txn:
        sid = store.next_stream_id(txn)
        store.put_stream(txn, StreamRecord(sid, config, NOW))
        store.put_counters(txn, sid, Counters())
    return streams.Stream(sid, config, NOW, Counters(), store.open_stream_dbs(sid))


def write(store: Store, fn: Callable[[streams.Batch], T], now: int = NOW) -> T:
    """Run `fn` in one write transaction and commit it; an exception aborts it (counters are then stale, as
    they would be in the writer before it reloads them)."""
    txn = store.begin_write()
    try:
        batch = streams.Batch(store, txn, now)
        result = fn(batch)
        for s in batch.touched.values():
            store.put_counters(txn, s.id, s.counters)
    except BaseException:
        txn.abort()
        raise
    txn.commit()
    for s in batch.touched.values():
        s.committed = msgspec.structs.replace(s.counters)
    return result


def publish(
    store: Store,
    stream: streams.Stream,
    subject: str,
    data: bytes = b"x",
    hdrs: dict[str, str] | None = None,
    now: int = NOW,
) -> tuple[int, bool]:
    block = headers.build(list(hdrs.items())) if hdrs else None
    return write(store, lambda b: streams.store_message(b, stream, subject.encode(), block, data), now)


def seqs(store: Store, stream: streams.Stream) -> list[int]:
    """Every stored sequence, from the messages table itself (not from the counters)."""
    with store.read() as txn:
        return [key_seq(k) for k, _v in scan(txn.cursor(db=stream.dbs.msgs), stream.dbs.prefix)]
