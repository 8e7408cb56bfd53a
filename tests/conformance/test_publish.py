"""Differential conformance: publishing into streams — PubAck, headers, limits, retention (JetStream vs streamd)."""

from __future__ import annotations

import json

import pytest
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, PubAck, RetentionPolicy
from nats.js.errors import NoStreamResponseError

from tests.conformance.util import NO_MESSAGE_FOUND, api_error, counts, info, publish_n, state
from tests.helpers import wait_for


async def raw_publish(
    nc: Client, subject: str, data: bytes = b"x", headers: dict[str, str] | None = None
) -> dict[str, object]:
    """Publish with a reply and return the decoded PubAck JSON (error replies included)."""
    msg = await nc.request(subject, data, timeout=2, headers=headers)
    reply: dict[str, object] = json.loads(msg.data)
    return reply


async def count_is(nc: Client, stream: str, n: int) -> bool:
    return (await state(nc, stream))["messages"] == n


def wrong_last_seq(actual: int) -> tuple[str, int, int, str]:
    return ("BadRequestError", 400, 10071, f"wrong last sequence: {actual}")


# --------------------------------------------------------------------------------------------------- PubAck


async def test_puback_values(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="ORDERS", subjects=["orders.>"])
    ack = await js.publish("orders.new", b"one")
    assert ack == PubAck(stream="ORDERS", seq=1)
    assert (ack.duplicate, ack.domain) == (None, None)
    assert await raw_publish(nc, "orders.old", b"two") == {"stream": "ORDERS", "seq": 2}
    acks = await (await js.publish_async("orders.x", b"three"))
    assert (acks.stream, acks.seq) == ("ORDERS", 3)


async def test_publish_to_uncovered_subject(js: JetStreamContext) -> None:
    await js.add_stream(name="ORDERS", subjects=["orders.*"])
    with pytest.raises(NoStreamResponseError):
        await js.publish("elsewhere", b"x")
    with pytest.raises(NoStreamResponseError):
        await js.publish("orders.a.b", b"x")  # `*` covers one token only


async def test_publish_without_reply_is_stored_silently(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="S", subjects=["s.>"])
    await nc.publish("s.a", b"fire-and-forget", headers={"X-K": "v"})
    await nc.publish("s.a", b"refused", headers={"Nats-Expected-Stream": "OTHER"})  # failure is silent too
    await nc.flush()
    await wait_for(lambda: count_is(nc, "S", 1))
    ack = await js.publish("s.a", b"acked")
    assert ack.seq == 2  # the refused message used no sequence
    msg = await js.get_msg("S", 1)
    assert (msg.data, msg.headers) == (b"fire-and-forget", {"X-K": "v"})


async def test_no_ack_stream_never_answers(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="Q", subjects=["q"], no_ack=True)
    with pytest.raises(NatsTimeoutError):
        await nc.request("q", b"x", timeout=0.5)  # the bounded wait is for a reply that must never come
    await wait_for(lambda: count_is(nc, "Q", 1))


# --------------------------------------------------------------------------------------------------- headers


async def test_msg_id_deduplication(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="S", subjects=["s.>"])
    first = await js.publish("s.a", b"1", headers={"Nats-Msg-Id": "a"})
    assert (first.seq, first.duplicate) == (1, None)
    dup = await js.publish("s.a", b"1 again", headers={"Nats-Msg-Id": "a"})
    assert (dup.stream, dup.seq, dup.duplicate) == ("S", 1, True)
    assert (await js.publish("s.b", b"2", headers={"Nats-Msg-Id": "b"})).seq == 2
    assert await raw_publish(nc, "s.c", b"x", {"Nats-Msg-Id": "a"}) == {"stream": "S", "seq": 1, "duplicate": True}
    assert (await js.publish("s.a", b"3")).seq == 3  # no id: never a duplicate
    st = await state(nc, "S")
    assert (st["messages"], st["last_seq"]) == (3, 3)
    assert (await js.get_msg("S", 1)).data == b"1"


async def test_msg_id_forgotten_after_duplicate_window(nc: Client, js: JetStreamContext) -> None:
    si = await js.add_stream(name="S", subjects=["s"], duplicate_window=0.2)
    assert si.config.duplicate_window == 0.2
    assert (await js.publish("s", b"x", headers={"Nats-Msg-Id": "a"})).seq == 1

    async def stored_again() -> bool:
        return not (await js.publish("s", b"x", headers={"Nats-Msg-Id": "a"})).duplicate

    await wait_for(stored_again)
    assert await counts(nc, "S") == (2, 1, 2)


