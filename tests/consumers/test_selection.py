"""Selection details: headers_only, deliver by start time, replay original, advisories for nak and term."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, ReplayPolicy

from tests.helpers import wait_for


async def test_headers_only_sends_size_and_no_body(js: JetStreamContext) -> None:
    await js.add_stream(name="H", subjects=["h"])
    await js.publish("h", b"twelve bytes", headers={"X-Kind": "a"})
    cfg = ConsumerConfig(headers_only=True, ack_policy=AckPolicy.NONE)
    sub = await js.pull_subscribe("h", durable="ho", stream="H", config=cfg)
    [msg] = await sub.fetch(1, timeout=2)
    assert msg.data == b""
    assert msg.headers is not None and msg.headers["X-Kind"] == "a" and msg.headers["Nats-Msg-Size"] == "12"


async def test_deliver_by_start_time(js: JetStreamContext) -> None:
    await js.add_stream(name="T", subjects=["t"])
    await js.publish("t", b"old")
    cut = dt.datetime.now(dt.UTC)
    await wait_for(lambda: dt.datetime.now(dt.UTC) > cut)
    await js.publish("t", b"new1")
    await js.publish("t", b"new2")
    cfg = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_TIME,
        opt_start_time=cut.isoformat().replace("+00:00", "Z"),
        ack_policy=AckPolicy.NONE,
    )
    sub = await js.pull_subscribe("t", durable="bt", stream="T", config=cfg)
    got = await sub.fetch(5, timeout=1)
    assert [m.data for m in got] == [b"new1", b"new2"]


async def test_replay_original_keeps_the_gaps(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="RO", subjects=["ro"])
    await js.publish("ro", b"1")
    loop = asyncio.get_running_loop()
    start = loop.time()
    await wait_for(lambda: loop.time() - start > 0.6)
    await js.publish("ro", b"2")
    arrivals: list[float] = []

    async def cb(msg: Msg) -> None:
        arrivals.append(loop.time())

    await js.subscribe(
        "ro", cb=cb, stream="RO", config=ConsumerConfig(replay_policy=ReplayPolicy.ORIGINAL, ack_policy="none")
    )
    await wait_for(lambda: len(arrivals) == 2)
    assert arrivals[1] - arrivals[0] >= 0.5


async def test_nak_and_term_advisories(nc: Client, js: JetStreamContext) -> None:
    seen: dict[str, dict[str, object]] = {}

    async def on_adv(m: Msg) -> None:
        seen[m.subject.split(".")[4]] = json.loads(m.data)

    await nc.subscribe("$JS.EVENT.ADVISORY.CONSUMER.>", cb=on_adv)
    await js.add_stream(name="AD", subjects=["ad"])
    await js.publish("ad", b"1")
    await js.publish("ad", b"2")
    sub = await js.pull_subscribe("ad", durable="adv", stream="AD")
    m1, m2 = await sub.fetch(2, timeout=2)
    await m1.nak()
    await m2.term()
    await wait_for(lambda: {"CREATED", "MSG_NAKED", "MSG_TERMINATED"} <= set(seen))
    assert seen["MSG_NAKED"]["stream_seq"] == 1 and seen["MSG_TERMINATED"]["stream_seq"] == 2
    assert seen["CREATED"]["type"] == "io.nats.jetstream.advisory.v1.consumer_action"
