"""STREAM.SNAPSHOT / STREAM.RESTORE against streamd, driven by nats-py as the raw protocol client: the wire shape
(ack replies, the final 204), an exact round trip (sequences with gaps, times, headers, consumer state), a
restore under a new name and subjects, clients that vanish mid-transfer, and hostile snapshots refused with
nothing left behind."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig
from nats.js.errors import NotFoundError

from streamd.api import snapshot as snapshot_api
from streamd.client import snapshot as snap_client
from tests.conftest import RunningService
from tests.helpers import wait_for


async def _ask(nc: Client, subject: str, body: Any) -> dict[str, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    reply = await nc.request(subject, data, timeout=5)
    answer: dict[str, Any] = json.loads(reply.data)
    return answer


async def _fill(js: JetStreamContext) -> None:
    """S: 12 messages, two with headers, seqs 3 and 7 deleted; durable D: 1-2 acked, 4-5 delivered unacked."""
    await js.add_stream(StreamConfig(name="S", subjects=["s.>"]))
    for i in range(1, 13):
        hdrs = {"X-N": str(i)} if i in (2, 9) else None
        await js.publish(f"s.{i % 3}", b"m%d" % i, headers=hdrs)
    await js.delete_msg("S", 3)
    await js.delete_msg("S", 7)
    await js.add_consumer("S", ConsumerConfig(durable_name="D", ack_policy=AckPolicy.EXPLICIT, ack_wait=60))
    sub = await js.pull_subscribe("s.>", durable="D", stream="S")
    msgs = await sub.fetch(4, timeout=5)
    assert [m.metadata.sequence.stream for m in msgs] == [1, 2, 4, 5]
    await msgs[0].ack_sync()
    await msgs[1].ack_sync()


async def _state(nc: Client, js: JetStreamContext, name: str) -> dict[str, Any]:
    info = await _ask(nc, f"$JS.API.STREAM.INFO.{name}", {"deleted_details": True})
    msgs = {}
    for seq in range(1, info["state"]["last_seq"] + 1):
        got = await _ask(nc, f"$JS.API.STREAM.MSG.GET.{name}", {"seq": seq})
        if "message" in got:
            m = got["message"]
            msgs[seq] = (m["subject"], m.get("hdrs"), m.get("data"), m["time"])
    st = info["state"]
    return {
        "state": {
            k: st.get(k)
            for k in (
                "messages",
                "bytes",
                "first_seq",
                "first_ts",
                "last_seq",
                "last_ts",
                "num_subjects",
                "num_deleted",
                "deleted",
            )
        },
        "created": info["created"],
        "msgs": msgs,
    }


async def _consumer(nc: Client, stream: str, name: str) -> dict[str, Any]:
    """The consumer's progress (last_active is not kept: like a restart, a restore does not carry it)."""
    info = await _ask(nc, f"$JS.API.CONSUMER.INFO.{stream}.{name}", b"")
    for key in ("delivered", "ack_floor"):
        info[key].pop("last_active", None)
    return {k: info[k] for k in ("delivered", "ack_floor", "num_ack_pending", "num_redelivered", "num_pending")}


async def _take_snapshot(nc: Client, stream: str, **kw: Any) -> tuple[dict[str, Any], bytes]:
    s = await snap_client.start_snapshot(nc, stream, **kw)
    data = b"".join([c async for c in s.chunks()])
    await s.close()
    return s.answer, data