async def test_per_message_ttl_needs_allow_msg_ttl(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="T", subjects=["t"])
    assert await api_error(js.publish("t", b"x", msg_ttl=5)) == (
        "BadRequestError",
        400,
        10166,
        "per-message TTL is disabled",
    )
    assert await counts(nc, "T") == (0, 0, 0)


async def test_expected_stream(js: JetStreamContext) -> None:
    await js.add_stream(name="S", subjects=["s.>"])
    assert await api_error(js.publish("s.a", b"x", stream="OTHER")) == (
        "BadRequestError",
        400,
        10060,
        "expected stream does not match",
    )
    assert (await js.publish("s.a", b"x", stream="S")).seq == 1
    assert await api_error(js.publish("s.a", b"x", headers={"Nats-Expected-Stream": "s"})) == (
        "BadRequestError",
        400,
        10060,
        "expected stream does not match",
    )  # case-sensitive


async def test_expected_last_sequence(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="S", subjects=["s.>"])
    assert (await js.publish("s.a", b"x", headers={"Nats-Expected-Last-Sequence": "0"})).seq == 1
    assert await api_error(js.publish("s.a", b"x", headers={"Nats-Expected-Last-Sequence": "0"})) == (wrong_last_seq(1))
    await publish_n(js, ["s.b", "s.c"])
    assert await api_error(js.publish("s.a", b"x", headers={"Nats-Expected-Last-Sequence": "2"})) == (wrong_last_seq(3))
    assert await raw_publish(nc, "s.a", b"x", {"Nats-Expected-Last-Sequence": "9"}) == {
        "error": {"code": 400, "err_code": 10071, "description": "wrong last sequence: 3"},
        "stream": "S",
        "seq": 0,
    }
    assert (await js.publish("s.a", b"x", headers={"Nats-Expected-Last-Sequence": "3"})).seq == 4


async def test_expected_last_subject_sequence(js: JetStreamContext) -> None:
    await js.add_stream(name="S", subjects=["s.>"])
    await publish_n(js, ["s.0", "s.1", "s.0", "s.1", "s.0"])
    elss = "Nats-Expected-Last-Subject-Sequence"
    assert await api_error(js.publish("s.1", b"x", headers={elss: "2"})) == wrong_last_seq(4)
    assert await api_error(js.publish("s.9", b"x", headers={elss: "4"})) == wrong_last_seq(0)
    assert await api_error(js.publish("s.1", b"x", headers={elss: "0"})) == wrong_last_seq(4)
    assert (await js.publish("s.1", b"x", headers={elss: "4"})).seq == 6
    assert (await js.publish("s.new", b"x", headers={elss: "0"})).seq == 7  # 0 = no message on the subject yet

    # The -Subject variant checks another subject instead of the published one.
    subj = "Nats-Expected-Last-Subject-Sequence-Subject"
    assert (await js.publish("s.9", b"x", headers={elss: "5", subj: "s.0"})).seq == 8
    assert await api_error(js.publish("s.9", b"x", headers={elss: "5", subj: "s.1"})) == wrong_last_seq(6)
    assert await api_error(js.publish("s.9", b"x", headers={elss: "3", subj: "s.none"})) == wrong_last_seq(0)
    assert (await js.publish("s.9", b"x", headers={elss: "6", subj: "s.1"})).seq == 9


async def test_expected_last_subject_sequence_wildcard_subject(js: JetStreamContext) -> None:
    await js.add_stream(name="S", subjects=["s.>"])
    await publish_n(js, ["s.0", "s.1", "s.0", "s.1", "s.2"])
    elss, subj = "Nats-Expected-Last-Subject-Sequence", "Nats-Expected-Last-Subject-Sequence-Subject"
    # A wildcard -Subject means: the last message on any matching subject.
    assert await api_error(js.publish("s.9", b"x", headers={elss: "1", subj: "s.*"})) == wrong_last_seq(5)
    assert (await js.publish("s.9", b"x", headers={elss: "5", subj: "s.*"})).seq == 6
    assert await api_error(js.publish("s.9", b"x", headers={elss: "5", subj: "s.>"})) == wrong_last_seq(6)
    assert (await js.publish("s.9", b"x", headers={elss: "6", subj: "s.>"})).seq == 7


