"""What a stream's subject_transform and republish cost per stored message, on the writer thread.

Stores N messages through `store_message` (the publish hot path, no network) into three streams: plain, with a
subject transform, with a transform plus republish (5 rounds each, the best one reported: a shared machine's load
only ever adds time); and times `Transform.apply` alone.

    .venv/bin/python scripts/bench_routing.py [N]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from streamd.store import stream as streams
from streamd.store.env import Store
from streamd.store.layout import Counters, StreamRecord
from streamd.streams import rules
from streamd.wire import transform
from streamd.wire.models import RePublish, StreamConfig, SubjectTransformConfig

BATCH = 1000
ROUNDS = 5


def _stream(store: Store, name: str, **cfg: object) -> streams.Stream:
    config = rules.normalize(StreamConfig(name=name, subjects=[f"{name}.>"], **cfg))  # type: ignore[arg-type]
    with store.env.begin(write=True) as txn:
        sid = store.next_stream_id(txn)
        store.put_stream(txn, StreamRecord(sid, config, time.time_ns()))
        store.put_counters(txn, sid, Counters())
    return streams.Stream(sid, config, time.time_ns(), Counters(), store.open_stream_dbs(sid))


def _store(store: Store, stream: streams.Stream, n: int) -> float:
    subjects = [f"{stream.name}.{i % 100}.x".encode() for i in range(BATCH)]
    started = time.perf_counter()
    for _ in range(n // BATCH):
        txn = store.begin_write()
        b = streams.Batch(store, txn, time.time_ns())
        for subject in subjects:
            streams.store_message(b, stream, subject, None, b"payload-of-some-64-bytes" * 2)
        store.put_counters(txn, stream.id, stream.counters)
        txn.commit()
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "data", sync=False)
        st = SubjectTransformConfig(src="{}.*.*", dest="t.$2.$1")
        plain = _stream(store, "plain")
        xf = _stream(store, "xf", subject_transform=SubjectTransformConfig(src=st.src.format("xf"), dest=st.dest))
        both = _stream(
            store,
            "rp",
            subject_transform=SubjectTransformConfig(src=st.src.format("rp"), dest=st.dest),
            republish=RePublish(src=">", dest="out.>"),
        )
        variants = (("plain", plain), ("subject_transform", xf), ("transform + republish", both))
        best = {label: min(_store(store, s, n // ROUNDS) for _ in range(ROUNDS)) for label, s in variants}
        for label, us in best.items():
            print(f"{label:>30}: {us:6.2f} us per stored message (best of {ROUNDS} rounds)")
        store.close()
    for dest in ("t.$2.$1", "t.$2.{{partition(8,1)}}.$1"):
        tr = transform.compile("a.*.*", dest)
        assert tr is not None
        started = time.perf_counter()
        for _ in range(n):
            tr.apply("a.1.x")
        label = f"apply {dest}"
        print(f"{label:>30}: {(time.perf_counter() - started) / n * 1e6:6.2f} us per subject")


if __name__ == "__main__":
    main()
