"""Scale: many consumers, many filters and many subjects cost what they must and never hold the service.

The properties shown here (no timings): idle consumers have no task and keep exact pending counts; a consumer
with thousands of filters is created and served; a create with 100k subjects runs while the API keeps answering,
and SIGTERM stops streamd while such a create is in flight; a burst of redeliveries all goes out.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from tests.conftest import RunningService
from tests.helpers import drain_stderr, read_until, start_streamd_process, wait_for
from tests.natsd import NatsServer


async def _api(nc: Client, subject: str, body: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
    reply = await nc.request(subject, json.dumps(body).encode(), timeout=timeout)
    out: dict[str, Any] = json.loads(reply.data)
    return out


async def _next_no_wait(nc: Client, stream: str, consumer: str) -> Msg:
    """One no_wait pull, read on an inbox of its own (the leaf must know it before the request is served)."""
    inbox = nc.new_inbox()
    probe = await nc.subscribe(inbox)
    await nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}", b'{"batch": 1, "no_wait": true}', reply=inbox)
    reply = await probe.next_msg(timeout=5)
    await probe.unsubscribe()
    return reply


async def _create_durables(nc: Client, stream: str, configs: list[dict[str, Any]]) -> None:
    for start in range(0, len(configs), 100):
        replies = await asyncio.gather(
            *(
                _api(
                    nc,
                    f"$JS.API.CONSUMER.CREATE.{stream}.{cfg['durable_name']}",
                    {"stream_name": stream, "config": cfg},
                )
                for cfg in configs[start : start + 100]
            )
        )
        assert all("error" not in r for r in replies), [r for r in replies if "error" in r][:1]


def _consumer_tasks() -> list[asyncio.Task[Any]]:
    """The delivery tasks of consumers (the manager's own flush and sweep tasks excluded)."""
    own = ("streamd-consumer-flush", "streamd-consumer-sweep")
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("streamd-consumer-") and t.get_name() not in own]


async def test_idle_consumers_have_no_task_and_exact_pending_counts(
    nc: Client, js: JetStreamContext, streamd: RunningService
) -> None:
    await js.add_stream(name="IDLE", subjects=["s.*"])
    plain = [{"durable_name": f"p{i}", "ack_policy": "explicit"} for i in range(500)]
    filtered = [{"durable_name": f"f{i}", "ack_policy": "explicit", "filter_subject": f"s.{i}"} for i in range(500)]
    await _create_durables(nc, "IDLE", plain + filtered)
    for _ in range(3):
        await js.publish("s.7", b"x")
    await js.publish("s.400", b"y")

    assert (await js.consumer_info("IDLE", "p123")).num_pending == 4
    assert (await js.consumer_info("IDLE", "f7")).num_pending == 3
    assert (await js.consumer_info("IDLE", "f400")).num_pending == 1
    assert (await js.consumer_info("IDLE", "f8")).num_pending == 0
    # No consumer keeps a task while it has nothing to do (1,000 idle consumers: no task, no timer).
    await wait_for(lambda: not _consumer_tasks())
    assert streamd.service.ctx is not None
    idx = streamd.service.ctx.consumers.index["IDLE"]
    assert len(idx.groups) == 501 and not idx.hungry

    sub = await js.pull_subscribe_bind("p123", stream="IDLE")
    got = await sub.fetch(4, timeout=5)
    assert [m.data for m in got] == [b"x", b"x", b"x", b"y"]
    assert (await js.consumer_info("IDLE", "p123")).num_pending == 0
    assert (await js.consumer_info("IDLE", "p124")).num_pending == 4
    await js.purge_stream("IDLE")
    assert (await js.consumer_info("IDLE", "p124")).num_pending == 0


async def test_start_sequence_past_the_end_counts_only_what_it_will_get(js: JetStreamContext) -> None:
    await js.add_stream(name="AHEAD", subjects=["ahead"])
    await js.add_consumer(
        "AHEAD",
        ConsumerConfig(durable_name="late", deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=5),
    )
    await js.add_consumer("AHEAD", ConsumerConfig(durable_name="all"))
    for i in range(7):
        await js.publish("ahead", b"%d" % i)
    assert (await js.consumer_info("AHEAD", "late")).num_pending == 3  # seqs 5, 6, 7
    assert (await js.consumer_info("AHEAD", "all")).num_pending == 7
    sub = await js.pull_subscribe_bind("late", stream="AHEAD")
    assert [m.metadata.sequence.stream for m in await sub.fetch(3, timeout=5)] == [5, 6, 7]


