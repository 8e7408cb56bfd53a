"""The store's shared-table layout: streams kept apart by key prefix, bounded deletes, the old-layout migration
and file modes. Real LMDB on a temp directory throughout."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import lmdb
import msgspec
import pytest

from streamd.store import layout, migrate, reads, retention
from streamd.store import stream as streams
from streamd.store.env import Store
from streamd.store.layout import SEQ, Counters, StreamRecord
from streamd.streams import rules as config_rules
from streamd.wire.models import StreamConfig


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def opened(data: Path) -> Iterator[Store]:
    s = Store.open(data, sync=False)
    yield s
    s.close()


def _config(name: str, subjects: list[str], **kw: object) -> StreamConfig:
    return config_rules.normalize(StreamConfig(name=name, subjects=subjects, **kw))  # type: ignore[arg-type]


def _create(s: Store, name: str, subjects: list[str], **kw: object) -> streams.Stream:
    cfg = _config(name, subjects, **kw)
    with s.env.begin(write=True) as txn:
        sid = s.next_stream_id(txn)
        s.put_stream(txn, StreamRecord(sid, cfg, time.time_ns()))
        s.put_counters(txn, sid, Counters())
    return streams.Stream(sid, cfg, time.time_ns(), Counters(), s.open_stream_dbs(sid))


def _publish(s: Store, stream: streams.Stream, msgs: list[tuple[bytes, bytes | None, bytes]]) -> None:
    with s.env.begin(write=True) as txn:
        b = streams.Batch(s, txn, time.time_ns())
        for subject, hdrs, payload in msgs:
            streams.store_message(b, stream, subject, hdrs, payload)
        s.put_counters(txn, stream.id, stream.counters)
    stream.committed = msgspec.structs.replace(stream.counters)


def _rows(s: Store, stream_id: int) -> int:
    """Rows of one stream across all shared tables."""
    prefix = layout.SID.pack(stream_id)
    with s.read() as txn:
        return sum(sum(1 for _ in layout.scan(txn.cursor(db=db), prefix)) for db in s.tables.all())


def test_neighbouring_streams_never_see_each_others_rows(opened: Store) -> None:
    """Every read stops at the stream's key prefix: first/last/next/count/time search across a neighbour."""
    a = _create(opened, "A", ["a.>"])
    b = _create(opened, "B", ["b.>"])
    c = _create(opened, "C", ["c.>"])
    _publish(opened, b, [(b"b.x", None, b"b1")])
    _publish(opened, a, [(b"a.%d" % (i % 3), None, b"a%d" % i) for i in range(10)])
    _publish(opened, c, [(b"c.x", None, b"c1"), (b"c.x", None, b"c2")])
    _publish(opened, b, [(b"b.y", None, b"b2")])
    with opened.read() as txn:
        assert reads.load(txn, a, 10) is not None and reads.load(txn, a, 11) is None
        found, resume = reads.next_matching(txn, a, [], 9, 100)
        assert [f.data for f in found] == [b"a8", b"a9"] and resume == 11
        found, resume = reads.next_matching(txn, b, ["b.y"], 1, 100)
        assert [f.data for f in found] == [b"b2"]
        assert reads._snapshot_last(txn, b) == 2 and reads._snapshot_last(txn, c) == 2
        assert reads.subject_counts(txn, a, ">") == {"a.0": 4, "a.1": 3, "a.2": 3}
        assert reads.subject_counts(txn, c, "*.*") == {"c.x": 2}
        assert reads.count_after(txn, b, ["b.x"], 0) == 1
        assert reads.first_seq_at_or_after(txn, a, time.time_ns() + 10**12) == 11
        assert reads.last_by_subject(txn, c, "c.x").data == b"c2"  # type: ignore[union-attr]
        assert reads.next_by_subject(txn, a, "a.*", 10).data == b"a9"  # type: ignore[union-attr]
        assert reads.next_by_subject(txn, b, ">", 3) is None
        # A subject too long to be an LMDB key was never stored: lookups answer "none", they do not fail.
        long = "a." + "x" * 600
        assert reads.subject_counts(txn, a, long) == {} and reads.next_by_subject(txn, a, long, 1) is None
        assert reads.subject_counts(txn, a, long + ".>") == {}
    with opened.env.begin(write=True) as txn:
        streams.purge(streams.Batch(opened, txn, time.time_ns()), a)
        opened.put_counters(txn, a.id, a.counters)
    assert _rows(opened, a.id) == 0 and _rows(opened, b.id) == 4 and _rows(opened, c.id) == 4
    assert (a.counters.messages, a.counters.first_seq, a.counters.last_seq) == (0, 11, 10)


