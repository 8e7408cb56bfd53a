"""The service as operators and publishers meet it: restarts, crashes, the embedded default, refusals, overload."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import sys
import time
from pathlib import Path

import nats
import pytest
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import APIError, NotFoundError, TooManyStalledMsgsError

from streamd import SyncMode
from tests.conftest import RunningService, StartService
from tests.helpers import drain_stderr, read_until, start_streamd_process, wait_for
from tests.natsd import NatsServer, free_port


async def _connect(url: str) -> nats.NATS:
    return await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)


@pytest.mark.parametrize("sync", list(SyncMode))
async def test_streams_and_messages_survive_restart(
    start_service: StartService, nats_server: NatsServer, sync: SyncMode
) -> None:
    service = await start_service(sync=sync)
    nc = await _connect(nats_server.url)
    js = nc.jetstream(timeout=5)
    await js.add_stream(name="KEEP", subjects=["keep.>"], max_msgs_per_subject=2, allow_direct=True)
    for i in range(5):
        await js.publish(f"keep.{i % 2}", b"m%d" % i, headers={"Nats-Msg-Id": f"id-{i}"})
    before = await js.stream_info("KEEP")
    await service.stop()

    await start_service(sync=sync)
    after = await js.stream_info("KEEP")
    assert after.config == before.config
    assert after.state == before.state
    assert (await js.get_msg("KEEP", 5)).data == b"m4"
    assert (await js.get_last_msg("KEEP", "keep.1")).data == b"m3"
    assert (await js.get_msg("KEEP", subject="keep.0", direct=True)).data == b"m4"
    # The dedup table is on disk too: a retried publish from before the restart is still recognised.
    dup = await js.publish("keep.0", b"again", headers={"Nats-Msg-Id": "id-4"})
    assert (dup.seq, dup.duplicate) == (5, True)
    assert (await js.publish("keep.0", b"new")).seq == 6
    await nc.close()


async def test_graceful_stop_answers_everything_it_took(start_service: StartService, nats_server: NatsServer) -> None:
    service = await start_service()
    nc = await _connect(nats_server.url)
    js = nc.jetstream(timeout=5, publish_async_max_pending=5000)
    await js.add_stream(name="STOP", subjects=["stop.>"])
    futures = [await js.publish_async("stop.x", b"%d" % i) for i in range(3000)]
    await wait_for(lambda: sum(f.done() for f in futures) >= 100)
    await service.stop()
    _done, silent = await asyncio.wait(futures, timeout=10)
    assert not silent, f"{len(silent)} publishes got neither a PubAck nor an error"
    results = [f.exception() or f.result() for f in futures]
    acked = {r.seq for r in results if not isinstance(r, BaseException)}
    assert acked, "the stop came before anything was acknowledged; the test proves nothing"

    await start_service()
    info = await wait_for(lambda: js.stream_info("STOP"))
    assert info.state.last_seq >= max(acked)
    for seq in sorted(acked)[:: max(1, len(acked) // 50)]:
        assert (await js.get_msg("STOP", seq)).seq == seq
    await nc.close()


async def test_no_background_task_outlives_the_service(start_service: StartService, nats_server: NatsServer) -> None:
    """Every task the service starts (writer, timers, API workers, a large request, the leaf's supervisor, the
    consumers') belongs to its TaskGroups: once run() has returned, none of them is left on the loop."""
    before = asyncio.all_tasks()
    service = await start_service()
    nc = await _connect(nats_server.url)
    js = nc.jetstream(timeout=10)
    subjects = [f"big.{i:05d}.{'s' * 40}" for i in range(800)]  # a create request over 32 KiB: a task of its own
    await js.add_stream(name="BIG", subjects=subjects)
    await js.publish(subjects[0], b"x")
    sub = await js.pull_subscribe(subjects[0], durable="d")
    assert len(await sub.fetch(1, timeout=5)) == 1
    await nc.close()
    await service.stop()
    left = sorted(t.get_name() for t in asyncio.all_tasks() - before if not t.done())
    assert left == [], left


async def test_kill_9_under_load_loses_no_acknowledged_message(nats_server: NatsServer, tmp_path: Path) -> None:
    data = tmp_path / "data"
    args = ("--server", nats_server.url, "--leaf", nats_server.leaf_url, "--data", str(data))
    proc = await start_streamd_process(*args)
    await read_until(proc, "streamd serving")
    drain = asyncio.create_task(drain_stderr(proc))
    nc = await _connect(nats_server.url)
    js = nc.jetstream(timeout=5, publish_async_max_pending=500)
    await js.add_stream(name="CRASH", subjects=["crash.>"])

    acked: dict[int, bytes] = {}
    stop = asyncio.Event()

    async def publisher() -> None:
        i = 0
        pending: list[tuple[bytes, asyncio.Future[nats.js.api.PubAck]]] = []
        while not stop.is_set():
            payload = b"msg-%d" % i
            i += 1
            try:
                pending.append((payload, await js.publish_async("crash.x", payload, wait_stall=2)))
            except TooManyStalledMsgsError:
                break
            if len(pending) >= 200:
                await _collect(pending)
        await _collect(pending)

    async def _collect(pending: list[tuple[bytes, asyncio.Future[nats.js.api.PubAck]]]) -> None:
        # After the kill some PubAcks never come: those messages were not acknowledged, nothing is promised.
        if not pending:
            return
        await asyncio.wait([f for _p, f in pending], timeout=3)
        for payload, fut in pending:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                acked[fut.result().seq] = payload
        pending.clear()

    task = asyncio.create_task(publisher())
    await wait_for(lambda: len(acked) >= 3000, timeout=30)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    drain.cancel()
    stop.set()
    await task

    proc = await start_streamd_process(*args)
    await read_until(proc, "streamd serving")
    drain = asyncio.create_task(drain_stderr(proc))
    try:
        info = await js.stream_info("CRASH")
        assert info.state.messages >= len(acked)
        seen: dict[bytes, int] = {}
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg("CRASH", seq)
            assert msg.data not in seen, f"{msg.data!r} stored twice (seqs {seen[msg.data]} and {seq})"
            seen[msg.data] = seq
        for seq, payload in acked.items():
            assert seen.get(payload) == seq, f"acknowledged message {payload!r} (seq {seq}) is missing"
    finally:
        await nc.close()
        proc.terminate()
        await proc.wait()
        drain.cancel()


async def test_embedded_default_serves_and_stops_its_server(tmp_path: Path) -> None:
    port, leaf_port = free_port(), free_port()
    proc = await start_streamd_process("--port", str(port), "--leaf-port", str(leaf_port), "--data", str(tmp_path))
    lines = await read_until(proc, "streamd serving")
    assert any(f"127.0.0.1:{port}" in line for line in lines)
    assert "sync always" in lines[-1] and str(tmp_path) in lines[-1]
    drain = asyncio.create_task(drain_stderr(proc))
    nc = await nats.connect(f"nats://127.0.0.1:{port}")
    js = nc.jetstream(timeout=5)
    await js.add_stream(name="EMB", subjects=["emb.>"])
    assert (await js.publish("emb.1", b"x")).seq == 1
    await nc.close()
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 20) == 0
    drain.cancel()
    # The child nats-server went with it.
    with pytest.raises(OSError):
        _r, w = await asyncio.open_connection("127.0.0.1", port)
        w.close()


