"""Input rules, as nats-server -js applies them (issue 9): subjects, integer ranges and their wording, offsets."""

from __future__ import annotations

import json

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from tests.conformance.util import api, error_of

U64_MAX = (1 << 64) - 1


async def test_wildcard_characters_inside_a_token_are_literal(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="ODD", subjects=["A*", "x.b>c"])
    assert (await js.publish("A*", b"1")).seq == 1
    assert (await js.publish("x.b>c", b"2")).seq == 2
    assert (await js.get_last_msg("ODD", "A*")).data == b"1"
    reply = await api(nc, "$JS.API.STREAM.NAMES", {"subject": "A*"})
    assert reply["streams"] == ["ODD"]


@pytest.mark.parametrize("subject", ["a..b", "a.>.b", "a\fb", ".a", "a."])
async def test_invalid_stream_subjects(nc: Client, subject: str) -> None:
    reply = await api(nc, "$JS.API.STREAM.CREATE.BAD", {"name": "BAD", "subjects": [subject]})
    assert error_of(reply) == (500, 10052, "invalid subject")


async def test_invalid_consumer_subjects(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="D", subjects=["d.>"])
    bad_filter = {"stream_name": "D", "config": {"filter_subject": "d..x"}}
    assert error_of(await api(nc, "$JS.API.CONSUMER.CREATE.D", bad_filter)) == (500, 10052, "invalid subject")
    bad_deliver = {"stream_name": "D", "config": {"deliver_subject": "x..y"}}
    assert error_of(await api(nc, "$JS.API.CONSUMER.CREATE.D", bad_deliver)) == (
        400,
        10112,
        "invalid push consumer deliver subject",
    )
    literal = {"stream_name": "D", "config": {"filter_subject": "d.A*", "deliver_subject": "dl.x>y"}}
    reply = await api(nc, "$JS.API.CONSUMER.CREATE.D", literal)
    assert reply["config"]["filter_subject"] == "d.A*" and reply["config"]["deliver_subject"] == "dl.x>y"


_GO = "invalid JSON: json: cannot unmarshal "
NUMBER_CASES = [
    (
        "STREAM.CREATE.C",
        b'{"name":"C","max_msgs":18446744073709551616}',
        "number 18446744073709551616 into Go struct field StreamConfigRequest.max_msgs of type int64",
    ),
    (
        "STREAM.CREATE.C",
        b'{"name":"C","first_seq":-1}',
        "number -1 into Go struct field StreamConfigRequest.first_seq of type uint64",
    ),
    (
        "STREAM.CREATE.C",
        b'{"name":"C","max_msg_size":2147483648}',
        "number 2147483648 into Go struct field StreamConfigRequest.max_msg_size of type int32",
    ),
    (
        "STREAM.CREATE.C",
        b'{"name":"C","max_age":1e30}',
        "number 1e30 into Go struct field StreamConfigRequest.max_age of type time.Duration",
    ),
    (
        "STREAM.CREATE.C",
        b'{"name":"C","consumer_limits":{"max_ack_pending":99999999999999999999}}',
        "number 99999999999999999999 into Go struct field "
        "StreamConfigRequest.consumer_limits.max_ack_pending of type int",
    ),
    (
        "STREAM.CREATE.C",
        b'{"name":"C","max_msgs":"5"}',
        "string into Go struct field StreamConfigRequest.max_msgs of type int64",
    ),
    (
        "STREAM.MSG.GET.D",
        b'{"seq":-1}',
        "number -1 into Go struct field JSApiMsgGetRequest.seq of type uint64",
    ),
    (
        "STREAM.MSG.GET.D",
        b'{"seq":18446744073709551616}',
        "number 18446744073709551616 into Go struct field JSApiMsgGetRequest.seq of type uint64",
    ),
    (
        "STREAM.MSG.GET.D",
        b'{"seq":1.5}',
        "number 1.5 into Go struct field JSApiMsgGetRequest.seq of type uint64",
    ),
    (
        "STREAM.MSG.DELETE.D",
        b'{"seq":-1}',
        "number -1 into Go struct field JSApiMsgDeleteRequest.seq of type uint64",
    ),
    (
        "STREAM.PURGE.D",
        b'{"keep":-1}',
        "number -1 into Go struct field JSApiStreamPurgeRequest.keep of type uint64",
    ),
    (
        "STREAM.NAMES",
        b'{"offset":18446744073709551616}',
        "number 18446744073709551616 into Go struct field JSApiStreamNamesRequest.offset of type int",
    ),
    (
        "STREAM.LIST",
        b'{"offset":18446744073709551616}',
        "number 18446744073709551616 into Go struct field JSApiStreamListRequest.offset of type int",
    ),
    (
        "CONSUMER.NAMES.D",
        b'{"offset":18446744073709551616}',
        "number 18446744073709551616 into Go struct field JSApiConsumersRequest.offset of type int",
    ),
    (
        "CONSUMER.CREATE.D",
        b'{"stream_name":"D","config":{"max_deliver":18446744073709551616}}',
        "number 18446744073709551616 into Go struct field CreateConsumerRequest.config.max_deliver of type int",
    ),
    (
        "CONSUMER.CREATE.D",
        b'{"stream_name":"D","config":{"opt_start_seq":-1,"deliver_policy":"by_start_sequence"}}',
        "number -1 into Go struct field CreateConsumerRequest.config.opt_start_seq of type uint64",
    ),
    (
        "CONSUMER.CREATE.D",
        b'{"stream_name":"D","config":{"ack_wait":"x"}}',
        "string into Go struct field CreateConsumerRequest.config.ack_wait of type time.Duration",
    ),
    (
        "CONSUMER.CREATE.D",
        b'{"stream_name":"D","config":{"backoff":[1,-2e0]}}',
        "number -2e0 into CreateConsumerRequest.config.backoff.1 of type time.Duration",
    ),
]