def test_dedup_and_ttl_rows_are_per_stream(opened: Store) -> None:
    a = _create(opened, "A", ["a"], allow_msg_ttl=True)
    b = _create(opened, "B", ["b"])
    _publish(opened, a, [(b"a", b"NATS/1.0\r\nNats-Msg-Id: one\r\nNats-TTL: 1s\r\n\r\n", b"x")])
    _publish(opened, b, [(b"b", b"NATS/1.0\r\nNats-Msg-Id: one\r\n\r\n", b"y")])  # same id, other stream
    assert b.counters.messages == 1
    with opened.read() as txn:
        assert retention.next_deadline(a, txn) > 0
    with opened.env.begin(write=True) as txn:
        batch = streams.Batch(opened, txn, time.time_ns() + 10 * 60 * 10**9)  # ten minutes on: all due
        retention.expire(batch, a)
        opened.put_counters(txn, a.id, a.counters)
    assert a.counters.messages == 0 and _rows(opened, a.id) == 0
    assert _rows(opened, b.id) == 4  # message, subject index, dedup id, dedup age


def test_deadlines_of_all_streams_match_each_streams_own(opened: Store) -> None:
    """The retention pass reads deadlines per stream that has rows, not per stream: same answers."""
    ttl = _create(opened, "T", ["t"], allow_msg_ttl=True)
    dedup = _create(opened, "D", ["d"], duplicate_window=5 * 10**9)
    aged = _create(opened, "A", ["a"], max_age=60 * 10**9)
    idle = _create(opened, "I", ["i"])
    _publish(opened, ttl, [(b"t", b"NATS/1.0\r\nNats-TTL: 30s\r\n\r\n", b"")])
    _publish(opened, dedup, [(b"d", b"NATS/1.0\r\nNats-Msg-Id: x\r\n\r\n", b"")])
    _publish(opened, aged, [(b"a", None, b"")])
    _publish(opened, idle, [(b"i", None, b"")])
    gone = _create(opened, "G", ["g"], allow_msg_ttl=True)
    _publish(opened, gone, [(b"g", b"NATS/1.0\r\nNats-TTL: 1s\r\n\r\n", b"")])
    with opened.env.begin(write=True) as txn:
        opened.drop_stream(txn, "G", gone.id)  # rows left to collect belong to nobody
    with opened.read() as txn:
        found = {s.name: due for s, due in retention.deadlines(txn, opened.tables, [ttl, dedup, aged, idle])}
        assert found == {s.name: retention.next_deadline(s, txn) for s in (ttl, dedup, aged)}
        assert retention.next_deadline(idle, txn) == 0


def test_delete_collects_rows_in_bounded_chunks_and_resumes_after_restart(data: Path) -> None:
    s = Store.open(data, sync=False)
    doomed = _create(s, "D", ["d.*"])
    keep = _create(s, "K", ["k"])
    _publish(s, doomed, [(b"d.%d" % (i % 7), None, b"%d" % i) for i in range(200)])
    _publish(s, keep, [(b"k", None, b"kept")])
    with s.env.begin(write=True) as txn:
        s.drop_stream(txn, "D", doomed.id)
        assert not s.collect(txn, doomed.id, budget=50)
    s.close()  # as if killed here: the record is gone, the rows are not
    s = Store.open(data, sync=False)
    try:
        assert [rec.config.name for rec, _c in s.load_streams()] == ["K"]
        assert s.dropped() == [doomed.id] and 0 < _rows(s, doomed.id) < 400
        rounds = 1
        while True:
            rounds += 1
            with s.env.begin(write=True) as txn:
                if s.collect(txn, doomed.id, budget=50):
                    break
        # 400 rows, 50 per transaction, and one more that finds none left
        assert rounds == 9 and s.dropped() == [] and _rows(s, doomed.id) == 0
        assert _rows(s, keep.id) == 2
    finally:
        s.close()


# ---- the old layout: five databases per stream ----------------------------------------------------------------


def _write_old_layout(path: Path, n_streams: int, n_msgs: int) -> dict[int, list[tuple[int, bytes, bytes]]]:
    """A data directory as the previous release wrote it; -> per stream id, its (seq, subject, payload)."""
    path.mkdir(parents=True)
    env = lmdb.open(str(path), map_size=1 << 28, max_dbs=layout.OLD_MAX_DBS, sync=False)
    meta = env.open_db(b"meta")
    written: dict[int, list[tuple[int, bytes, bytes]]] = {}
    now = time.time_ns()
    with env.begin(write=True) as txn:
        for sid in range(1, n_streams + 1):
            name = f"OLD{sid}"
            cfg = _config(name, [f"old{sid}.>"], allow_msg_ttl=True)
            txn.put(b"stream:" + name.encode(), msgspec.msgpack.encode(StreamRecord(sid, cfg, now)), db=meta)
            m = env.open_db(b"m.%d" % sid, txn=txn)
            subj = env.open_db(b"s.%d" % sid, txn=txn, dupsort=True, dupfixed=True)
            d = env.open_db(b"d.%d" % sid, txn=txn)
            t = env.open_db(b"t.%d" % sid, txn=txn)
            x = env.open_db(b"x.%d" % sid, txn=txn)
            rows = written[sid] = []
            size = 0
            for seq in range(1, n_msgs + 1):
                subject, payload = b"old%d.%d" % (sid, seq % 5), b"p%d" % seq
                txn.put(SEQ.pack(seq), layout.pack_message(subject, None, payload, now), db=m)
                txn.put(subject, SEQ.pack(seq), db=subj)
                size += layout.stored_size(len(subject), 0, len(payload))
                rows.append((seq, subject, payload))
            txn.put(b"id-1", layout.pack_pair(1, now), db=d)
            txn.put(SEQ.pack(now) + b"id-1", b"", db=t)
            txn.put(layout.pack_pair(now + 3600 * 10**9, 2), b"", db=x)
            counters = Counters(1, n_msgs, n_msgs, size, now, now, min(n_msgs, 5), b"id-1")
            txn.put(b"state:%d" % sid, counters.pack(), db=meta)
            txn.put(b"consumer:%d:C" % sid, b"consumer record", db=meta)
        txn.put(b"next-id", n_streams.to_bytes(4, "big"), db=meta)
    env.close()
    return written