async def _expect_refusal(proc: asyncio.subprocess.Process) -> str:
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1, err.decode()
    lines = [line for line in err.decode().splitlines() if line.startswith("streamd:")]
    assert len(lines) == 1 and "Traceback" not in err.decode()
    return lines[0]


async def test_refuses_to_start_where_jetstream_already_answers(jetstream_server: NatsServer, tmp_path: Path) -> None:
    proc = await start_streamd_process("--server", jetstream_server.url, "--data", str(tmp_path))
    line = await _expect_refusal(proc)
    assert "$JS.API.INFO is already answered" in line and "--domain" in line


async def test_a_domain_lets_it_run_beside_jetstream(start_service: StartService, jetstream_server: NatsServer) -> None:
    await start_service(server=jetstream_server.url, leaf=jetstream_server.leaf_url, domain="edge")
    nc = await nats.connect(jetstream_server.url)
    js = nc.jetstream(domain="edge", timeout=5)
    await js.add_stream(name="EDGE", subjects=["edge.>"])
    ack = await js.publish("edge.1", b"x")
    assert (ack.stream, ack.seq, ack.domain) == ("EDGE", 1, "edge")
    assert (await js.account_info()).domain == "edge"
    await nc.close()


async def test_second_process_cannot_open_the_same_data_dir(
    streamd: object, nats_server: NatsServer, tmp_path: Path
) -> None:
    proc = await start_streamd_process("--server", nats_server.url, "--data", str(tmp_path / "data"))
    line = await _expect_refusal(proc)
    assert "in use by another streamd process" in line


async def test_overload_refuses_with_an_error_and_counts(start_service: StartService, nats_server: NatsServer) -> None:
    await start_service(max_pending_msgs=20)
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream(timeout=10)
    await js.add_stream(name="BUSY", subjects=["busy"])
    # Raw requests: nats-py's publish_async leaves a future unresolved when the PubAck is an error.
    replies = await asyncio.gather(*(nc.request("busy", b"x" * 64, timeout=10) for _ in range(3000)))
    answers = [json.loads(r.data) for r in replies]
    refused = [a["error"] for a in answers if "error" in a]
    stored = [a["seq"] for a in answers if "error" not in a]
    assert refused, "the writer queue never filled up; the test proves nothing"
    assert all(e == {"code": 503, "err_code": 10023, "description": "insufficient resources"} for e in refused)
    raw = json.loads((await nc.request("$JS.API.INFO", b"")).data)
    assert raw["streamd"]["ingest_dropped"] == len(refused)
    assert (await js.stream_info("BUSY")).state.messages == len(stored)
    await nc.close()


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20))


