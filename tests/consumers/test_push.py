"""Push consumers through nats-py's unmodified subscribe: callbacks, queue groups, ordered consumers."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from tests.helpers import wait_for


async def test_push_subscribe_with_auto_ack(js: JetStreamContext) -> None:
    await js.add_stream(name="Q", subjects=["q.>"])
    for i in range(20):
        await js.publish(f"q.{i}", b"%d" % i)
    seen: list[tuple[str, bytes, int]] = []

    async def cb(msg: Msg) -> None:
        seen.append((msg.subject, msg.data, msg.metadata.sequence.stream))

    await js.subscribe("q.>", cb=cb, durable="push1", stream="Q")
    await wait_for(lambda: len(seen) == 20)
    assert seen == [(f"q.{i}", b"%d" % i, i + 1) for i in range(20)]
    await js.publish("q.new", b"live")
    await wait_for(lambda: len(seen) == 21)

    async def all_acked() -> bool:
        info = await js.consumer_info("Q", "push1")
        return info.num_ack_pending == 0 and info.ack_floor.stream_seq == 21

    await wait_for(all_acked)
    assert (await js.consumer_info("Q", "push1")).push_bound is True


async def test_queue_group_delivers_each_message_once(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="G", subjects=["g.>"])
    got: dict[str, list[bytes]] = {"a": [], "b": []}

    def handler(name: str):  # type: ignore[no-untyped-def]
        async def cb(msg: Msg) -> None:
            got[name].append(msg.data)

        return cb

    await js.subscribe("g.>", queue="workers", cb=handler("a"), stream="G")
    await js.subscribe("g.>", queue="workers", cb=handler("b"), stream="G")
    for i in range(60):
        await js.publish("g.x", b"%d" % i)
    await wait_for(lambda: len(got["a"]) + len(got["b"]) == 60)
    assert sorted(got["a"] + got["b"], key=int) == [b"%d" % i for i in range(60)]


async def test_ordered_consumer_replays_in_order_with_heartbeats(js: JetStreamContext) -> None:
    await js.add_stream(name="O", subjects=["o.>"])
    for i in range(50):
        await js.publish(f"o.{i % 5}", b"%d" % i)
    sub = await js.subscribe("o.>", ordered_consumer=True, stream="O", idle_heartbeat=0.5)
    got = [await sub.next_msg(timeout=2) for _ in range(50)]
    assert [m.data for m in got] == [b"%d" % i for i in range(50)]
    assert [m.metadata.sequence.stream for m in got] == list(range(1, 51))
    await js.publish("o.1", b"later")
    msg = await sub.next_msg(timeout=3)
    assert msg.data == b"later" and msg.subject == "o.1"


async def test_push_consumer_waits_for_a_subscriber(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="B", subjects=["b.>"])
    await js.add_consumer(
        "B", ConsumerConfig(durable_name="later", deliver_subject="deliver.later", ack_policy=AckPolicy.EXPLICIT)
    )
    await js.publish("b.1", b"x")
    info = await js.consumer_info("B", "later")
    assert not info.push_bound and info.num_pending == 1
    sub = await nc.subscribe("deliver.later")
    msg = await sub.next_msg(timeout=3)
    assert (msg.subject, msg.data) == ("b.1", b"x")
    await msg.ack()


async def test_flow_control_and_many_messages(js: JetStreamContext) -> None:
    await js.add_stream(name="FC", subjects=["fc"])
    payload = b"x" * 4096
    futures = [await js.publish_async("fc", payload) for _ in range(3000)]
    await asyncio.gather(*futures)
    count = 0
    done = asyncio.Event()

    async def cb(msg: Msg) -> None:
        nonlocal count
        count += 1
        if count == 3000:
            done.set()

    await js.subscribe(
        "fc", cb=cb, stream="FC", flow_control=True, idle_heartbeat=1, config=ConsumerConfig(ack_policy=AckPolicy.NONE)
    )
    await asyncio.wait_for(done.wait(), 30)