async def test_expected_headers_precedence(js: JetStreamContext) -> None:
    await js.add_stream(name="S", subjects=["s.>"])
    await publish_n(js, ["s.0", "s.1", "s.0", "s.1", "s.0"])
    await js.publish("s.0", b"x", headers={"Nats-Msg-Id": "id6"})
    # stream name first, then subject sequence, then stream sequence
    hdrs = {"Nats-Expected-Stream": "Q", "Nats-Expected-Last-Sequence": "1"}
    assert (await api_error(js.publish("s.1", b"x", headers=hdrs)))[2] == 10060
    hdrs = {"Nats-Expected-Last-Subject-Sequence": "1", "Nats-Expected-Last-Sequence": "2"}
    assert await api_error(js.publish("s.1", b"x", headers=hdrs)) == wrong_last_seq(4)
    # sequence checks come before de-duplication, de-duplication before the last-msg-id check
    hdrs = {"Nats-Msg-Id": "id6", "Nats-Expected-Last-Sequence": "1"}
    assert await api_error(js.publish("s.0", b"x", headers=hdrs)) == wrong_last_seq(6)
    dup = await js.publish("s.0", b"x", headers={"Nats-Msg-Id": "id6", "Nats-Expected-Last-Msg-Id": "nope"})
    assert (dup.seq, dup.duplicate) == (6, True)


async def test_expected_last_msg_id(js: JetStreamContext) -> None:
    await js.add_stream(name="S", subjects=["s.>"])
    await js.publish("s.a", b"x")
    assert await api_error(js.publish("s.a", b"x", headers={"Nats-Expected-Last-Msg-Id": "abc"})) == (
        "BadRequestError",
        400,
        10070,
        "wrong last msg ID: ",
    )  # the last message had no id
    await js.publish("s.a", b"x", headers={"Nats-Msg-Id": "abc"})
    assert (await js.publish("s.b", b"x", headers={"Nats-Expected-Last-Msg-Id": "abc", "Nats-Msg-Id": "def"})).seq == 3
    assert await api_error(js.publish("s.a", b"x", headers={"Nats-Expected-Last-Msg-Id": "abc"})) == (
        "BadRequestError",
        400,
        10070,
        "wrong last msg ID: def",
    )


# --------------------------------------------------------------------------------------------------- rollup


async def test_rollup_subject_and_all(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="R", subjects=["r.>"], allow_rollup_hdrs=True)
    await publish_n(js, ["r.a", "r.a", "r.b", "r.a"])
    ack = await js.publish("r.a", b"snapshot", headers={"Nats-Rollup": "sub"})
    assert ack.seq == 5
    reply = await info(nc, "R", {"subjects_filter": ">"})
    assert reply["state"]["subjects"] == {"r.a": 1, "r.b": 1}
    assert (reply["state"]["messages"], reply["state"]["first_seq"], reply["state"]["last_seq"]) == (2, 3, 5)
    assert await api_error(js.get_msg("R", 1)) == NO_MESSAGE_FOUND
    assert (await js.get_last_msg("R", "r.a")).headers == {"Nats-Rollup": "sub"}  # kept verbatim

    await publish_n(js, ["r.c", "r.b"])
    assert (await js.publish("r.z", b"all", headers={"Nats-Rollup": "all"})).seq == 8
    assert await counts(nc, "R") == (1, 8, 8)
    assert (await js.get_msg("R", 8)).data == b"all"


async def test_rollup_refused(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="R", subjects=["r.>"])
    await js.publish("r.a", b"x")
    assert await api_error(js.publish("r.a", b"x", headers={"Nats-Rollup": "sub"})) == (
        "ServerError",
        500,
        10111,
        "rollup not permitted",
    )
    assert await api_error(js.publish("r.a", b"x", headers={"Nats-Rollup": "all"})) == (
        "ServerError",
        500,
        10111,
        "rollup not permitted",
    )
    await js.update_stream(name="R", subjects=["r.>"], allow_rollup_hdrs=True)
    assert await api_error(js.publish("r.a", b"x", headers={"Nats-Rollup": "bogus"})) == (
        "ServerError",
        500,
        10111,
        'rollup value invalid: "bogus"',
    )
    assert await counts(nc, "R") == (1, 1, 1)


# --------------------------------------------------------------------------------------------------- limits


