"""Consumer lifecycle: ephemeral clean-up, deletion with waiting pulls, crashes and leaf reconnects."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, ConsumerInfo

from tests.conftest import RunningService
from tests.helpers import drain_stderr, read_until, start_streamd_process, wait_for
from tests.natsd import NatsServer


async def test_ephemeral_pull_consumer_goes_after_inactive_threshold(js: JetStreamContext) -> None:
    await js.add_stream(name="EPH", subjects=["eph"])
    await js.publish("eph", b"x")
    sub = await js.pull_subscribe("eph", stream="EPH", config=ConsumerConfig(inactive_threshold=1))
    [msg] = await sub.fetch(1, timeout=2)
    await msg.ack()
    name = (await sub.consumer_info()).name

    async def gone() -> bool:
        try:
            await js.consumer_info("EPH", name)
        except nats.js.errors.NotFoundError:
            return True
        return False

    await wait_for(gone, timeout=10)


async def test_ephemeral_push_consumer_goes_when_its_subscriber_leaves(js: JetStreamContext) -> None:
    await js.add_stream(name="EPP", subjects=["epp"])
    sub = await js.subscribe("epp", stream="EPP", inactive_threshold=1)
    name = (await sub.consumer_info()).name
    assert (await js.consumer_info("EPP", name)).push_bound
    await sub.unsubscribe()

    async def gone() -> bool:
        return name not in await js.consumers_info("EPP") and not [
            c for c in await js.consumers_info("EPP") if c.name == name
        ]

    await wait_for(gone, timeout=10)


async def test_deleting_a_consumer_answers_waiting_pulls(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="DEL", subjects=["del"])
    await js.add_consumer("DEL", ConsumerConfig(durable_name="d", ack_policy="explicit"))
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.flush()
    await nc.publish("$JS.API.CONSUMER.MSG.NEXT.DEL.d", b'{"batch": 5, "expires": 10000000000}', reply=inbox)

    async def waiting() -> bool:
        return (await js.consumer_info("DEL", "d")).num_waiting == 1

    await wait_for(waiting)
    await js.delete_stream("DEL")
    status = await sub.next_msg(timeout=3)
    assert status.headers == {"Status": "409", "Description": "Consumer Deleted"}


async def test_backoff_spaces_redeliveries(js: JetStreamContext) -> None:
    await js.add_stream(name="BO", subjects=["bo"])
    await js.publish("bo", b"x")
    cfg = ConsumerConfig(backoff=[0.3, 1.2], max_deliver=3)
    sub = await js.pull_subscribe("bo", durable="bo", stream="BO", config=cfg)
    loop = asyncio.get_running_loop()
    times = []
    for _ in range(3):
        [msg] = await sub.fetch(1, timeout=3)
        times.append(loop.time())
    assert [times[1] - times[0] >= 0.25, times[2] - times[1] >= 1.1] == [True, True]
    with pytest.raises(nats.errors.TimeoutError):
        await sub.fetch(1, timeout=1.5)  # max_deliver 3 reached


async def test_durable_consumer_resumes_after_kill_9(nats_server: NatsServer, tmp_path: Path) -> None:
    args = ("--server", nats_server.url, "--leaf", nats_server.leaf_url, "--data", str(tmp_path / "d"))
    proc = await start_streamd_process(*args)
    await read_until(proc, "streamd serving")
    drain = asyncio.create_task(drain_stderr(proc))
    nc = await nats.connect(nats_server.url, max_reconnect_attempts=-1)
    js = nc.jetstream(timeout=5)
    try:
        await js.add_stream(name="K", subjects=["k"])
        for i in range(10):
            await js.publish("k", b"%d" % i)
        sub = await js.pull_subscribe("k", durable="k", stream="K", config=ConsumerConfig(ack_wait=1))
        got = await sub.fetch(6, timeout=2)
        for m in got[:4]:
            await m.ack_sync()  # confirmed after the commit: these must never come back
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        drain.cancel()
        proc = await start_streamd_process(*args)
        await read_until(proc, "streamd serving")
        drain = asyncio.create_task(drain_stderr(proc))
        infos: list[ConsumerInfo] = []

        async def served() -> bool:  # "serving" is logged a moment before the core server routes the API to it
            try:
                infos.append(await js.consumer_info("K", "k"))
            except nats.js.errors.ServiceUnavailableError:
                return False
            return True

        await wait_for(served, timeout=10)
        assert infos[-1].ack_floor.stream_seq >= 4
        rest: list[bytes] = []

        async def collect() -> bool:
            try:
                for m in await sub.fetch(10, timeout=1):
                    rest.append(m.data)
                    await m.ack()
            except nats.errors.TimeoutError:
                pass
            return len(set(rest)) >= 6

        await wait_for(collect, timeout=20)
        assert sorted(set(rest), key=int) == [b"%d" % i for i in range(4, 10)]
    finally:
        await nc.close()
        proc.terminate()
        await proc.wait()
        drain.cancel()


async def test_deliveries_resume_after_the_server_restarts(tmp_path: Path) -> None:
    from streamd import Service, ServiceConfig
    from tests.natsd import free_port, run_nats_server

    port, leaf_port = free_port(), free_port()
    url = f"nats://127.0.0.1:{port}"
    cfg = ServiceConfig(server=url, leaf=f"nats-leaf://127.0.0.1:{leaf_port}", data=tmp_path / "d")
    service = Service(cfg)
    task: asyncio.Task[None] | None = None
    try:
        async with run_nats_server(tmp_path / "a", port=port, leaf_port=leaf_port):
            task = asyncio.create_task(service.run())
            await asyncio.wait_for(service.ready.wait(), 20)
            nc = await nats.connect(url)
            js = nc.jetstream(timeout=5)
            await js.add_stream(name="R", subjects=["r"])
            await js.publish("r", b"before")
            await nc.close()
        async with run_nats_server(tmp_path / "b", port=port, leaf_port=leaf_port):
            nc = await nats.connect(url)
            js = nc.jetstream(timeout=2)

            async def fetched() -> bytes:
                sub = await js.pull_subscribe("r", durable="after", stream="R")
                [m] = await sub.fetch(1, timeout=1)
                return m.data

            assert await wait_for(fetched, timeout=30) == b"before"
            await nc.close()
    finally:
        service.stop()
        if task is not None:
            await asyncio.wait_for(task, 30)


async def test_stopping_the_service_ends_every_consumer_task(
    nc: Client, js: JetStreamContext, streamd: RunningService
) -> None:
    """Consumer tasks run in the service's TaskGroup: a stop must end them all (busy ones included), or the group
    would never close."""
    await js.add_stream(name="STOP", subjects=["stop.*"])
    await js.add_consumer("STOP", ConsumerConfig(durable_name="pull", ack_policy="explicit", ack_wait=30))
    push_inbox = nc.new_inbox()
    await nc.subscribe(push_inbox)
    await js.add_consumer(
        "STOP",
        ConsumerConfig(durable_name="push", deliver_subject=push_inbox, idle_heartbeat=1, flow_control=True),
    )
    await js.publish("stop.a", b"x")
    inbox = nc.new_inbox()
    await nc.subscribe(inbox)
    await nc.flush()
    await nc.publish("$JS.API.CONSUMER.MSG.NEXT.STOP.pull", b'{"batch": 5, "expires": 30000000000}', reply=inbox)

    def consumer_tasks() -> list[asyncio.Task[object]]:
        return [t for t in asyncio.all_tasks() if t.get_name().startswith("streamd-consumer-") and not t.done()]

    await wait_for(lambda: len(consumer_tasks()) >= 4)  # flush, sweep, and both consumers waiting on timers
    async with asyncio.timeout(15):
        await streamd.stop()
    assert not consumer_tasks()
