"""Mirrors and sources of streams on the same server, through nats-py's JetStream API only; each test runs
against nats-server -js (proving the expectation) and against streamd."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StreamConfig, StreamSource

from tests.helpers import wait_for


async def _info(nc: Client, name: str) -> dict[str, Any]:
    reply = await nc.request(f"$JS.API.STREAM.INFO.{name}", b"", timeout=5)
    return json.loads(reply.data)


async def test_mirror_keeps_sequences_gaps_times_and_headers(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="O", subjects=["o.>"])
    for i in range(10):
        await js.publish(f"o.{i % 3}", f"m{i}".encode(), headers={"K": str(i)})
    await js.delete_msg("O", 4)
    await js.delete_msg("O", 5)
    await js.add_stream(StreamConfig(name="M", mirror=StreamSource(name="O")))
    await js.publish("o.x", b"late")

    async def copied() -> bool:
        return (await js.stream_info("M")).state.last_seq == 11

    await wait_for(copied)
    state = (await js.stream_info("M")).state
    origin = (await js.stream_info("O")).state
    assert (state.messages, state.first_seq, state.num_deleted) == (9, 1, 2)
    for seq in (1, 6, 11):
        mine, theirs = await js.get_msg("M", seq), await js.get_msg("O", seq)
        assert (mine.subject, mine.data, mine.headers) == (theirs.subject, theirs.data, theirs.headers)
    raw_m = await nc.request("$JS.API.STREAM.MSG.GET.M", b'{"seq":6}')
    raw_o = await nc.request("$JS.API.STREAM.MSG.GET.O", b'{"seq":6}')
    assert json.loads(raw_m.data)["message"]["time"] == json.loads(raw_o.data)["message"]["time"]
    with pytest.raises(nats.js.errors.NotFoundError):
        await js.get_msg("M", 4)
    info = await _info(nc, "M")
    assert info["mirror"]["name"] == "O" and info["mirror"]["lag"] == 0
    assert 0 <= info["mirror"]["active"] < 10_000_000_000
    assert info["config"].get("subjects", []) == []
    assert origin.last_seq == state.last_seq


async def test_publish_to_mirror_is_refused_until_it_is_promoted(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="O2", subjects=["p.>"])
    await js.publish("p.1", b"one")
    await js.add_stream(StreamConfig(name="M2", mirror=StreamSource(name="O2")))
    with pytest.raises(nats.js.errors.NoStreamResponseError):
        await js.publish("M2", b"x", timeout=1)  # a mirror has no subjects: nothing answers
    await wait_for(_count(js, "M2", 1))
    # Promotion: an update without the mirror turns it into a normal stream that takes its own subjects.
    promoted = await js.update_stream(StreamConfig(name="M2", subjects=["q.>"]))
    assert promoted.config.mirror is None
    assert (await js.publish("q.1", b"own")).seq == 2
    await js.publish("p.2", b"not copied any more")
    assert (await js.stream_info("M2")).state.messages == 2


async def test_sources_from_two_streams_with_filter(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="A", subjects=["a.>"])
    await js.add_stream(name="B", subjects=["b.>"])
    for i in range(4):
        await js.publish(f"a.{i % 2}", f"a{i}".encode())
        await js.publish(f"b.{i}", f"b{i}".encode(), headers={"Nats-Msg-Id": f"id{i}"})
    await js.add_stream(
        StreamConfig(
            name="S",
            subjects=["s.local"],
            sources=[StreamSource(name="A", filter_subject="a.1"), StreamSource(name="B")],
        )
    )
    await js.publish("s.local", b"own")

    await wait_for(_count(js, "S", 7))
    seen = {}
    for seq in range(1, 8):
        m = await js.get_msg("S", seq)
        seen[m.data] = m
    assert sorted(seen) == [b"a1", b"a3", b"b0", b"b1", b"b2", b"b3", b"own"]
    # `<stream> <origin seq> <filter> <destination> <subject>`, then the origin's identity when it tells one
    assert seen[b"a3"].headers["Nats-Stream-Source"].startswith("A 4 a.1 > a.1")
    assert seen[b"b2"].headers["Nats-Stream-Source"].startswith("B 3 > > b.2")
    info = await _info(nc, "S")
    assert sorted((s["name"], s["lag"], s.get("filter_subject") or "") for s in info["sources"]) == [
        ("A", 0, "a.1"),
        ("B", 0, ""),
    ]
    await js.publish("b.9", b"more")
    await wait_for(_count(js, "S", 8))


async def _consumers(nc: Client, stream: str) -> int:
    return int((await _info(nc, stream))["state"]["consumer_count"])


def _count(js: JetStreamContext, name: str, n: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await js.stream_info(name)).state.messages == n

    return check


async def test_a_missing_origin_shows_as_the_mirrors_error(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(StreamConfig(name="LOST", mirror=StreamSource(name="NOPE")))

    async def error_shown() -> dict[str, Any] | None:
        return (await _info(nc, "LOST"))["mirror"].get("error")

    err = await wait_for(error_shown)
    assert (err["code"], err["err_code"]) == (404, 10059)


async def test_configured_start_sequence_and_time(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="T", subjects=["t.>"])
    for i in range(6):
        await js.publish("t.x", b"%d" % i)
    raw = await nc.request("$JS.API.STREAM.MSG.GET.T", b'{"seq":4}')
    start_time = json.loads(raw.data)["message"]["time"]
    await js.add_stream(StreamConfig(name="TM", mirror=StreamSource(name="T", opt_start_seq=3)))
    await js.add_stream(StreamConfig(name="TS", sources=[StreamSource(name="T", opt_start_seq=5)]))
    cfg = {"name": "TT", "sources": [{"name": "T", "opt_start_time": start_time}]}
    made = json.loads((await nc.request("$JS.API.STREAM.CREATE.TT", json.dumps(cfg).encode())).data)
    assert made["config"]["sources"][0]["opt_start_time"] == start_time
    await wait_for(_count(js, "TM", 4))
    await wait_for(_count(js, "TS", 2))
    await wait_for(_count(js, "TT", 3))
    state = (await js.stream_info("TM")).state
    assert (state.first_seq, state.last_seq) == (3, 6)
    assert (await js.get_msg("TS", 1)).data == b"4"
    assert (await js.get_msg("TT", 1)).data == b"3"


async def test_mirror_direct_answers_the_origins_direct_gets(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="D", subjects=["d.>"], allow_direct=True)
    for i in range(3):
        await js.publish(f"d.{i}", b"%d" % i)
    await js.add_stream(StreamConfig(name="DM", mirror=StreamSource(name="D")))
    assert (await js.stream_info("DM")).config.mirror_direct is True  # taken from the origin's allow_direct
    await wait_for(_count(js, "DM", 3))
    await js.delete_stream("D")  # only the mirror is left to answer the origin's DIRECT.GET

    async def answered_by_mirror() -> bool:
        msg = await js.get_msg("D", 2, direct=True)
        return msg.data == b"1"

    await wait_for(answered_by_mirror)
    reply = await nc.request("$JS.API.DIRECT.GET.D.d.2", b"", timeout=2)
    assert reply.data == b"2" and reply.headers and reply.headers["Nats-Stream"] == "DM"


async def test_a_source_refused_by_discard_new_waits_instead_of_skipping(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="F", subjects=["f.>"])
    for i in range(5):
        await js.publish("f.x", b"%d" % i)
    cfg = StreamConfig(name="FS", subjects=["fs"], sources=[StreamSource(name="F")], max_msgs=3, discard="new")
    await js.add_stream(cfg)
    await wait_for(_count(js, "FS", 3))
    cfg.max_msgs = 10
    await js.update_stream(cfg)
    await wait_for(_count(js, "FS", 5), timeout=30)
    assert [(await js.get_msg("FS", seq)).data for seq in range(1, 6)] == [b"0", b"1", b"2", b"3", b"4"]


async def test_a_sourced_schedule_is_stored_as_it_came(nc: Client, js: JetStreamContext) -> None:
    """The origin checked its schedule headers: a sourcing stream (which can not schedule) stores them as they are,
    and a mirror too."""
    await js.add_stream(name="OS", subjects=["os.>"], allow_msg_schedules=True)
    sched = {"Nats-Schedule": "@at 2099-01-01T00:00:00Z", "Nats-Schedule-Target": "os.out"}
    await js.publish("os.sched", b"later", headers=sched)
    await js.add_stream(StreamConfig(name="XS", subjects=["xs.>"], sources=[StreamSource(name="OS")]))
    await js.add_stream(StreamConfig(name="MS", mirror=StreamSource(name="OS")))

    async def copied() -> bool:
        return all([(await js.stream_info(n)).state.last_seq == 1 for n in ("XS", "MS")])

    await wait_for(copied)
    for name in ("XS", "MS"):
        got = await js.get_msg(name, 1)
        assert got.headers and got.headers["Nats-Schedule"] == sched["Nats-Schedule"], got.headers


async def test_subject_transforms_rename_what_is_copied(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="TR", subjects=["tr.>"])
    for i in range(6):
        await js.publish(f"tr.{'ab'[i % 2]}.{i}", b"%d" % i)
    transforms = [{"src": "tr.a.*", "dest": "A.{{wildcard(1)}}"}, {"src": "tr.b.>", "dest": ""}]
    src = {"name": "TRS", "subjects": ["trs"], "sources": [{"name": "TR", "subject_transforms": transforms}]}
    made = json.loads((await nc.request("$JS.API.STREAM.CREATE.TRS", json.dumps(src).encode())).data)
    assert made["config"]["sources"] == [{"name": "TR", "subject_transforms": transforms}]
    mirror = {"name": "TRM", "mirror": {"name": "TR", "subject_transforms": [{"src": "tr.b.*", "dest": "B.$1"}]}}
    await nc.request("$JS.API.STREAM.CREATE.TRM", json.dumps(mirror).encode())
    await wait_for(_count(js, "TRS", 6))
    await wait_for(_count(js, "TRM", 3))
    got = [await js.get_msg("TRS", seq) for seq in range(1, 7)]
    assert [m.subject for m in got] == ["A.0", "tr.b.1", "A.2", "tr.b.3", "A.4", "tr.b.5"]
    assert got[0].headers is not None
    assert got[0].headers["Nats-Stream-Source"].startswith("TR 1 tr.a.*\ftr.b.> A.{{wildcard(1)}}\f> tr.a.0")
    state = (await js.stream_info("TRM")).state
    assert (state.first_seq, state.last_seq) == (2, 6)  # a filtered mirror keeps the origin's sequences
    assert [(await js.get_msg("TRM", seq)).subject for seq in (2, 4, 6)] == ["B.1", "B.3", "B.5"]
    info = await _info(nc, "TRS")
    assert info["sources"][0]["subject_transforms"] == transforms
    assert "filter_subject" not in info["sources"][0]


async def test_a_workqueue_origin_is_drained_by_its_mirror(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="WQ", subjects=["wq.>"], retention="workqueue")
    await js.add_stream(StreamConfig(name="WQM", mirror=StreamSource(name="WQ")))
    await js.add_stream(StreamConfig(name="WQS", subjects=["wqs"], sources=[StreamSource(name="WQ")]))

    async def both_copying() -> bool:  # each copier's consumer is there: a message goes once both have it
        return (await _consumers(nc, "WQ")) == 2

    await wait_for(both_copying)
    for i in range(4):
        await js.publish(f"wq.{i}", b"%d" % i)
    await wait_for(_count(js, "WQM", 4))
    await wait_for(_count(js, "WQS", 4))
    await wait_for(_count(js, "WQ", 0))  # each ack-none delivery took the message off the queue
    # The copiers' consumers take no part in the queue's partitioning: a worker may still take it all.
    worker = await js.pull_subscribe("wq.>", durable="worker", stream="WQ")
    await js.publish("wq.9", b"9")
    await wait_for(_count(js, "WQM", 5))
    assert (await js.consumer_info("WQ", "worker")).config.durable_name == "worker"
    await worker.unsubscribe()


async def test_mirror_direct_waits_until_the_mirror_has_caught_up(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="E", subjects=["e.>"], allow_direct=True)
    await js.add_stream(StreamConfig(name="EM", mirror=StreamSource(name="E")))
    await wait_for(lambda: _mirror_active(nc, "EM"))  # the mirror's consumer is there, nothing mirrored yet
    await js.delete_stream("E")
    with pytest.raises(nats.errors.NoRespondersError):  # the mirror never copied a message: it does not answer
        await nc.request("$JS.API.DIRECT.GET.E", b'{"seq":1}', timeout=2)


async def _mirror_active(nc: Client, stream: str) -> bool:
    return int((await _info(nc, stream))["mirror"]["active"]) >= 0