async def test_limits_discard_old(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="M", subjects=["m.>"], max_msgs=3)
    assert await publish_n(js, ["m.a"] * 5) == [1, 2, 3, 4, 5]
    assert await counts(nc, "M") == (3, 3, 5)

    # file-store size of a header-less message: 22 + len(subject) + len(data) + 8 = 63 for "b.x" + 30 bytes
    await js.add_stream(name="B", subjects=["b.>"], max_bytes=130)
    await publish_n(js, ["b.x"] * 4, payload=b"y" * 30)
    st = await state(nc, "B")
    assert (st["messages"], st["bytes"], st["first_seq"], st["last_seq"]) == (2, 126, 3, 4)

    await js.add_stream(name="P", subjects=["p.>"], max_msgs_per_subject=2)
    await publish_n(js, ["p.a", "p.b", "p.a", "p.a", "p.b", "p.a"])
    reply = await info(nc, "P", {"subjects_filter": ">"})
    assert reply["state"]["subjects"] == {"p.a": 2, "p.b": 2}
    assert (reply["state"]["messages"], reply["state"]["first_seq"]) == (4, 2)


async def test_limits_discard_new(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="M", subjects=["m.>"], max_msgs=2, discard=DiscardPolicy.NEW)
    await publish_n(js, ["m.a", "m.b"])
    assert await api_error(js.publish("m.c", b"x")) == (
        "ServiceUnavailableError",
        503,
        10077,
        "maximum messages exceeded",
    )
    assert await raw_publish(nc, "m.c") == {
        "error": {"code": 503, "err_code": 10077, "description": "maximum messages exceeded"},
        "stream": "M",
        "seq": 0,
    }
    assert await counts(nc, "M") == (2, 1, 2)

    await js.add_stream(name="B", subjects=["b.>"], max_bytes=100, discard=DiscardPolicy.NEW)
    assert (await js.publish("b.x", b"y" * 30)).seq == 1
    assert await api_error(js.publish("b.x", b"y" * 30)) == (
        "ServiceUnavailableError",
        503,
        10077,
        "maximum bytes exceeded",
    )
    assert (await js.publish("b.x", b"")).seq == 2  # 33 bytes still fit
    assert await counts(nc, "B") == (2, 1, 2)


async def test_max_msgs_per_subject_with_discard_new(nc: Client, js: JetStreamContext) -> None:
    # Without discard_new_per_subject the per-subject limit still drops the subject's oldest (KV relies on it).
    await js.add_stream(name="KV", subjects=["kv.>"], max_msgs_per_subject=2, discard=DiscardPolicy.NEW)
    assert await publish_n(js, ["kv.a"] * 3) == [1, 2, 3]
    assert await counts(nc, "KV") == (2, 2, 3)

    await js.add_stream(
        name="P", subjects=["p.>"], max_msgs_per_subject=1, discard=DiscardPolicy.NEW, discard_new_per_subject=True
    )
    assert (await js.publish("p.a", b"x")).seq == 1
    assert await api_error(js.publish("p.a", b"x")) == (
        "ServiceUnavailableError",
        503,
        10077,
        "maximum messages per subject exceeded",
    )
    assert (await js.publish("p.b", b"x")).seq == 2
    assert await counts(nc, "P") == (2, 1, 2)


async def test_max_msg_size(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="Z", subjects=["z"], max_msg_size=10)
    assert (await js.publish("z", b"x" * 10)).seq == 1
    too_big = ("BadRequestError", 400, 10054, "message size exceeds maximum allowed")
    assert await api_error(js.publish("z", b"x" * 11)) == too_big
    assert await api_error(js.publish("z", b"x" * 5, headers={"Foo": "bar"})) == too_big  # headers count
    assert await counts(nc, "Z") == (1, 1, 1)


async def test_max_age_expiry(nc: Client, js: JetStreamContext) -> None:
    si = await js.add_stream(name="A", subjects=["a.>"], max_age=0.5)
    assert (si.config.max_age, si.config.duplicate_window) == (0.5, 0.5)
    await publish_n(js, ["a.x", "a.y"])

    async def expired() -> bool:
        return await counts(nc, "A") == (0, 3, 2)

    await wait_for(expired, timeout=10)
    assert (await js.publish("a.x", b"x")).seq == 3


async def test_interest_retention_without_consumers(nc: Client, js: JetStreamContext) -> None:
    si = await js.add_stream(name="I", subjects=["i.>"], retention=RetentionPolicy.INTEREST)
    assert si.config.retention == RetentionPolicy.INTEREST
    assert await publish_n(js, ["i.a", "i.b"]) == [1, 2]
    st = await state(nc, "I")
    assert (st["messages"], st["bytes"], st["first_seq"], st["last_seq"]) == (0, 0, 3, 2)
    assert await api_error(js.get_msg("I", 1)) == NO_MESSAGE_FOUND
