"""DIRECT.GET with `batch` (issue 11: every request the real server answers gets its answer): up to `batch`
messages, each with Nats-Num-Pending and Nats-Last-Sequence, then a `204 EOB` status; expectations observed
from nats-server 2.15.1 (the `jetstream` run proves them). `multi_last` is not served yet (see the report)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

Row = tuple[str | None, str | None, str | None, bytes]


async def batch(nc: Client, body: dict[str, Any]) -> list[Row]:
    """(Nats-Sequence or status, Nats-Num-Pending, Nats-Last-Sequence, payload) of every reply up to the first
    status (the EOB, or an error)."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish("$JS.API.DIRECT.GET.B", json.dumps(body).encode(), reply=inbox)
    rows: list[Row] = []
    status = None
    while status is None:
        msg = await sub.next_msg(timeout=2)
        h = dict(msg.headers or {})
        status = h.get("Status")
        rows.append(
            (h.get("Nats-Sequence") or status, h.get("Nats-Num-Pending"), h.get("Nats-Last-Sequence"), msg.data)
        )
    await sub.unsubscribe()
    return rows


CASES: list[tuple[dict[str, Any], list[Row]]] = [
    (
        {"seq": 1, "batch": 3},
        [("1", "4", "0", b"m0"), ("2", "3", "1", b"m1"), ("3", "2", "2", b"m2"), ("204", "2", "3", b"")],
    ),
    (
        {"next_by_subj": "b.1", "seq": 1, "batch": 5},
        [("2", "1", "0", b"m1"), ("4", "0", "2", b"m3"), ("204", "0", "4", b"")],
    ),
    ({"seq": 4, "batch": 5, "max_bytes": 10}, [("4", "1", "0", b"m3"), ("5", "0", "4", b"m4"), ("204", "0", "5", b"")]),
    ({"seq": 1, "batch": 1, "max_bytes": 1}, [("1", "4", "0", b"m0"), ("204", "4", "1", b"")]),
    (
        {"next_by_subj": "b.*", "seq": 3, "batch": 10},
        [("3", "2", "0", b"m2"), ("4", "1", "3", b"m3"), ("5", "0", "4", b"m4"), ("204", "0", "5", b"")],
    ),
    (
        {"start_time": "2000-01-01T00:00:00Z", "batch": 2},
        [("1", "4", "0", b"m0"), ("2", "3", "1", b"m1"), ("204", "3", "2", b"")],
    ),
    ({"seq": 9, "batch": 2}, [("404", None, None, b"")]),
    ({"seq": 2, "batch": -1}, [("204", "4", "0", b"")]),
    ({"next_by_subj": "zz", "batch": 2}, [("404", None, None, b"")]),
    ({"last_by_subj": "b.1", "batch": 2}, [("408", None, None, b"")]),
    ({"seq": 1, "start_time": "2000-01-01T00:00:00Z"}, [("408", None, None, b"")]),
    ({"start_time": "2000-01-01T00:00:00Z"}, [("1", None, None, b"m0")]),
]


@pytest.mark.parametrize(("body", "want"), CASES, ids=lambda v: json.dumps(v) if isinstance(v, dict) else "")
async def test_direct_get_batches(nc: Client, js: JetStreamContext, body: dict[str, Any], want: list[Row]) -> None:
    await js.add_stream(name="B", subjects=["b.>"], allow_direct=True)
    for i in range(5):
        await js.publish(f"b.{i % 2}", f"m{i}".encode())
    rows = await batch(nc, body) if "batch" in body else await _single(nc, body)
    assert rows == want


async def _single(nc: Client, body: dict[str, Any]) -> list[Row]:
    msg = await nc.request("$JS.API.DIRECT.GET.B", json.dumps(body).encode(), timeout=2)
    h = dict(msg.headers or {})
    return [
        (h.get("Nats-Sequence") or h.get("Status"), h.get("Nats-Num-Pending"), h.get("Nats-Last-Sequence"), msg.data)
    ]


async def test_a_batch_without_headers(nc: Client, js: JetStreamContext) -> None:
    """no_hdr: bare payloads; the EOB's pending is the count before the batch (the server counts down only while
    it writes headers)."""
    await js.add_stream(name="B", subjects=["b.>"], allow_direct=True)
    for i in range(5):
        await js.publish(f"b.{i % 2}", f"m{i}".encode())
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish("$JS.API.DIRECT.GET.B", b'{"seq": 2, "batch": 2, "no_hdr": true}', reply=inbox)
    got = [await sub.next_msg(timeout=2) for _ in range(3)]
    assert [(m.data, m.headers) for m in got[:2]] == [(b"m1", None), (b"m2", None)]
    eob = dict(got[2].headers or {})
    assert (eob.get("Status"), eob.get("Nats-Num-Pending"), eob.get("Nats-Last-Sequence")) == ("204", "4", "3")


@pytest.mark.parametrize("subject", ["$JS.API.DIRECT.GET.B", "$JS.API.DIRECT.GET.B.b.1"])
async def test_direct_get_honours_the_required_api_level(nc: Client, js: JetStreamContext, subject: str) -> None:
    """A level above INFO's api.level gets `412 Required Api Level` (and a level it reaches the message)."""
    await js.add_stream(name="B", subjects=["b.>"], allow_direct=True)
    await js.publish("b.1", b"x")
    level = json.loads((await nc.request("$JS.API.INFO", b"", timeout=2)).data)["api"]["level"]
    body = b"" if subject.endswith("b.1") else b'{"seq": 1}'
    refused = await nc.request(subject, body, timeout=2, headers={"Nats-Required-Api-Level": str(level + 1)})
    assert list((refused.headers or {}).values()) == ["412", "Required Api Level"] and refused.data == b""
    served = await nc.request(subject, body, timeout=2, headers={"Nats-Required-Api-Level": str(level)})
    assert served.data == b"x"
