"""Differential conformance: message counters (`allow_msg_counter`, `Nats-Incr`), JetStream vs streamd."""

from __future__ import annotations

import base64
import json
from typing import Any

from nats.aio.client import Client

from tests.conformance.util import api, error_of
from tests.helpers import wait_for


async def incr(nc: Client, subject: str, value: str | None, data: bytes = b"", **hdrs: str) -> dict[str, Any]:
    h = {k.replace("_", "-"): v for k, v in hdrs.items()}
    if value is not None:
        h["Nats-Incr"] = value
    msg = await nc.request(subject, data, timeout=2, headers=h or None)
    reply: dict[str, Any] = json.loads(msg.data)
    return reply


async def test_increments_store_totals_and_ack_them(nc: Client) -> None:
    reply = await api(nc, "$JS.API.STREAM.CREATE.C", {"name": "C", "subjects": ["c.>"], "allow_msg_counter": True})
    assert reply["config"]["allow_msg_counter"] is True
    assert reply["config"]["metadata"]["_nats.req.level"] == "2"
    assert await incr(nc, "c.a", "5") == {"stream": "C", "seq": 1, "val": "5"}
    assert await incr(nc, "c.a", "-7") == {"stream": "C", "seq": 2, "val": "-2"}
    assert await incr(nc, "c.b", "+1") == {"stream": "C", "seq": 3, "val": "1"}
    big = "9" * 40
    assert (await incr(nc, "c.b", big))["val"] == "1" + "0" * 40
    got = await api(nc, "$JS.API.STREAM.MSG.GET.C", {"last_by_subj": "c.a"})
    assert base64.b64decode(got["message"]["data"]) == b'{"val":"-2"}'
    for value, data, hdrs, want in [
        (None, b"", {}, (400, 10169, "message counter increment is missing")),
        ("", b"", {}, (400, 10169, "message counter increment is missing")),
        ("1", b"x", {}, (400, 10170, "message counter has payload")),
        ("1.5", b"", {}, (400, 10171, "message counter increment is invalid")),
        ("1_0", b"", {}, (400, 10171, "message counter increment is invalid")),
        ("1", b"", {"Nats_Expected_Last_Sequence": "4"}, (400, 10171, "message counter increment is invalid")),
        ("1", b"", {"Nats_Rollup": "sub"}, (400, 10171, "message counter increment is invalid")),
        ("1", b"", {"Nats_TTL": "1h"}, (400, 10166, "per-message TTL is disabled")),
    ]:
        r = await incr(nc, "c.a", value, data, **hdrs)
        assert "error" in r and error_of(r) == want, (value, data, hdrs, r)


async def test_increments_in_an_atomic_batch_add_up(nc: Client) -> None:
    cfg = {"name": "C", "subjects": ["c.>"], "allow_msg_counter": True, "allow_atomic": True}
    assert "error" not in await api(nc, "$JS.API.STREAM.CREATE.C", cfg)
    assert await incr(nc, "c.a", "10") == {"stream": "C", "seq": 1, "val": "10"}
    batch = {"Nats_Batch_Id": "b"}
    staged = {"Nats-Incr": "1", "Nats-Batch-Id": "b", "Nats-Batch-Sequence": "1"}
    assert (await nc.request("c.a", b"", timeout=2, headers=staged)).data == b""
    ack = await incr(nc, "c.a", "2", **batch, Nats_Batch_Sequence="2", Nats_Batch_Commit="1")
    assert ack == {"stream": "C", "seq": 3, "batch": "b", "count": 2}
    got = await api(nc, "$JS.API.STREAM.MSG.GET.C", {"last_by_subj": "c.a"})
    assert base64.b64decode(got["message"]["data"]) == b'{"val":"13"}'
    staged = {"Nats-Incr": "1", "Nats-Batch-Id": "b", "Nats-Batch-Sequence": "1"}
    assert (await nc.request("c.a", b"", timeout=2, headers=staged)).data == b""
    refused = await incr(nc, "c.a", "1", b"payload", **batch, Nats_Batch_Sequence="2", Nats_Batch_Commit="1")
    assert error_of(refused) == (400, 10170, "message counter has payload")
    assert (await api(nc, "$JS.API.STREAM.INFO.C"))["state"]["messages"] == 3


async def test_increment_on_a_stream_without_counters(nc: Client) -> None:
    await api(nc, "$JS.API.STREAM.CREATE.P", {"name": "P", "subjects": ["p.>"]})
    assert error_of(await incr(nc, "p.a", "1")) == (400, 10168, "message counters is disabled")
    assert error_of(await incr(nc, "p.a", "one")) == (400, 10171, "message counter increment is invalid")
    assert (await incr(nc, "p.a", "", b"x")) == {"stream": "P", "seq": 1}  # an empty Nats-Incr is no increment


async def test_counter_config_rules(nc: Client) -> None:
    base = {"name": "C", "subjects": ["c.>"], "allow_msg_counter": True}
    for extra, text in [
        ({"discard": "new"}, "counter stream cannot use discard new"),
        ({"allow_msg_ttl": True}, "counter stream cannot use message TTLs"),
        ({"retention": "workqueue"}, "counter stream can only use limits retention"),
    ]:
        reply = await api(nc, "$JS.API.STREAM.CREATE.C", {**base, **extra})
        assert error_of(reply) == (500, 10052, text), extra
    await api(nc, "$JS.API.STREAM.CREATE.C", base)
    reply = await api(nc, "$JS.API.STREAM.UPDATE.C", {**base, "allow_msg_counter": False})
    assert error_of(reply) == (500, 10052, "stream configuration update can not change message counter setting")


async def test_a_plain_stream_sourcing_a_counter_stores_it_verbatim(nc: Client) -> None:
    await api(nc, "$JS.API.STREAM.CREATE.C", {"name": "C", "subjects": ["c.>"], "allow_msg_counter": True})
    assert (await incr(nc, "c.a", "3"))["val"] == "3"
    await api(nc, "$JS.API.STREAM.CREATE.S", {"name": "S", "subjects": ["s.>"], "sources": [{"name": "C"}]})

    async def copied() -> bool:
        return (await api(nc, "$JS.API.STREAM.INFO.S"))["state"]["messages"] == 1

    await wait_for(copied)
    got = (await api(nc, "$JS.API.STREAM.MSG.GET.S", {"seq": 1}))["message"]
    assert base64.b64decode(got["data"]) == b'{"val":"3"}'
    assert b"Nats-Incr: 3" in base64.b64decode(got["hdrs"])
    sourcing = {"name": "CS", "subjects": ["cs.>"], "allow_msg_counter": True, "sources": [{"name": "C"}]}
    reply = await api(nc, "$JS.API.STREAM.CREATE.CS", sourcing)
    assert "error" not in reply or reply["error"]["err_code"] == 10052  # served by nats-server, refused by streamd