async def test_a_consumer_with_5000_filters_is_created_and_served(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="MANY", subjects=["m.>"])
    filters = [f"m.{i}.*" for i in range(5000)]
    reply = await _api(
        nc,
        "$JS.API.CONSUMER.CREATE.MANY.wide",
        {"stream_name": "MANY", "config": {"durable_name": "wide", "filter_subjects": filters}},
    )
    assert "error" not in reply, reply
    overlapping = await _api(
        nc,
        "$JS.API.CONSUMER.CREATE.MANY.bad",
        {"stream_name": "MANY", "config": {"durable_name": "bad", "filter_subjects": [*filters, "m.4999.x"]}},
    )
    assert overlapping["error"]["err_code"] == 10138
    for subject in ("m.4321.a", "m.x.a", "m.17.b", "m.17.b.c"):
        await js.publish(subject, subject.encode())
    assert (await js.consumer_info("MANY", "wide")).num_pending == 2
    sub = await js.pull_subscribe_bind("wide", stream="MANY")
    assert [m.subject for m in await sub.fetch(2, timeout=5)] == ["m.4321.a", "m.17.b"]


def _big_create(name: str, count: int, prefix: str) -> bytes:
    subjects = [f"{prefix}.{i}" for i in range(count)]
    return json.dumps({"name": name, "subjects": subjects}, separators=(",", ":")).encode()


async def test_api_answers_while_a_create_with_100k_subjects_runs(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="SMALL", subjects=["small"])
    body = _big_create("HUGE", 100_000, "h")
    assert len(body) > 900_000
    create = asyncio.create_task(nc.request("$JS.API.STREAM.CREATE.HUGE", body, timeout=120))
    answered_meanwhile = 0
    while not create.done():  # answered at all is the point, not how fast (a loaded machine is slow)
        await nc.request("$JS.API.STREAM.INFO.SMALL", b"", timeout=30)
        answered_meanwhile += not create.done()
    reply = json.loads((await create).data)
    assert "error" not in reply, reply
    assert answered_meanwhile > 0
    clash = await _api(nc, "$JS.API.STREAM.CREATE.CLASH", {"name": "CLASH", "subjects": ["x", "h.99999"]})
    assert clash["error"]["err_code"] == 10065
    assert (await _api(nc, "$JS.API.STREAM.NAMES", {"subject": "h.*"}))["streams"] == ["HUGE"]
    ack = await js.publish("h.54321", b"in")
    assert ack.stream == "HUGE"


async def test_sigterm_stops_streamd_during_a_huge_create(nats_server: NatsServer, tmp_path: Path) -> None:
    args = ("--server", nats_server.url, "--leaf", nats_server.leaf_url, "--data", str(tmp_path / "d"))
    proc = await start_streamd_process(*args)
    await read_until(proc, "streamd serving")
    drain = asyncio.create_task(drain_stderr(proc))
    nc = await nats.connect(nats_server.url)
    try:
        inbox = nc.new_inbox()
        await nc.subscribe(inbox)
        await nc.publish("$JS.API.STREAM.CREATE.HUGE", _big_create("HUGE", 100_000, "h"), reply=inbox)

        async def committed() -> bool:  # the create is in its long part: subscribing 100k subjects
            names = await _api(nc, "$JS.API.STREAM.NAMES", {})
            return "HUGE" in (names.get("streams") or [])

        await wait_for(committed, timeout=30)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):  # a bound for the test, not a measurement: it must not hang
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        drain.cancel()
        await nc.close()


