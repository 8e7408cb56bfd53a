"""Work-queue and interest retention, with several workers and several consumers."""

from __future__ import annotations

import asyncio
import contextlib

import nats
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, RetentionPolicy

from tests.helpers import wait_for


async def test_work_queue_with_several_workers_processes_each_job_once(js: JetStreamContext) -> None:
    await js.add_stream(name="JOBS", subjects=["jobs.>"], retention=RetentionPolicy.WORK_QUEUE)
    total = 400
    for i in range(total):
        await js.publish("jobs.new", b"%d" % i)
    processed: list[bytes] = []
    stop = asyncio.Event()

    async def worker() -> None:
        sub = await js.pull_subscribe("jobs.>", durable="workers", stream="JOBS")
        while not stop.is_set():
            with contextlib.suppress(nats.errors.TimeoutError):
                for msg in await sub.fetch(10, timeout=0.5):
                    processed.append(msg.data)
                    await msg.ack()

    tasks = [asyncio.create_task(worker()) for _ in range(4)]
    await wait_for(lambda: len(processed) >= total, timeout=30)

    async def drained() -> bool:
        return (await js.stream_info("JOBS")).state.messages == 0

    await wait_for(drained, timeout=10)
    stop.set()
    await asyncio.gather(*tasks)
    assert sorted(processed, key=int) == [b"%d" % i for i in range(total)]


async def test_work_queue_keeps_unacked_jobs(js: JetStreamContext) -> None:
    await js.add_stream(name="WQ", subjects=["wq"], retention=RetentionPolicy.WORK_QUEUE)
    for i in range(3):
        await js.publish("wq", b"%d" % i)
    sub = await js.pull_subscribe("wq", durable="w", stream="WQ")
    msgs = await sub.fetch(3, timeout=2)
    await msgs[1].ack_sync()
    info = await js.stream_info("WQ")
    assert info.state.messages == 2
    assert (await js.get_msg("WQ", 1)).data == b"0"


async def test_interest_retention_removes_once_every_consumer_acked(js: JetStreamContext) -> None:
    await js.add_stream(name="INT", subjects=["int.>"], retention=RetentionPolicy.INTEREST)
    await js.publish("int.a", b"nobody listens")  # no consumer yet: sequence used, nothing stored
    assert (await js.stream_info("INT")).state.messages == 0
    a = await js.pull_subscribe("int.>", durable="a", stream="INT", config=ConsumerConfig(deliver_policy="new"))
    b = await js.pull_subscribe("int.>", durable="b", stream="INT", config=ConsumerConfig(deliver_policy="new"))
    await js.publish("int.a", b"for both")
    assert (await js.stream_info("INT")).state.messages == 1
    [ma] = await a.fetch(1, timeout=2)
    await ma.ack_sync()
    assert (await js.stream_info("INT")).state.messages == 1  # b has not acked yet
    [mb] = await b.fetch(1, timeout=2)
    await mb.ack_sync()

    async def gone() -> bool:
        return (await js.stream_info("INT")).state.messages == 0

    await wait_for(gone)


async def test_interest_messages_go_when_the_last_interested_consumer_is_deleted(js: JetStreamContext) -> None:
    await js.add_stream(name="GONE", subjects=["gone.>"], retention=RetentionPolicy.INTEREST)
    a = await js.pull_subscribe("gone.>", durable="a", stream="GONE")
    await js.pull_subscribe("gone.a", durable="b", stream="GONE")
    for subject in ("gone.a", "gone.a", "gone.b"):
        await js.publish(subject, b"x")
    for m in await a.fetch(3, timeout=2):
        await m.ack_sync()
    assert (await js.stream_info("GONE")).state.messages == 2  # b still wants the two on gone.a
    await js.delete_consumer("GONE", "b")

    async def gone() -> bool:
        return (await js.stream_info("GONE")).state.messages == 0

    await wait_for(gone)