def _check_migrated(path: Path, written: dict[int, list[tuple[int, bytes, bytes]]]) -> None:
    s = Store.open(path, sync=False)
    try:
        with s.read() as txn:
            assert txn.get(b"format", db=s.meta) == layout.FORMAT_VERSION.to_bytes(4, "big")
            names = {bytes(k) for k, _v in txn.cursor()}
        assert names == {b"meta", b"msgs", b"subjects", b"dedup", b"dedup-age", b"ttl", b"sched"}
        loaded = {rec.id: (rec, counters) for rec, counters in s.load_streams()}
        assert sorted(loaded) == sorted(written)
        for sid, rows in written.items():
            rec, counters = loaded[sid]
            stream = streams.Stream(sid, rec.config, rec.created_ns, counters, s.open_stream_dbs(sid))
            with s.read() as txn:
                found, _resume = reads.next_matching(txn, stream, [], 1, len(rows) + 10)
                assert [(f.seq, f.subject, f.data) for f in found] == rows  # every row once, none twice
                assert sum(reads.subject_counts(txn, stream, ">").values()) == len(rows)
                assert retention.next_deadline(stream, txn) > 0  # the ttl and dedup-age rows came along
                assert txn.get(stream.dbs.prefix + b"id-1", db=s.tables.dedup) is not None
            assert s.load_consumers(sid) == [("C", b"consumer record", None)]
        with s.read() as txn:  # new streams get new ids: the counter came along
            assert txn.get(b"next-id", db=s.meta) == len(written).to_bytes(4, "big")
    finally:
        s.close()


def test_old_layout_is_migrated_in_place(data: Path) -> None:
    written = _write_old_layout(data, n_streams=3, n_msgs=25)
    _check_migrated(data, written)
    _check_migrated(data, written)  # a second open finds the current layout and changes nothing


def test_a_migration_interrupted_between_transactions_finishes_on_the_next_open(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = _write_old_layout(data, n_streams=2, n_msgs=40)
    monkeypatch.setattr(migrate, "DELETE_CHUNK", 7)
    real_move = migrate._move_table
    calls = 0

    def move_then_die(*args: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt("killed")  # stands in for a kill between two transactions
        real_move(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(migrate, "_move_table", move_then_die)
    with pytest.raises(KeyboardInterrupt):
        Store.open(data, sync=False)
    monkeypatch.setattr(migrate, "_move_table", real_move)
    _check_migrated(data, written)


def test_a_stop_during_migration_stops_it_between_transactions(data: Path) -> None:
    written = _write_old_layout(data, n_streams=2, n_msgs=30)
    stop = threading.Event()
    stop.set()
    with pytest.raises(migrate.MigrationStopped, match="next start carries on"):
        Store.open(data, sync=False, stop=stop)
    _check_migrated(data, written)


async def test_a_migration_killed_at_any_moment_finishes_on_the_next_open(data: Path) -> None:
    """kill -9 of a real process mid-migration (wherever it lands), then a clean open must find every row once."""
    written = _write_old_layout(data, n_streams=4, n_msgs=3000)
    code = (
        "import sys, pathlib, streamd.store.env as s, streamd.store.migrate as m; m.DELETE_CHUNK = 64; "
        "print('go', flush=True); s.Store.open(pathlib.Path(sys.argv[1]), sync=True).close(); print('done', flush=True)"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, str(data), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    assert proc.stdout is not None
    assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"go\n"
    moved = data / "data.mdb"
    start = moved.stat().st_mtime_ns
    deadline = time.monotonic() + 30
    while moved.stat().st_mtime_ns == start and proc.returncode is None and time.monotonic() < deadline:
        await asyncio.sleep(0.005)  # waits for the migration's first commits, then kills it at once
    if proc.returncode is None:
        proc.send_signal(signal.SIGKILL)
    await proc.wait()
    _check_migrated(data, written)


# ---- file modes ----------------------------------------------------------------------------------------------


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_data_directory_and_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh" / "data"
        Store.open(fresh, sync=False).close()
        existing = tmp_path / "existing"
        existing.mkdir(mode=0o755)
        (existing / "streamd.lock").touch(mode=0o644)
        Store.open(existing, sync=False).close()
        for d in (fresh, existing):
            assert _mode(d) == 0o700
            assert {p.name: _mode(p) for p in d.iterdir()} == {
                "data.mdb": 0o600,
                "lock.mdb": 0o600,
                "streamd.lock": 0o600,
            }
    finally:
        os.umask(old)