async def _pieces(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_snapshot_wire_shape(nc: Client, js: JetStreamContext) -> None:
    """Chunks of chunk_size with `$JS.SNAPSHOT.ACK.<stream>.<id>.<len>.<n>` replies, then an empty `204`."""
    await js.add_stream(StreamConfig(name="W", subjects=["w"]))
    for i in range(300):
        await js.publish("w", bytes(range(256)) * 8 + b"%d" % i)
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    answer = await _ask(nc, "$JS.API.STREAM.SNAPSHOT.W", {"deliver_subject": inbox, "chunk_size": 1024})
    assert answer["type"] == "io.nats.jetstream.api.v1.stream_snapshot_response"
    assert answer["config"]["name"] == "W" and answer["state"]["messages"] == 300
    sizes, n = [], 0
    while True:
        msg = await sub.next_msg(timeout=5)
        if not msg.data:
            assert msg.headers and msg.headers.get("Status") == "204"
            break
        n += 1
        sizes.append(len(msg.data))
        if msg.reply:
            parts = msg.reply.split(".")
            assert parts[:4] == ["$JS", "SNAPSHOT", "ACK", "W"] and parts[5:] == [str(len(msg.data)), str(n)]
            await nc.publish(msg.reply, b"")
    assert n > 2 and set(sizes[:-1]) == {1024} and 0 < sizes[-1] <= 1024
    await sub.unsubscribe()


async def test_round_trip_keeps_sequences_times_headers_and_consumers(nc: Client, js: JetStreamContext) -> None:
    await _fill(js)
    before, consumer_before = await _state(nc, js, "S"), await _consumer(nc, "S", "D")
    answer, data = await _take_snapshot(nc, "S", chunk_size=1024)
    assert answer["state"]["last_seq"] == 12
    await js.delete_stream("S")
    info = await snap_client.restore(nc, "S", answer["config"], _pieces(data))
    assert info["type"] == "io.nats.jetstream.api.v1.stream_create_response" and info["state"]["messages"] == 10
    after = await _state(nc, js, "S")
    assert after == before and after["state"]["deleted"] == [3, 7]
    assert await _consumer(nc, "S", "D") == consumer_before
    # and the restored consumer goes on where it was: 4 and 5 are still pending, the next new one is 6
    sub = await js.pull_subscribe("s.>", durable="D", stream="S")
    msgs = await sub.fetch(1, timeout=5)
    assert msgs[0].metadata.sequence.stream == 6
    assert (await js.publish("s.1", b"new")).seq == 13


async def test_restore_beside_the_original_under_new_name_and_subjects(nc: Client, js: JetStreamContext) -> None:
    await _fill(js)
    answer, data = await _take_snapshot(nc, "S", no_consumers=True)
    config = {**answer["config"], "subjects": ["copy.>"]}
    info = await snap_client.restore(nc, "COPY", config, _pieces(data, 70_000))
    assert info["config"]["name"] == "COPY" and info["config"]["subjects"] == ["copy.>"]
    orig, copy = await _state(nc, js, "S"), await _state(nc, js, "COPY")
    assert copy["msgs"] == orig["msgs"] and info["state"]["consumer_count"] == 0
    assert (await js.publish("copy.x", b"x")).stream == "COPY"


async def test_restore_refuses_a_name_in_use_and_overlapping_subjects(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(StreamConfig(name="S", subjects=["s.>"]))
    answer = await _ask(nc, "$JS.API.STREAM.RESTORE.S", {"config": {"name": "S"}})
    assert answer["error"]["err_code"] == 10130 and answer["deliver_subject"] == ""
    answer = await _ask(nc, "$JS.API.STREAM.RESTORE.T", {"config": {"name": "T", "subjects": ["s.x"]}})
    assert answer["error"]["err_code"] == 10065
    first = await _ask(nc, "$JS.API.STREAM.RESTORE.T", {"config": {"name": "T", "subjects": ["t"]}})
    second = await _ask(nc, "$JS.API.STREAM.RESTORE.T", {"config": {"name": "T", "subjects": ["t"]}})
    assert first["deliver_subject"] and second["error"]["err_code"] == 10130  # one restore of a name at a time
    # a deliver subject streamd could not publish to (one protocol line takes 4 KiB) is refused, not fatal
    answer = await _ask(nc, "$JS.API.STREAM.SNAPSHOT.S", {"deliver_subject": "d." + "x" * 5000})
    assert answer["error"]["err_code"] == 10015
    assert (await _ask(nc, "$JS.API.STREAM.INFO.S", b""))["config"]["name"] == "S"


def _corrupt(data: bytes) -> bytes:
    mid = len(data) // 2
    return data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1 :]


@pytest.mark.parametrize(
    ("label", "mangle"),
    [
        ("truncated", lambda d: d[: len(d) // 2]),
        ("flipped byte", _corrupt),
        ("not a snapshot", lambda d: b"\x28\xb5\x2f\xfd" + d),
        ("wrong framing", lambda d: d[:6] + b"\x00\x09" + d[8:]),
        ("trailing data", lambda d: d + b"more"),
    ],
)
async def test_a_bad_snapshot_is_refused_and_leaves_nothing(
    nc: Client, js: JetStreamContext, streamd: RunningService, label: str, mangle: Any
) -> None:
    await _fill(js)
    answer, data = await _take_snapshot(nc, "S")
    with pytest.raises(snap_client.SnapshotFailed) as failed:
        await snap_client.restore(nc, "BAD", {**answer["config"], "subjects": ["bad"]}, _pieces(mangle(data)))
    assert failed.value.err_code == 10062 and str(failed.value).startswith("restore failed:"), label
    names = await _ask(nc, "$JS.API.STREAM.NAMES", b"")
    assert names["streams"] == ["S"]
    manager = streamd.service.ctx.manager
    await wait_for(lambda: not manager.dropped and not manager.store.dropped())  # its rows were collected


async def test_a_client_that_vanishes_mid_transfer_leaves_nothing(
    nc: Client, js: JetStreamContext, streamd: RunningService, nats_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshot_api, "RESTORE_IDLE", 0.3)
    await _fill(js)
    answer, data = await _take_snapshot(nc, "S", chunk_size=1024)
    # restore: one chunk, then silence
    reply = await _ask(
        nc, "$JS.API.STREAM.RESTORE.GONE", {"config": {**answer["config"], "name": "GONE", "subjects": ["gone"]}}
    )
    await nc.request(reply["deliver_subject"], data[:1000], timeout=5)
    ctx = streamd.service.ctx
    assert ctx is not None
    await wait_for(lambda: not ctx.restoring, timeout=5)
    names = await _ask(nc, "$JS.API.STREAM.NAMES", b"")
    assert names["streams"] == ["S"]
    # the name is free again, and a whole snapshot restores under it
    info = await snap_client.restore(nc, "GONE", {**answer["config"], "subjects": ["gone"]}, _pieces(data))
    assert info["state"]["last_seq"] == 12
    # snapshot: the receiver goes away after the first chunk; the transfer ends (no task left behind)
    s = await snap_client.start_snapshot(nc, "S", chunk_size=1024)
    async for _chunk in s.chunks():
        break
    await s.close()

    def snapshot_tasks() -> list[str]:
        return [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("streamd-snapshot")]

    await wait_for(lambda: not snapshot_tasks(), timeout=10)


async def test_a_restored_stream_keeps_its_schedules(nc: Client, js: JetStreamContext) -> None:
    """The schedule index is rebuilt from the restored messages: a schedule taken before it fired fires after."""
    await js.add_stream(StreamConfig(name="S", subjects=["s.>"], allow_msg_schedules=True))
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2))
    await js.publish("s.sched", b"due", headers={"Nats-Schedule": f"@at {at}", "Nats-Schedule-Target": "s.out"})
    answer, data = await _take_snapshot(nc, "S")
    await js.delete_stream("S")
    await snap_client.restore(nc, "S", answer["config"], _pieces(data, 70_000))

    async def fired() -> bool:
        try:
            return (await js.get_last_msg("S", "s.out")).data == b"due"
        except NotFoundError:
            return False

    await wait_for(fired)
