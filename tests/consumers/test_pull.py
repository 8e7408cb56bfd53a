"""Pull consumers through nats-py's unmodified pull_subscribe/fetch."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from tests.conftest import RunningService, StartService
from tests.helpers import wait_for


async def _fill(js: JetStreamContext, n: int, subject: str = "p.x", stream: str = "P") -> None:
    await js.add_stream(name=stream, subjects=[subject.split(".")[0] + ".>"])
    for i in range(n):
        await js.publish(subject, b"m%d" % i)


async def test_fetch_one_and_batch_with_metadata(js: JetStreamContext) -> None:
    await _fill(js, 5)
    sub = await js.pull_subscribe("p.>", durable="dur1", stream="P")
    [first] = await sub.fetch(1, timeout=2)
    assert (first.subject, first.data) == ("p.x", b"m0")
    md = first.metadata
    assert (md.stream, md.consumer, md.sequence.stream, md.sequence.consumer, md.num_delivered) == (
        "P",
        "dur1",
        1,
        1,
        1,
    )
    assert md.num_pending == 4
    await first.ack()
    batch = await sub.fetch(10, timeout=2)
    assert [m.data for m in batch] == [b"m1", b"m2", b"m3", b"m4"]
    assert [m.metadata.num_pending for m in batch] == [3, 2, 1, 0]
    for m in batch:
        await m.ack()
    info = await js.consumer_info("P", "dur1")

    async def all_acked() -> bool:
        i = await js.consumer_info("P", "dur1")
        return i.ack_floor.stream_seq == 5 and i.num_ack_pending == 0

    await wait_for(all_acked)
    assert info.delivered.stream_seq == 5 and info.num_pending == 0


async def test_fetch_on_empty_stream_times_out(js: JetStreamContext) -> None:
    await js.add_stream(name="E", subjects=["e.>"])
    sub = await js.pull_subscribe("e.>", durable="d", stream="E")
    with pytest.raises(nats.errors.TimeoutError):
        await sub.fetch(1, timeout=0.5)
    with pytest.raises(nats.errors.TimeoutError):
        await sub.fetch(5, timeout=0.5)
    await js.publish("e.1", b"late")
    [msg] = await sub.fetch(5, timeout=2)
    assert msg.data == b"late"


async def test_fetch_waits_for_a_message_published_later(js: JetStreamContext) -> None:
    await js.add_stream(name="W", subjects=["w.>"])
    sub = await js.pull_subscribe("w.>", durable="d", stream="W")
    fetching = asyncio.create_task(sub.fetch(1, timeout=5))

    async def request_waiting() -> bool:
        return (await js.consumer_info("W", "d")).num_waiting == 1

    await wait_for(request_waiting)  # the pull request is queued before anything is there to deliver
    await js.publish("w.1", b"x")
    [msg] = await fetching
    assert msg.data == b"x"


async def test_redelivery_after_ack_wait_and_nak_and_term(js: JetStreamContext) -> None:
    await _fill(js, 3)
    sub = await js.pull_subscribe("p.>", durable="rd", stream="P", config=ConsumerConfig(ack_wait=0.5))
    msgs = await sub.fetch(3, timeout=2)
    await msgs[0].ack()
    await msgs[1].nak()
    await msgs[2].term()
    [again] = await sub.fetch(1, timeout=2)
    assert again.data == b"m1" and again.metadata.num_delivered == 2
    assert again.metadata.sequence.consumer == 4  # a redelivery gets a new consumer sequence
    # not acked: it comes back once ack_wait (0.5 s) has passed
    [third] = await sub.fetch(1, timeout=3)
    assert third.data == b"m1" and third.metadata.num_delivered == 3
    await third.ack_sync()
    info = await js.consumer_info("P", "rd")
    assert info.num_ack_pending == 0 and info.ack_floor.stream_seq == 3


async def test_nak_with_delay_and_in_progress(js: JetStreamContext) -> None:
    await _fill(js, 1)
    sub = await js.pull_subscribe("p.>", durable="dl", stream="P", config=ConsumerConfig(ack_wait=1))
    [msg] = await sub.fetch(1, timeout=2)
    await msg.nak(delay=1.5)
    with pytest.raises(nats.errors.TimeoutError):
        await sub.fetch(1, timeout=0.8)
    [msg] = await sub.fetch(1, timeout=3)
    assert msg.metadata.num_delivered == 2
    for _ in range(3):  # +WPI keeps a slow message from being redelivered
        await msg.in_progress()
        with pytest.raises(nats.errors.TimeoutError):
            await sub.fetch(1, timeout=0.6)
    await msg.ack()


async def test_max_deliver_and_advisory(nc: Client, js: JetStreamContext) -> None:
    advisories: list[bytes] = []

    async def on_adv(m: nats.aio.msg.Msg) -> None:
        advisories.append(m.data)

    await nc.subscribe("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.P.md", cb=on_adv)
    await _fill(js, 1)
    cfg = ConsumerConfig(ack_wait=0.3, max_deliver=2)
    sub = await js.pull_subscribe("p.>", durable="md", stream="P", config=cfg)
    first = await sub.fetch(1, timeout=2)
    second = await sub.fetch(1, timeout=2)
    assert [m.metadata.num_delivered for m in first + second] == [1, 2]
    with pytest.raises(nats.errors.TimeoutError):
        await sub.fetch(1, timeout=1)
    await wait_for(lambda: advisories)
    assert b'"deliveries":2' in advisories[0] and b'"stream_seq":1' in advisories[0]


async def test_max_ack_pending_holds_back_new_messages(js: JetStreamContext) -> None:
    await _fill(js, 5)
    sub = await js.pull_subscribe("p.>", durable="map", stream="P", config=ConsumerConfig(max_ack_pending=2))
    got = await sub.fetch(5, timeout=1)
    assert len(got) == 2
    with pytest.raises(nats.errors.TimeoutError):
        await sub.fetch(1, timeout=0.5)
    await got[0].ack()
    [nxt] = await sub.fetch(1, timeout=2)
    assert nxt.data == b"m2"


@pytest.mark.parametrize(
    ("policy", "extra", "expected"),
    [
        (DeliverPolicy.ALL, {}, [b"m0", b"m1", b"m2", b"m3"]),
        (DeliverPolicy.LAST, {}, [b"m3"]),
        (DeliverPolicy.NEW, {}, [b"new"]),
        (DeliverPolicy.BY_START_SEQUENCE, {"opt_start_seq": 3}, [b"m2", b"m3"]),
        (DeliverPolicy.LAST_PER_SUBJECT, {}, [b"m2", b"m3"]),
    ],
)
async def test_deliver_policies(
    js: JetStreamContext, policy: DeliverPolicy, extra: dict[str, int], expected: list[bytes]
) -> None:
    await js.add_stream(name="D", subjects=["d.>"])
    for i in range(4):
        await js.publish(f"d.{i % 2}", b"m%d" % i)
    cfg = ConsumerConfig(deliver_policy=policy, ack_policy=AckPolicy.NONE, filter_subject="d.>", **extra)
    sub = await js.pull_subscribe("d.>", durable="pol", stream="D", config=cfg)
    if policy == DeliverPolicy.NEW:
        await js.publish("d.9", b"new")
    got: list[bytes] = []
    while True:
        try:
            got += [m.data for m in await sub.fetch(10, timeout=0.5)]
        except nats.errors.TimeoutError:
            break
    assert got == expected


async def test_filtered_consumer_and_exact_num_pending(js: JetStreamContext) -> None:
    await js.add_stream(name="F", subjects=["f.>"])
    for i in range(10):
        await js.publish(f"f.{'a' if i % 3 == 0 else 'b'}", b"%d" % i)
    sub = await js.pull_subscribe("f.a", durable="fa", stream="F")
    assert (await js.consumer_info("F", "fa")).num_pending == 4
    got = await sub.fetch(10, timeout=1)
    assert [m.data for m in got] == [b"0", b"3", b"6", b"9"]
    assert (await js.consumer_info("F", "fa")).num_pending == 0


async def test_durable_survives_restart(start_service: StartService, streamd: RunningService, nc: Client) -> None:
    js = nc.jetstream(timeout=5)
    await _fill(js, 4)
    sub = await js.pull_subscribe("p.>", durable="keep", stream="P")
    msgs = await sub.fetch(2, timeout=2)
    await msgs[0].ack_sync()
    await streamd.stop()
    await start_service()
    info = await wait_for(lambda: js.consumer_info("P", "keep"))
    assert info.ack_floor.stream_seq == 1 and info.delivered.stream_seq == 2 and info.num_pending == 2
    sub2 = await js.pull_subscribe_bind("keep", "P")
    got = await sub2.fetch(10, timeout=2)
    # m1 was delivered but never acked: it comes first again once ack_wait expires; new ones follow now
    assert [m.data for m in got] == [b"m2", b"m3"]


async def test_unknown_consumer_and_push_consumer_pulls(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="U", subjects=["u"])
    with pytest.raises(nats.errors.NoRespondersError):  # as JetStream: no responder for an unknown consumer
        await nc.request("$JS.API.CONSUMER.MSG.NEXT.U.nope", b'{"batch":1}', timeout=2)
    await js.add_consumer("U", ConsumerConfig(durable_name="pushy", deliver_subject="pushy.deliver"))
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.flush()
    await nc.publish("$JS.API.CONSUMER.MSG.NEXT.U.pushy", b'{"batch":1}', reply=inbox)
    status = await sub.next_msg(timeout=3)
    assert status.headers == {"Status": "409", "Description": "Consumer is push based"}


async def test_consumers_reading_at_the_tail_miss_nothing_while_publishes_arrive(js: JetStreamContext) -> None:
    """Regression: the resume point of a read must come from its own snapshot, not from newer commits."""
    await js.add_stream(name="TAIL", subjects=["tail"])
    total = 4000
    sub = await js.pull_subscribe("tail", durable="tail", stream="TAIL", config=ConsumerConfig(ack_policy="none"))
    pushed: list[int] = []

    async def on_push(msg: nats.aio.msg.Msg) -> None:
        pushed.append(msg.metadata.sequence.stream)

    await js.subscribe("tail", cb=on_push, stream="TAIL", config=ConsumerConfig(ack_policy="none"))

    async def produce() -> None:
        for i in range(0, total, 200):
            futures = [await js.publish_async("tail", b"%d" % n) for n in range(i, i + 200)]
            await asyncio.gather(*futures)

    producer = asyncio.create_task(produce())
    pulled: list[int] = []
    while len(pulled) < total:
        try:
            pulled += [m.metadata.sequence.stream for m in await sub.fetch(50, timeout=1)]
        except nats.errors.TimeoutError:
            assert not producer.done() or len(pulled) == total, f"stalled after {len(pulled)} of {total}"
    await producer
    assert pulled == list(range(1, total + 1))
    await wait_for(lambda: len(pushed) == total)
    assert pushed == list(range(1, total + 1))


async def test_a_read_resumes_after_its_own_snapshot(streamd: RunningService, js: JetStreamContext) -> None:
    """Regression (messages were skipped): a read that began before newer commits resumes after what it saw."""
    from streamd.store import reads

    await js.add_stream(name="SNAP", subjects=["snap.>"])
    for i in range(5):
        await js.publish("snap.a", b"%d" % i)
    ctx = streamd.service.ctx
    assert ctx is not None
    stream = ctx.manager.get("SNAP")
    txn = ctx.manager.store.env.begin()  # a snapshot holding seqs 1..5
    try:
        for i in range(5):
            await js.publish("snap.a", b"later %d" % i)
        assert stream.committed.last_seq == 10
        found, resume = reads.next_matching(txn, stream, [], 1, 100)
        assert [f.seq for f in found] == [1, 2, 3, 4, 5] and resume == 6
        found, resume = reads.next_matching(txn, stream, ["snap.a"], 1, 100)
        assert [f.seq for f in found] == [1, 2, 3, 4, 5] and resume == 6
        found, resume = reads.next_matching(txn, stream, ["snap.*"], 3, 100)
        assert [f.seq for f in found] == [3, 4, 5] and resume == 6
    finally:
        txn.abort()