@pytest.mark.parametrize(
    ("verb", "body", "text"), NUMBER_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(NUMBER_CASES)]
)
async def test_numbers_outside_their_go_type(
    nc: Client, js: JetStreamContext, verb: str, body: bytes, text: str
) -> None:
    await js.add_stream(name="D", subjects=["d.>"])
    reply = await api(nc, "$JS.API." + verb, body)
    assert error_of(reply) == (400, 10025, _GO + text)


async def test_the_largest_values_are_accepted(nc: Client, js: JetStreamContext) -> None:
    reply = await api(nc, "$JS.API.STREAM.CREATE.C", {"name": "C", "first_seq": U64_MAX})
    assert reply["config"]["first_seq"] == U64_MAX
    assert (await js.publish("C", b"x")).seq == U64_MAX
    await js.add_stream(name="D", subjects=["d.>"])
    reply = await api(nc, "$JS.API.STREAM.MSG.GET.D", {"seq": U64_MAX})
    assert error_of(reply) == (404, 10037, "no message found")


async def test_a_negative_offset_reads_as_zero(nc: Client, js: JetStreamContext) -> None:
    for name in ("A", "B"):
        await js.add_stream(name=name, subjects=[name.lower()])
    reply = await api(nc, "$JS.API.STREAM.NAMES", {"offset": -1})
    assert (reply["offset"], reply["streams"]) == (0, ["A", "B"])


@pytest.mark.parametrize("body", [b'{"seq":-1}', b'{"seq":18446744073709551616}', b'{"seq":1.5}', b'{"seq":"1"}'])
async def test_direct_get_with_a_bad_sequence(nc: Client, js: JetStreamContext, body: bytes) -> None:
    await js.add_stream(name="G", subjects=["g.>"], allow_direct=True)
    await js.publish("g.1", b"x")
    msg = await nc.request("$JS.API.DIRECT.GET.G", body, timeout=3)
    assert msg.headers is not None
    assert (msg.headers.get("Status"), msg.headers.get(nats.js.api.Header.DESCRIPTION)) == ("408", "Malformed Request")


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b'{"batch":18446744073709551616}', "number 18446744073709551616 into Go struct field .batch of type int"),
        (b'{"batch":1.5}', "number 1.5 into Go struct field .batch of type int"),
    ],
)
async def test_pull_request_numbers_outside_their_go_type(
    nc: Client, js: JetStreamContext, body: bytes, text: str
) -> None:
    await js.add_stream(name="PL", subjects=["pl"])
    await js.add_consumer("PL", nats.js.api.ConsumerConfig(durable_name="x", ack_policy="explicit"))
    msg = await nc.request("$JS.API.CONSUMER.MSG.NEXT.PL.x", body, timeout=3)
    assert msg.headers is not None and msg.headers.get("Status") == "400"
    assert msg.headers.get(nats.js.api.Header.DESCRIPTION) == "Bad Request - json: cannot unmarshal " + text