async def test_a_burst_of_redeliveries_all_goes_out(js: JetStreamContext) -> None:
    await js.add_stream(name="BURST", subjects=["burst"])
    for start in range(0, 3000, 500):
        await asyncio.gather(*(js.publish("burst", b"%d" % i) for i in range(start, start + 500)))
    await js.add_consumer("BURST", ConsumerConfig(durable_name="b", ack_wait=1, max_ack_pending=-1, max_waiting=4))
    sub = await js.pull_subscribe_bind("b", stream="BURST")
    first: list[int] = []
    while len(first) < 3000:
        first += [m.metadata.sequence.stream for m in await sub.fetch(3000 - len(first), timeout=5)]
    again: list[Any] = []

    async def all_redelivered() -> bool:
        again.extend(await sub.fetch(3000 - len(again), timeout=2))
        return len(again) >= 3000

    await wait_for(all_redelivered, timeout=60)
    assert sorted(m.metadata.sequence.stream for m in again) == sorted(first)
    assert all(m.metadata.num_delivered == 2 for m in again)
    for m in again:
        await m.ack()

    async def all_acked() -> bool:
        return (await js.consumer_info("BURST", "b")).num_ack_pending == 0

    await wait_for(all_acked)


async def test_a_waiting_pull_request_is_served_after_a_config_update(nc: Client, js: JetStreamContext) -> None:
    """Re-indexing a consumer on update keeps it among those woken by new messages."""
    await js.add_stream(name="UPD", subjects=["upd"])
    await js.add_consumer("UPD", ConsumerConfig(durable_name="u"))
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.flush()
    await nc.publish("$JS.API.CONSUMER.MSG.NEXT.UPD.u", b'{"batch": 1, "expires": 20000000000}', reply=inbox)

    async def waiting() -> bool:
        return (await js.consumer_info("UPD", "u")).num_waiting == 1

    await wait_for(waiting)
    updated = await js.add_consumer("UPD", ConsumerConfig(durable_name="u", description="changed"))
    assert updated.config.description == "changed"
    await js.publish("upd", b"after")
    msg = await sub.next_msg(timeout=10)
    assert msg.data == b"after"


async def test_progress_after_a_redelivery_keeps_the_timer_right(nc: Client, js: JetStreamContext) -> None:
    """+WPI moves a deadline without a rescan of pending (the consumer's hint stays a lower bound): the message
    is not redelivered early, and is redelivered once the new deadline has passed."""
    await js.add_stream(name="WPI", subjects=["wpi"])
    await js.publish("wpi", b"slow")
    sub = await js.pull_subscribe("wpi", durable="w", stream="WPI", config=ConsumerConfig(ack_wait=1))
    await sub.fetch(1, timeout=5)

    async def redelivered_then_in_progress() -> bool:
        reply = await _next_no_wait(nc, "WPI", "w")
        if reply.headers and reply.headers.get("Status") == "404":
            return False  # the first ack wait has not run out yet
        await nc.publish(reply.reply, b"+WPI")  # the second delivery: keep it in progress
        return True

    await wait_for(redelivered_then_in_progress, timeout=10)
    again = await sub.fetch(1, timeout=5)  # never acked: after the renewed ack wait it comes back once more
    assert [m.metadata.num_delivered for m in again] == [3]
    await again[0].ack()


async def test_a_delivery_served_inline_to_an_idle_consumer_keeps_its_ack_timer(
    nc: Client, js: JetStreamContext, streamd: RunningService
) -> None:
    """An idle consumer has no task; a pull request is then served inline. The message it got must still come back
    after ack_wait, also to requests that do not wait (no_wait answers from what is due, task or no task)."""
    await js.add_stream(name="IDLE", subjects=["idle"])
    await js.publish("idle", b"once")
    sub = await js.pull_subscribe("idle", durable="i", stream="IDLE", config=ConsumerConfig(ack_wait=1))
    assert streamd.service.ctx is not None
    consumer = streamd.service.ctx.consumers.get("IDLE", "i")
    await wait_for(lambda: consumer.task is None or consumer.task.done())  # idle: its first step found nothing
    [first] = await sub.fetch(1, timeout=5)
    assert first.metadata.num_delivered == 1
    await wait_for(lambda: consumer.task is not None and not consumer.task.done())  # its ack wait has a timer

    async def redelivered() -> bool:
        reply = await _next_no_wait(nc, "IDLE", "i")
        if reply.headers and reply.headers.get("Status") == "404":
            return False
        assert reply.data == b"once"
        await nc.publish(reply.reply, b"+ACK")
        return True

    await wait_for(redelivered, timeout=10)
