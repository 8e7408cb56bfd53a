"""Differential conformance: atomic batch publish (`allow_atomic`, the Nats-Batch-* headers), JetStream vs streamd.

Expectations are nats-server 2.15's observed answers: staged messages get an empty reply, the commit one PubAck with
`batch` and `count`, and a batch refused anywhere stores nothing.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from nats.aio.client import Client

from tests.conformance.util import api, error_of, info

INCOMPLETE = (400, 10176, "atomic publish batch is incomplete")


async def create(nc: Client, **extra: Any) -> dict[str, Any]:
    reply = await api(nc, "$JS.API.STREAM.CREATE.B", {"name": "B", "subjects": ["b.>"], "allow_atomic": True, **extra})
    assert "error" not in reply, reply
    return reply


async def send(nc: Client, bid: str, seq: int | str | None, subject: str = "b.x", **hdrs: str) -> bytes:
    """One batch message; -> the raw reply (b"" for a staged message)."""
    h = {"Nats-Batch-Id": bid, **{k.replace("_", "-"): v for k, v in hdrs.items()}}
    if seq is not None:
        h["Nats-Batch-Sequence"] = str(seq)
    msg = await nc.request(subject, b"data", timeout=2, headers=h)
    return bytes(msg.data)


async def messages(nc: Client) -> int:
    return int((await info(nc, "B"))["state"]["messages"])


async def test_commit_stores_all_and_acks_once(nc: Client) -> None:
    reply = await create(nc)
    assert reply["config"]["allow_atomic"] is True
    assert reply["config"]["metadata"]["_nats.req.level"] == "2"
    assert await send(nc, "b1", 1) == b""
    assert await send(nc, "b1", 2, "b.y") == b""
    ack = json.loads(await send(nc, "b1", 3, Nats_Batch_Commit="1"))
    assert ack == {"stream": "B", "seq": 3, "batch": "b1", "count": 3}
    assert await messages(nc) == 3
    # An end-of-batch marker commits what came before it and is not stored; the last message carries the commit.
    assert await send(nc, "b2", 1) == b""
    ack = json.loads(await send(nc, "b2", 2, Nats_Batch_Commit="eob"))
    assert ack == {"stream": "B", "seq": 4, "batch": "b2", "count": 1}
    last = await api(nc, "$JS.API.STREAM.MSG.GET.B", {"seq": 4})
    assert b"Nats-Batch-Commit: 1" in base64.b64decode(last["message"]["hdrs"])
    # A single message batch.
    ack = json.loads(await send(nc, "b3", 1, Nats_Batch_Commit="1"))
    assert ack == {"stream": "B", "seq": 5, "batch": "b3", "count": 1}


async def test_a_refused_message_refuses_the_whole_batch(nc: Client) -> None:
    await create(nc)
    await api(nc, "$JS.API.STREAM.CREATE.O", {"name": "O", "subjects": ["o.>"]})
    cases = [
        ({"Nats_Expected_Last_Sequence": "1"}, (400, 10164, "wrong last sequence")),
        ({"Nats_Msg_Id": "same"}, (400, 10201, "atomic publish batch contains duplicate message id")),
        (
            {"Nats_Expected_Last_Msg_Id": "x"},
            (400, 10177, "atomic publish unsupported header used: Nats-Expected-Last-Msg-Id"),
        ),
        ({"Nats_Expected_Stream": "O"}, (400, 10060, "expected stream does not match")),
        ({"Nats_Expected_Last_Subject_Sequence": "0"}, (400, 10164, "wrong last sequence")),
    ]
    for i, (hdrs, want) in enumerate(cases):
        bid = f"r{i}"
        assert await send(nc, bid, 1, Nats_Msg_Id="same") == b""
        assert await send(nc, bid, 2, **hdrs) == b""  # staged: checked at the commit
        reply = json.loads(await send(nc, bid, 3, Nats_Batch_Commit="1"))
        assert error_of(reply) == want, hdrs
        assert reply["stream"] == "B"
        assert await messages(nc) == 0
        assert error_of(json.loads(await send(nc, bid, 4, Nats_Batch_Commit="1"))) == INCOMPLETE  # it is gone


async def test_expectations_on_the_first_message_and_the_api_level_header(nc: Client) -> None:
    await create(nc)
    assert await send(nc, "e", 1, Nats_Expected_Last_Sequence="0", Nats_Required_Api_Level="1") == b""
    assert await send(nc, "e", 2, "b.other", Nats_Expected_Last_Subject_Sequence="0") == b""
    ack = json.loads(await send(nc, "e", 3, "b.third", Nats_Batch_Commit="1"))
    assert (ack["seq"], ack["count"]) == (3, 3)
    first = await api(nc, "$JS.API.STREAM.MSG.GET.B", {"seq": 1})
    stored = base64.b64decode(first["message"]["hdrs"])
    assert b"Nats-Expected-Last-Sequence: 0" in stored and b"Nats-Required-Api-Level" not in stored


async def test_batch_header_errors(nc: Client) -> None:
    await api(nc, "$JS.API.STREAM.CREATE.P", {"name": "P", "subjects": ["p.>"]})
    assert error_of(json.loads(await send(nc, "x", 1, "p.x"))) == (400, 10174, "atomic publish is disabled")
    await create(nc)
    assert error_of(json.loads(await send(nc, "x", None))) == (400, 10175, "atomic publish sequence is missing")
    assert error_of(json.loads(await send(nc, "x", "one"))) == (400, 10175, "atomic publish sequence is missing")
    assert error_of(json.loads(await send(nc, "x" * 65, 1))) == (400, 10179, "atomic publish batch ID is invalid")
    assert error_of(json.loads(await send(nc, "x", 2))) == INCOMPLETE  # no such batch
    too_large = (400, 10199, "atomic publish batch is too large: 1000")
    assert error_of(json.loads(await send(nc, "x", 1001))) == too_large
    assert error_of(json.loads(await send(nc, "x", 1, Nats_Batch_Commit="eob"))) == INCOMPLETE
    assert await send(nc, "g", 1) == b""
    assert error_of(json.loads(await send(nc, "g", 3))) == INCOMPLETE  # a gap abandons the batch
    assert error_of(json.loads(await send(nc, "g", 2))) == INCOMPLETE
    assert await send(nc, "c", 1) == b""
    invalid_commit = (400, 10200, "atomic publish batch commit is invalid")
    assert error_of(json.loads(await send(nc, "c", 2, Nats_Batch_Commit="yes"))) == invalid_commit
    assert error_of(json.loads(await send(nc, "c", 2, Nats_Batch_Commit="1"))) == INCOMPLETE
    level = (412, 10185, "JetStream minimum api level required")
    assert await send(nc, "l", 1) == b""
    assert error_of(json.loads(await send(nc, "l", 2, Nats_Required_Api_Level="99"))) == level
    assert await messages(nc) == 0


async def test_too_many_inflight_batches_per_stream(nc: Client) -> None:
    await create(nc)
    for i in range(50):
        assert await send(nc, f"i{i}", 1) == b""
    assert error_of(json.loads(await send(nc, "one-more", 1))) == (429, 10210, "atomic publish too many inflight")
    ack = json.loads(await send(nc, "i7", 2, Nats_Batch_Commit="1"))  # a commit frees a slot
    assert (ack["seq"], ack["count"]) == (2, 2)
    assert await send(nc, "one-more", 1) == b""


async def test_an_abandoned_batch_is_advised(nc: Client) -> None:
    await create(nc)
    sub = await nc.subscribe("$JS.EVENT.ADVISORY.STREAM.BATCH_ABANDONED.B")
    assert await send(nc, "gap", 1) == b""
    assert error_of(json.loads(await send(nc, "gap", 3))) == INCOMPLETE
    adv = json.loads((await sub.next_msg(timeout=2)).data)
    assert adv["type"] == "io.nats.jetstream.advisory.v1.stream_batch_abandoned"
    assert (adv["stream"], adv["batch"], adv["reason"]) == ("B", "gap", "incomplete")
    assert {"id", "timestamp"} <= set(adv)
    assert await send(nc, "lvl", 1) == b""
    await send(nc, "lvl", 2, Nats_Required_Api_Level="99")
    adv = json.loads((await sub.next_msg(timeout=2)).data)
    assert (adv["batch"], adv["reason"]) == ("lvl", "unsupported")
