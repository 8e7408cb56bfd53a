"""The store through the service: far more streams than the old one-database-per-stream layout allowed (it failed
at the 3,277th), stream deletes whose rows go in bounded chunks while everything else keeps serving, limits
refused before anything is stored, and a data directory nobody else can read."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from streamd import Service, ServiceConfig, StartupError
from streamd.store import env as store_mod
from streamd.store import layout
from tests.conftest import RunningService, StartService
from tests.helpers import drain_stderr, read_until, start_streamd_process, wait_for
from tests.natsd import NatsServer, free_port
from tests.unit.store.test_layout import _check_migrated, _write_old_layout

# Well past 3,276; kept at 4,000 for the test's runtime: each create still checks subject overlap against every
# stream (quadratic, a separate part of issue 9). scripts/bench_streams.py shows 100,000 at the store level.
N_STREAMS = 4_000


async def _create_all(nc: Client, n: int, window: int = 250) -> None:
    """STREAM.CREATE requests pipelined `window` at a time; every answer must be a created stream."""

    async def create(i: int) -> None:
        body = json.dumps({"name": f"M{i}", "subjects": [f"m.{i}"], "storage": "file"}).encode()
        reply = json.loads((await nc.request(f"$JS.API.STREAM.CREATE.M{i}", body, timeout=30)).data)
        assert "error" not in reply, reply
        assert reply["config"]["name"] == f"M{i}"

    for start in range(0, n, window):
        await asyncio.gather(*(create(i) for i in range(start, min(n, start + window))))


async def _account_streams(nc: Client) -> int:
    info = json.loads((await nc.request("$JS.API.INFO", b"", timeout=10)).data)
    return int(info["streams"])


async def test_four_thousand_streams_all_work_and_survive_a_restart(
    streamd: RunningService, start_service: StartService, nc: Client, js: JetStreamContext
) -> None:
    await _create_all(nc, N_STREAMS)
    assert await _account_streams(nc) == N_STREAMS
    probes = [0, 1, 3276, 3277, 3999]
    for i in probes:
        ack = await js.publish(f"m.{i}", b"hello %d" % i)
        assert (ack.stream, ack.seq) == (f"M{i}", 1)
    await js.delete_stream("M1")  # a delete among thousands touches no neighbour
    await streamd.stop()
    await start_service()
    assert await _account_streams(nc) == N_STREAMS - 1
    for i in (p for p in probes if p != 1):
        msg = await js.get_msg(f"M{i}", 1)
        assert (msg.subject, msg.data) == (f"m.{i}", b"hello %d" % i)
        assert (await js.stream_info(f"M{i}")).state.messages == 1
    ack = await js.publish("m.3999", b"again")
    assert ack.seq == 2


async def test_a_deleted_streams_rows_go_in_chunks_and_a_new_stream_of_that_name_starts_empty(
    streamd: RunningService, js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_mod, "DELETE_CHUNK", 25)  # 200 messages -> many collection transactions
    await js.add_stream(name="BIG", subjects=["big.*"], allow_msg_ttl=True)
    await js.add_stream(name="SMALL", subjects=["small"])
    acks = [await js.publish_async(f"big.{i % 10}", b"%d" % i, headers={"Nats-Msg-Id": str(i)}) for i in range(200)]
    assert [(await a).seq for a in acks] == list(range(1, 201))
    await js.add_consumer("BIG", durable_name="D")
    await js.publish("small", b"kept")
    ctx = streamd.service.ctx
    assert ctx is not None
    manager, store = ctx.manager, ctx.manager.store
    big_id = manager.get("BIG").id

    def rows() -> int:
        prefix = layout.SID.pack(big_id)
        with store.read() as txn:
            return sum(sum(1 for _ in layout.scan(txn.cursor(db=db), prefix)) for db in store.tables.all())

    assert rows() == 800  # message, subject index, dedup id and its age, per message
    await js.delete_stream("BIG")
    await wait_for(lambda: rows() == 0 and not manager.dropped and not store.dropped())
    assert store.load_consumers(big_id) == []
    await js.add_stream(name="BIG", subjects=["big.*"])
    info = await js.stream_info("BIG")
    assert (info.state.messages, info.state.last_seq) == (0, 0)
    ack = await js.publish("big.0", b"new", headers={"Nats-Msg-Id": "0"})  # the old dedup row is gone too
    assert (ack.seq, ack.duplicate) == (1, None)
    assert (await js.get_msg("SMALL", 1)).data == b"kept"


async def test_limits_are_refused_with_the_servers_errors_and_nothing_stored(nc: Client, js: JetStreamContext) -> None:
    """Names count UTF-8 bytes (as nats-server does); over-long subjects and filters never reach an LMDB key."""

    async def request(subject: str, body: dict[str, object]) -> dict[str, object]:
        return dict(json.loads((await nc.request(subject, json.dumps(body).encode(), timeout=5)).data))

    long_name = "\U0001f600" * 64  # 64 characters, 256 bytes
    reply = await request(f"$JS.API.STREAM.CREATE.{long_name}", {"name": long_name, "subjects": ["e"]})
    assert reply["error"] == {
        "code": 500,
        "err_code": 10052,
        "description": "stream name is too long, maximum allowed is 255",
    }
    assert await _account_streams(nc) == 0
    ok_name = "\U0001f600" * 63
    reply = await request(f"$JS.API.STREAM.CREATE.{ok_name}", {"name": ok_name, "subjects": ["e.>"]})
    assert "error" not in reply
    reply = await request(
        f"$JS.API.CONSUMER.DURABLE.CREATE.{ok_name}.{long_name}",
        {"stream_name": ok_name, "config": {"durable_name": long_name}},
    )
    assert reply["error"] == {
        "code": 400,
        "err_code": 10102,
        "description": "consumer name is too long, maximum allowed is 255",
    }
    subject = "e." + "x" * 600
    reply = json.loads((await nc.request(subject, b"too long", timeout=5)).data)
    assert reply["error"] == {
        "code": 503,
        "err_code": 10077,
        "description": "subject is longer than 480 bytes, streamd cannot store it",
    }
    assert (await js.publish("e.fine", b"1")).seq == 1
    info = await request(f"$JS.API.STREAM.INFO.{ok_name}", {"subjects_filter": subject})
    assert info["state"]["messages"] == 1 and "subjects" not in info["state"]  # type: ignore[index,operator]
    reply = await request(
        f"$JS.API.CONSUMER.CREATE.{ok_name}.F", {"stream_name": ok_name, "config": {"filter_subject": subject}}
    )
    assert reply["num_pending"] == 0


async def test_everything_in_the_data_directory_is_private_under_umask_022(tmp_path: Path) -> None:
    """The embedded default writes its nats-server config there as well: all of it 0600, the directory 0700."""
    data = tmp_path / "data"
    old = os.umask(0o022)  # the child inherits it
    try:
        proc = await start_streamd_process(
            "--port", str(free_port()), "--leaf-port", str(free_port()), "--data", str(data)
        )
    finally:
        os.umask(old)
    await read_until(proc, "streamd serving")
    drain = asyncio.create_task(drain_stderr(proc))
    try:
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in data.iterdir()} == {
            "data.mdb": 0o600,
            "lock.mdb": 0o600,
            "streamd.lock": 0o600,
            "nats-server.conf": 0o600,
            "nats-server.log": 0o600,
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        drain.cancel()


async def test_a_stop_during_the_layout_migration_is_honoured_and_the_next_start_finishes_it(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    written = _write_old_layout(data, n_streams=2, n_msgs=5_000)
    monkeypatch.setattr(store_mod, "DELETE_CHUNK", 20)  # 1,000 transactions, each with its fsync
    settings = {"server": nats_server.url, "leaf": nats_server.leaf_url, "data": data}
    service = Service(ServiceConfig(**settings))  # type: ignore[arg-type]
    task = asyncio.create_task(service.run())
    await wait_for(lambda: "has the old layout" in caplog.text, 10)
    service.stop()  # what SIGTERM does, while the migration runs
    with pytest.raises(StartupError, match="next start carries on"):
        await asyncio.wait_for(task, 10)
    monkeypatch.setattr(store_mod, "DELETE_CHUNK", 10_000)
    _check_migrated(data, written)