async def test_invalid_subjects_in_lookups_match_nothing(nc: Client, js: JetStreamContext) -> None:
    """An invalid filter is no error for the server: nothing matches (and a purge must not take more)."""
    await js.add_stream(name="G", subjects=["g.>"], allow_direct=True)
    await js.publish("g.x.b", b"1")
    for body in ({"last_by_subj": "g..b"}, {"next_by_subj": "g.>.b", "seq": 1}):
        assert error_of(await api(nc, "$JS.API.STREAM.MSG.GET.G", body)) == (404, 10037, "no message found")
        msg = await nc.request("$JS.API.DIRECT.GET.G", json.dumps(body).encode(), timeout=3)
        assert msg.headers is not None and msg.headers.get("Status") == "404"
    reply = await api(nc, "$JS.API.STREAM.PURGE.G", {"filter": "g.>.b"})
    assert (reply.get("success"), reply.get("purged")) == (True, 0)
    assert (await js.stream_info("G")).state.messages == 1
    reply = await api(nc, "$JS.API.STREAM.INFO.G", {"subjects_filter": "g.>.b"})
    assert "subjects" not in reply["state"] and reply["total"] == 0


async def test_required_api_level_header(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="LV", subjects=["lv"])
    too_high = await nc.request("$JS.API.STREAM.INFO.LV", b"", timeout=3, headers={"Nats-Required-Api-Level": "99"})
    assert error_of(json.loads(too_high.data)) == (412, 10185, "JetStream minimum api level required")
    fine = await nc.request("$JS.API.STREAM.INFO.LV", b"", timeout=3, headers={"Nats-Required-Api-Level": "0"})
    assert json.loads(fine.data)["config"]["name"] == "LV"


async def test_an_update_may_carry_any_first_seq(nc: Client, js: JetStreamContext) -> None:
    """Clients that send the whole config back on update (nats.js does) include first_seq; the server takes it."""
    await js.add_stream(name="F", subjects=["f"])
    assert (await js.publish("f", b"1")).seq == 1
    for first_seq in (1, 0, 5):
        reply = await api(nc, "$JS.API.STREAM.UPDATE.F", {"name": "F", "subjects": ["f"], "first_seq": first_seq})
        assert "error" not in reply, reply
        assert reply["config"].get("first_seq", 0) == first_seq
        assert (reply["state"]["first_seq"], reply["state"]["last_seq"]) == (1, 1)
    assert (await js.publish("f", b"2")).seq == 2


async def test_null_leaves_a_field_at_its_default(nc: Client) -> None:
    """Go's decoder treats null as absent for a plain field; requests built by other tools carry nulls."""
    body = {"name": "N", "subjects": ["n"], "max_msgs": None, "max_age": None, "description": None}
    reply = await api(nc, "$JS.API.STREAM.CREATE.N", body)
    assert "error" not in reply, reply
    assert (reply["config"]["max_msgs"], reply["config"]["max_age"]) == (-1, 0)
    consumer = {"stream_name": "N", "config": {"durable_name": "D", "ack_wait": None, "filter_subject": None}}
    reply = await api(nc, "$JS.API.CONSUMER.CREATE.N.D", consumer)
    assert "error" not in reply, reply
    bad = {"name": "N2", "subjects": None, "max_msgs": "x"}
    assert error_of(await api(nc, "$JS.API.STREAM.CREATE.N2", bad))[:2] == (400, 10025)
