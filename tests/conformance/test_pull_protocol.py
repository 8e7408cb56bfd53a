"""Differential conformance: the pull protocol on the wire (raw `CONSUMER.MSG.NEXT` requests, JetStream vs streamd).

Every request is published from a plain nats-py inbox subscription, and the test asserts exactly what arrives there:
deliveries (subject, data, ack reply tokens) and header-only status messages (`Status`, `Description`, extra headers,
no payload, no reply subject).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.js import JetStreamContext

from tests.conformance.consumer_util import (
    C,
    Inbox,
    ack_tokens,
    consumer_info,
    create_ok,
    delivery,
    headers_of,
    numbers,
    open_inbox,
    status_of,
)
from tests.conformance.util import api, publish_n
from tests.helpers import wait_for

NO_MESSAGES = ("404", "No Messages", {})
MS = 1_000_000


def pending(msgs: int, nbytes: int) -> dict[str, str]:
    return {"Nats-Pending-Messages": str(msgs), "Nats-Pending-Bytes": str(nbytes)}


def size(msg: Msg) -> int:
    """What a delivery costs against `max_bytes`: subject + ack reply + headers + payload (no headers here)."""
    assert not msg.headers
    return len(msg.subject) + len(msg.reply) + len(msg.data)


async def _setup(js: JetStreamContext, nc: Client, subjects: list[str], **config: Any) -> Inbox:
    """Stream S (s.>) holding one message (payload `x`) per subject, durable pull consumer `d`, an open inbox."""
    await js.add_stream(name="S", subjects=["s.>"])
    await publish_n(js, subjects)
    await create_ok(nc, "DURABLE.CREATE.S.d", {"durable_name": "d", "ack_policy": "explicit", **config})
    return await open_inbox(nc)


async def _waiting(nc: Client, n: int, consumer: str = "d") -> None:
    async def reached() -> bool:
        return int((await consumer_info(nc, "S", consumer))["num_waiting"]) == n

    await wait_for(reached)


# --------------------------------------------------------------------------------------------------- batches


async def test_no_wait_with_nothing_pending_is_404(nc: Client, js: JetStreamContext) -> None:
    inbox = await _setup(js, nc, [])
    await inbox.next_request("S", "d", {"batch": 1, "no_wait": True})
    assert await inbox.status() == NO_MESSAGES
    await inbox.quiet()
    assert (await consumer_info(nc, "S", "d"))["num_waiting"] == 0


async def test_no_wait_is_answered_while_another_request_waits(nc: Client, js: JetStreamContext) -> None:
    inbox = await _setup(js, nc, [])
    await inbox.next_request("S", "d", {"batch": 1, "expires": 5000 * MS})
    await _waiting(nc, 1)
    other = await open_inbox(nc)
    await other.next_request("S", "d", {"batch": 1, "no_wait": True})
    # answered at once, not queued behind the waiting request (which only ends after 5 s)
    assert await other.status(timeout=1.0) == NO_MESSAGES
    assert (await consumer_info(nc, "S", "d"))["num_waiting"] == 1
    await inbox.quiet(0.1)


async def test_filled_batch_ends_without_status(nc: Client, js: JetStreamContext) -> None:
    inbox = await _setup(js, nc, ["s.a", "s.b", "s.c"])
    await inbox.next_request("S", "d", {"batch": 3})
    got = [delivery(m) for m in await inbox.take(3)]
    # (subject, data, delivered count, stream seq, consumer seq, pending)
    assert got == [("s.a", b"x", 1, 1, 1, 2), ("s.b", b"x", 1, 2, 2, 1), ("s.c", b"x", 1, 3, 3, 0)]
    await inbox.quiet()


async def test_empty_and_integer_bodies(nc: Client, js: JetStreamContext) -> None:
    inbox = await _setup(js, nc, ["s.a", "s.b", "s.c"])
    await inbox.next_request("S", "d", b"")  # empty body = batch 1
    assert [delivery(m)[3] for m in await inbox.take(1)] == [1]
    await inbox.quiet(0.2)
    await inbox.next_request("S", "d", b"2")  # a bare integer is the batch size
    assert [delivery(m)[3] for m in await inbox.take(2)] == [2, 3]
    await inbox.quiet(0.2)


@pytest.mark.parametrize(
    "body",
    [{"batch": 10, "no_wait": True}, {"batch": 10, "no_wait": True, "expires": 2000 * MS}],
    ids=["no_wait", "no_wait+expires"],
)
async def test_partial_batch_with_no_wait_ends_with_404(nc: Client, js: JetStreamContext, body: Any) -> None:
    inbox = await _setup(js, nc, ["s.a", "s.b"])
    await inbox.next_request("S", "d", body)
    msgs = await inbox.take(3)
    assert [delivery(m)[0] for m in msgs[:2]] == ["s.a", "s.b"]
    assert status_of(msgs[2]) == NO_MESSAGES
    await inbox.quiet()


async def test_expires_ends_with_408_and_pending_counts(nc: Client, js: JetStreamContext) -> None:
    inbox = await _setup(js, nc, ["s.a"])
    await inbox.next_request("S", "d", {"batch": 3, "expires": 300 * MS})
    assert delivery(await inbox.get())[:2] == ("s.a", b"x")
    assert await inbox.status() == ("408", "Request Timeout", pending(2, 0))
    await inbox.quiet(0.2)
    # nothing pending, with a byte budget: everything is left over
    await inbox.next_request("S", "d", {"batch": 3, "expires": 200 * MS, "max_bytes": 1000})
    assert await inbox.status() == ("408", "Request Timeout", pending(3, 1000))
    # no_wait + expires with nothing available waits like a plain request (nats-py's first fetch request)
    await inbox.next_request("S", "d", {"batch": 2, "expires": 200 * MS, "no_wait": True})
    assert await inbox.status() == ("408", "Request Timeout", pending(2, 0))
    await inbox.quiet(0.2)


# --------------------------------------------------------------------------------------------------- max_bytes


async def test_max_bytes_smaller_than_the_message(nc: Client, js: JetStreamContext) -> None:
    inbox = await _setup(js, nc, ["s.a", "s.b"])
    await inbox.next_request("S", "d", {"batch": 5, "max_bytes": 10})
    assert await inbox.status() == ("409", "Message Size Exceeds MaxBytes", pending(5, 10))
    await inbox.quiet(0.2)
    # the message that did not fit was not delivered: it is still the first delivery, with consumer seq 1
    await inbox.next_request("S", "d", {"batch": 1})
    assert delivery(await inbox.get()) == ("s.a", b"x", 1, 1, 1, 1)
    n = numbers(await consumer_info(nc, "S", "d"))
    assert (n["delivered"], n["num_ack_pending"], n["num_redelivered"]) == ({"consumer_seq": 1, "stream_seq": 1}, 1, 0)


async def test_max_bytes_batch_completed(nc: Client, js: JetStreamContext) -> None:
    inbox = await _setup(js, nc, ["s.a", "s.b", "s.c"])
    await inbox.next_request("S", "d", {"batch": 2, "max_bytes": 1000})
    first, second = await inbox.take(2)
    assert [delivery(first)[0], delivery(second)[0]] == ["s.a", "s.b"]
    # what is left of the budget: 1000 - (subject + ack reply + payload) of each delivery
    assert await inbox.status() == ("409", "Batch Completed", pending(0, 1000 - size(first) - size(second)))
    await inbox.quiet(0.2)


async def test_max_bytes_exhausted_by_two_messages(nc: Client, js: JetStreamContext) -> None:
    inbox = await _setup(js, nc, ["s.a", "s.b", "s.c"])
    await inbox.next_request("S", "d", {"batch": 1})
    [probe] = await inbox.take(1)
    one = size(probe)  # all deliveries here have the same size (same token widths)
    await inbox.next_request("S", "d", {"batch": 5, "max_bytes": 2 * one})
    msgs = await inbox.take(2)
    assert [delivery(m)[0] for m in msgs] == ["s.b", "s.c"]
    assert [size(m) for m in msgs] == [one, one]
    await js.publish("s.d", b"x")  # the budget is spent: the request is over, nothing more arrives
    await inbox.quiet()


# --------------------------------------------------------------------------------------------------- heartbeats


async def _heartbeats_then_timeout(inbox: Inbox) -> list[tuple[str, str | None, dict[str, str]]]:
    seen = []
    while True:
        st = await inbox.status()
        seen.append(st)
        if st[0] != "100":
            return seen


async def test_idle_heartbeat_on_a_fresh_consumer(nc: Client, js: JetStreamContext) -> None:
    inbox = await _setup(js, nc, [])
    await inbox.next_request("S", "d", {"batch": 1, "expires": 650 * MS, "idle_heartbeat": 200 * MS})
    seen = await _heartbeats_then_timeout(inbox)
    hb = ("100", "Idle Heartbeat", {"Nats-Last-Consumer": "0", "Nats-Last-Stream": "0"})
    assert len(seen) >= 2 and all(st == hb for st in seen[:-1]), seen
    assert seen[-1] == ("408", "Request Timeout", pending(1, 0))


async def test_idle_heartbeat_reports_the_last_delivery(nc: Client, js: JetStreamContext) -> None:
    inbox = await _setup(js, nc, ["s.a", "s.b", "s.a"], filter_subject="s.a")
    await inbox.next_request("S", "d", {"batch": 2})
    assert [delivery(m)[3:5] for m in await inbox.take(2)] == [(1, 1), (3, 2)]
    await inbox.next_request("S", "d", {"batch": 2, "expires": 650 * MS, "idle_heartbeat": 200 * MS})
    seen = await _heartbeats_then_timeout(inbox)
    hb = ("100", "Idle Heartbeat", {"Nats-Last-Consumer": "2", "Nats-Last-Stream": "3"})
    assert len(seen) >= 2 and all(st == hb for st in seen[:-1]), seen
    assert seen[-1] == ("408", "Request Timeout", pending(2, 0))


@pytest.mark.parametrize(
    "body", [{"batch": 1, "expires": 500 * MS, "idle_heartbeat": 300 * MS}, {"batch": 1, "idle_heartbeat": 300 * MS}]
)
async def test_heartbeat_too_large(nc: Client, js: JetStreamContext, body: Any) -> None:
    inbox = await _setup(js, nc, ["s.a"])
    await inbox.next_request("S", "d", body)
    assert await inbox.status() == ("400", "Bad Request - heartbeat value too large", {})
    await inbox.quiet(0.2)
    assert numbers(await consumer_info(nc, "S", "d"))["delivered"] == {"consumer_seq": 0, "stream_seq": 0}


# --------------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"batch": 3}, "Exceeded MaxRequestBatch of 2"),
        ({"batch": 1, "expires": 2000 * MS}, "Exceeded MaxRequestExpires of 1s"),
        ({"batch": 1, "max_bytes": 200}, "Exceeded MaxRequestMaxBytes of 100"),
    ],
)
async def test_consumer_request_limits(nc: Client, js: JetStreamContext, body: Any, expected: str) -> None:
    inbox = await _setup(js, nc, ["s.a"], max_batch=2, max_expires=1000 * MS, max_bytes=100)
    await inbox.next_request("S", "d", body)
    assert await inbox.status() == ("409", expected, {})
    await inbox.quiet(0.2)
    assert numbers(await consumer_info(nc, "S", "d"))["num_pending"] == 1


async def test_max_waiting_exceeded(nc: Client, js: JetStreamContext) -> None:
    inbox = await _setup(js, nc, [], max_waiting=2)
    other = await open_inbox(nc)
    await inbox.next_request("S", "d", {"batch": 1, "expires": 3000 * MS})
    await other.next_request("S", "d", {"batch": 1, "expires": 3000 * MS})
    await _waiting(nc, 2)
    third = await open_inbox(nc)
    await third.next_request("S", "d", {"batch": 1, "expires": 3000 * MS})
    assert await third.status() == ("409", "Exceeded MaxWaiting", {})
    await js.publish("s.a", b"first")  # the oldest waiting request gets it
    assert delivery(await inbox.get())[:2] == ("s.a", b"first")
    await other.quiet(0.2)


async def test_consumer_deleted_while_requests_wait(nc: Client, js: JetStreamContext) -> None:
    inbox = await _setup(js, nc, [])
    other = await open_inbox(nc)
    await inbox.next_request("S", "d", {"batch": 1, "expires": 5000 * MS})
    await other.next_request("S", "d", {"batch": 5})
    await _waiting(nc, 2)
    assert (await api(nc, f"{C}DELETE.S.d"))["success"] is True
    assert await inbox.status() == ("409", "Consumer Deleted", {})
    assert await other.status() == ("409", "Consumer Deleted", {})
    await inbox.quiet(0.2)


@pytest.mark.parametrize("body", [b"{bad", b'{"batch": "x"}'])
async def test_bad_json_request(nc: Client, js: JetStreamContext, body: bytes) -> None:
    inbox = await _setup(js, nc, ["s.a"])
    await inbox.next_request("S", "d", body)
    code, description, extra = await inbox.status()
    # after the prefix comes the decoder's message (Go's vs Python's): not compared
    assert (code, extra) == ("400", {}) and description is not None and description.startswith("Bad Request - ")
    await inbox.quiet(0.2)
    assert numbers(await consumer_info(nc, "S", "d"))["num_pending"] == 1


async def test_push_consumer_refuses_pull_requests(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="S", subjects=["s.>"])
    await create_ok(nc, "DURABLE.CREATE.S.push", {"durable_name": "push", "deliver_subject": "dlv.push"})
    inbox = await open_inbox(nc)
    await inbox.next_request("S", "push", {"batch": 1})
    assert await inbox.status() == ("409", "Consumer is push based", {})
    await inbox.quiet(0.2)


@pytest.mark.parametrize(("stream", "consumer"), [("S", "nope"), ("NOPE", "nope")])
async def test_unknown_consumer_has_no_responders(nc: Client, js: JetStreamContext, stream: str, consumer: str) -> None:
    inbox = await _setup(js, nc, ["s.a"])
    await inbox.next_request(stream, consumer, {"batch": 1})
    msg = await inbox.get()
    # nats-server 2.15 also puts a `Nats-Subject` header on its no-responders status: not compared
    assert headers_of(msg).get("Status") == "503" and msg.data == b""
    await inbox.quiet(0.2)
    with pytest.raises(NoRespondersError):
        await nc.request(f"{C}MSG.NEXT.{stream}.{consumer}", b'{"batch": 1}', timeout=2)


# --------------------------------------------------------------------------------------------------- acks


async def test_nxt_ack_delivers_the_next_message_to_its_reply(nc: Client, js: JetStreamContext) -> None:
    inbox = await _setup(js, nc, ["s.a", "s.b", "s.c"])
    await inbox.next_request("S", "d", {"batch": 1})
    first = await inbox.get()
    assert delivery(first) == ("s.a", b"x", 1, 1, 1, 2)
    nxt = await open_inbox(nc)
    await nc.publish(first.reply, b"+NXT", reply=nxt.subject)
    assert delivery(await nxt.get()) == ("s.b", b"x", 1, 2, 2, 1)
    await nxt.quiet(0.2)
    await inbox.quiet(0.1)
    n = numbers(await consumer_info(nc, "S", "d"))
    assert (n["ack_floor"], n["num_ack_pending"], n["num_pending"]) == ({"consumer_seq": 1, "stream_seq": 1}, 1, 1)


@pytest.mark.parametrize("payload", [b"", b"+ACK", b"-NAK", b"+WPI", b"+TERM"])
async def test_ack_with_reply_is_confirmed_with_an_empty_message(
    nc: Client, js: JetStreamContext, payload: bytes
) -> None:
    inbox = await _setup(js, nc, ["s.a"])
    await inbox.next_request("S", "d", {"batch": 1})
    msg = await inbox.get()
    reply = await nc.request(msg.reply, payload, timeout=2)  # what nats-py's ack_sync() does
    assert (reply.data, headers_of(reply)) == (b"", {})
    n = numbers(await consumer_info(nc, "S", "d"))
    acked = payload in (b"", b"+ACK", b"+TERM")
    assert n["num_ack_pending"] == (0 if acked else 1)
    if acked:  # a second ack of the same message is still confirmed
        again = await nc.request(msg.reply, b"+ACK", timeout=2)
        assert (again.data, headers_of(again)) == (b"", {})


async def test_ack_reply_subject_format(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="S", subjects=["s.>"])
    await publish_n(js, ["s.a", "s.b", "s.a", "s.a"])
    await create_ok(nc, "CREATE.S.flt", {"filter_subject": "s.a"})  # ack_policy none still gets ack replies
    inbox = await open_inbox(nc)
    before = time.time_ns()
    await inbox.next_request("S", "flt", {"batch": 3})
    msgs = await inbox.take(3)
    tokens = [ack_tokens(m) for m in msgs]
    assert [t[2:7] + t[8:] for t in tokens] == [
        ["S", "flt", "1", "1", "1", "2"],
        ["S", "flt", "1", "3", "2", "1"],
        ["S", "flt", "1", "4", "3", "0"],
    ]
    stamps = [int(t[7]) for t in tokens]
    assert stamps == sorted(stamps) and all(before - 60 * 10**9 < ts <= before for ts in stamps)  # stored time
    assert [m.subject for m in msgs] == ["s.a", "s.a", "s.a"]
    await inbox.quiet(0.2)