async def test_full_disk_refuses_publishes_and_keeps_what_is_stored(nats_server: NatsServer, tmp_path: Path) -> None:
    # A file size limit makes LMDB's writes fail as a full disk would (EFBIG instead of ENOSPC).
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamd",
        "serve",
        "--server",
        nats_server.url,
        "--leaf",
        nats_server.leaf_url,
        "--data",
        str(tmp_path),
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=_limit_file_size,
        env={**os.environ},
    )
    await read_until(proc, "streamd serving")
    drain = asyncio.create_task(drain_stderr(proc))
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream(timeout=5)
    try:
        await js.add_stream(name="FULL", subjects=["full"])
        stored = 0
        with pytest.raises(APIError) as refused:
            for _ in range(10_000):
                await js.publish("full", os.urandom(4096))
                stored += 1
        assert refused.value.err_code == 10023
        assert stored > 10
        info = await js.stream_info("FULL")
        assert info.state.messages == stored
        assert (await js.get_msg("FULL", stored)).seq == stored
        assert proc.returncode is None
    finally:
        await nc.close()
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        await proc.wait()
        drain.cancel()


async def test_map_grows_by_itself(start_service: StartService, nats_server: NatsServer) -> None:
    await start_service(map_size_mib=1)
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream(timeout=10, publish_async_max_pending=1000)
    await js.add_stream(name="GROW", subjects=["grow"])
    futures = [await js.publish_async("grow", os.urandom(8000)) for _ in range(600)]
    acks = await asyncio.gather(*futures)
    assert [a.seq for a in acks] == list(range(1, 601))
    assert (await js.stream_info("GROW")).state.messages == 600
    await nc.close()


async def test_oversized_keys_are_handled_without_harming_neighbours(js: nats.js.JetStreamContext) -> None:
    await js.add_stream(name="KEYS", subjects=["keys.>"])
    with pytest.raises(APIError) as refused:
        await js.publish("keys." + "x" * 600, b"too long a subject for the index")
    assert (refused.value.code, refused.value.err_code) == (503, 10077)
    long_id = "id-" + "y" * 2000
    first = await js.publish("keys.a", b"1", headers={"Nats-Msg-Id": long_id})
    again = await js.publish("keys.a", b"1", headers={"Nats-Msg-Id": long_id})
    assert (first.seq, again.seq, again.duplicate) == (1, 1, True)
    nxt = await js.publish("keys.b", b"2", headers={"Nats-Expected-Last-Msg-Id": long_id})
    assert nxt.seq == 2
    assert (await js.stream_info("KEYS")).state.messages == 2


async def test_non_utf8_subjects_are_refused_and_the_service_keeps_serving(
    streamd: RunningService, nc: nats.NATS, js: nats.js.JetStreamContext
) -> None:
    """Raw protocol: NATS allows any non-space bytes in subjects; streamd treats subjects as text."""
    await js.add_stream(name="BYTES", subjects=["bytes.>"])
    await js.add_consumer("BYTES", nats.js.api.ConsumerConfig(durable_name="c", ack_policy="explicit"))
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.flush()
    await nc._send_command(b"PUB bytes.\xff " + inbox.encode() + b" 1\r\nx\r\n")
    await nc._send_command(b"PUB $JS.API.CONSUMER.MSG.NEXT.BYTES.c _INBOX.\xfe 0\r\n\r\n")
    await nc.flush()
    refused = json.loads((await sub.next_msg(timeout=3)).data)
    assert refused["error"]["code"] == 503 and "UTF-8" in refused["error"]["description"]
    assert (await js.publish("bytes.ok", b"fine")).seq == 1  # neighbours are unharmed, the connection is up
    [msg] = await (await js.pull_subscribe_bind("c", "BYTES")).fetch(1, timeout=2)
    assert msg.subject == "bytes.ok"
    conn = streamd.service.conn
    # the pull request's non-UTF-8 reply is refused at the door (400 status), no handler fails
    assert conn is not None and conn.raw_handler_errors == 0 and conn.stats["reconnects"] == 0


async def test_a_schedule_due_while_streamd_was_down_fires_once_at_start(
    start_service: StartService, nats_server: NatsServer
) -> None:
    """The schedule index is on disk: a due time that passed during the outage fires at the first retention pass
    after the start, once."""
    service = await start_service()
    nc = await _connect(nats_server.url)
    js = nc.jetstream(timeout=5)
    await js.add_stream(name="SCH", subjects=["sch.>"], allow_msg_schedules=True)
    due = time.time() + 1.5
    at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(due)) + f".{int(due % 1 * 1e6):06d}Z"
    await js.publish("sch.s", b"job", headers={"Nats-Schedule": f"@at {at}", "Nats-Schedule-Target": "sch.run"})
    await service.stop()
    await wait_for(lambda: time.time() > due + 0.2)

    await start_service()
    fired = await wait_for(lambda: _last_or_none(js, "SCH", "sch.run"))
    assert fired.data == b"job" and fired.headers and fired.headers["Nats-Scheduler"] == "sch.s"
    info = await js.stream_info("SCH")
    assert (info.state.messages, info.state.last_seq) == (1, 2)  # the schedule purged, one produced message
    await nc.close()


async def _last_or_none(js: JetStreamContext, stream: str, subject: str) -> RawStreamMsg | None:
    try:
        return await js.get_last_msg(stream, subject)
    except NotFoundError:
        return None
