from __future__ import annotations

import asyncio

from nats.aio.client import Client

from tests.cli import cli, ok, ok_json, one_line_error
from tests.natsd import NatsServer


async def _orders(url: str, n: int) -> None:
    await ok(url, "stream", "add", "ORDERS", "--subject", "orders.>")
    await ok(url, "publish", "orders.new", "order {n}", "--count", str(n))


async def test_consumer_add_info_list_delete(streamd: object, nats_server: NatsServer) -> None:
    url = nats_server.url
    await _orders(url, 3)
    out = await ok(
        url,
        "consumer",
        "add",
        "ORDERS",
        "WORKER",
        "--filter",
        "orders.new",
        "--ack-wait",
        "30s",
        "--max-deliver",
        "5",
        "--deliver",
        "all",
    )
    assert "Created consumer WORKER on stream ORDERS" in out and "Acknowledgement wait: 30s" in out
    info = await ok_json(url, "consumer", "info", "ORDERS", "WORKER")
    assert info["config"]["ack_wait"] == 30 * 10**9 and info["config"]["max_deliver"] == 5
    assert info["num_pending"] == 3
    await ok(url, "consumer", "add", "ORDERS", "LATEST", "--deliver", "last", "--ack", "none")
    await ok(url, "consumer", "add", "ORDERS", "FROM2", "--deliver", "2")
    assert (await ok_json(url, "consumer", "info", "ORDERS", "FROM2"))["num_pending"] == 2
    listed = await ok(url, "consumer", "list", "ORDERS")
    assert "WORKER" in listed and "LATEST" in listed and "Pending" in listed
    assert sorted(c["name"] for c in await ok_json(url, "consumer", "list", "ORDERS")) == ["FROM2", "LATEST", "WORKER"]
    assert (await cli(url, "consumer", "delete", "ORDERS", "LATEST", input="n\n")).exit_code == 1
    assert "Deleted consumer LATEST" in await ok(url, "consumer", "delete", "ORDERS", "LATEST", input="y\n")
    assert "Deleted consumer FROM2" in await ok(url, "consumer", "delete", "ORDERS", "FROM2", "--force")
    line = one_line_error(await cli(url, "consumer", "info", "ORDERS", "LATEST"))
    assert "(404/10014)" in line and "streamd consumer list" in line
    line = one_line_error(await cli(url, "consumer", "add", "ORDERS", "X", "--ack", "sometimes"))
    assert "explicit, all, none" in line


async def test_consumer_next_ack_nak_term(streamd: object, nats_server: NatsServer) -> None:
    url = nats_server.url
    await _orders(url, 5)
    await ok(url, "consumer", "add", "ORDERS", "W", "--pull", "--ack-wait", "30s")
    first = await ok_json(url, "consumer", "next", "ORDERS", "W", "--count", "2")
    assert [(m["stream_seq"], m["data"], m["reply"]) for m in first] == [(1, "order 1", "ack"), (2, "order 2", "ack")]
    nak = await ok_json(url, "consumer", "next", "ORDERS", "W", "--nak")
    assert nak[0]["stream_seq"] == 3
    again = await ok(url, "consumer", "next", "ORDERS", "W")
    assert "stream sequence 3, delivery 2" in again and "(acknowledged)" in again
    assert "(terminated)" in await ok(url, "consumer", "next", "ORDERS", "W", "--term")
    assert (await ok_json(url, "consumer", "next", "ORDERS", "W", "--no-ack"))[0]["stream_seq"] == 5
    info = await ok_json(url, "consumer", "info", "ORDERS", "W")
    assert (info["num_pending"], info["num_ack_pending"], info["ack_floor"]["stream_seq"]) == (0, 1, 4)
    empty = await ok(url, "consumer", "next", "ORDERS", "W", "--wait", "200ms")
    assert "No message for consumer W" in empty
    line = one_line_error(await cli(url, "consumer", "next", "ORDERS", "W", "--ack", "--nak"))
    assert "one of --ack, --nak" in line


async def test_pause_resume_report_explain(streamd: object, nats_server: NatsServer, nc: Client) -> None:
    url = nats_server.url
    await _orders(url, 2)
    await ok(url, "consumer", "add", "ORDERS", "W", "--max-ack-pending", "1")
    out = await ok(url, "consumer", "pause", "ORDERS", "W", "--for", "10m")
    assert "Paused consumer W of stream ORDERS until" in out
    assert (await ok_json(url, "consumer", "info", "ORDERS", "W"))["paused"] is True
    explained = await ok_json(url, "consumer", "explain", "ORDERS", "W")
    assert any("paused" in r for r in explained["reasons"])
    assert "Resumed consumer W" in await ok(url, "consumer", "resume", "ORDERS", "W")
    assert not (await ok_json(url, "consumer", "info", "ORDERS", "W")).get("paused")
    until = await ok_json(url, "consumer", "pause", "ORDERS", "W", "--until", "2099-01-01T00:00:00Z")
    assert until["paused"] is True
    await ok(url, "consumer", "resume", "ORDERS", "W")

    reasons = (await ok_json(url, "consumer", "explain", "ORDERS", "W"))["reasons"]
    assert any("no pull request is waiting" in r for r in reasons)
    await ok(url, "consumer", "next", "ORDERS", "W", "--no-ack")
    reasons = (await ok_json(url, "consumer", "explain", "ORDERS", "W"))["reasons"]
    assert any("max_ack_pending" in r for r in reasons)
    await ok(url, "consumer", "add", "ORDERS", "NONE", "--filter", "orders.other")
    text = await ok(url, "consumer", "explain", "ORDERS", "NONE")
    assert "matches no stored message" in text and "Nothing is pending" in text

    report = await ok_json(url, "report")
    assert report[0]["stream"] == "ORDERS" and report[0]["messages"] == 2
    by_name = {c["name"]: c for c in report[0]["consumers"]}
    assert by_name["W"]["ack_pending"] == 1 and by_name["W"]["pending"] == 1
    table = await ok(url, "report")
    assert "Awaiting ack" in table and "ORDERS" in table

    # a pull request waiting: explain says nothing holds it back
    await ok(url, "consumer", "add", "ORDERS", "IDLE")
    sub = await nc.jetstream().pull_subscribe_bind("IDLE", "ORDERS")
    fetch = asyncio.create_task(sub.fetch(5, timeout=3))
    await asyncio.sleep(0.3)
    assert "Nothing holds consumer IDLE back" in await ok(url, "consumer", "explain", "ORDERS", "IDLE")
    await fetch


async def test_consumer_edit_changes_only_what_is_given(streamd: object, nats_server: NatsServer) -> None:
    url = nats_server.url
    await _orders(url, 1)
    await ok(url, "consumer", "add", "ORDERS", "EDITME", "--max-deliver", "5")
    info = await ok_json(url, "consumer", "edit", "ORDERS", "EDITME", "--ack-wait", "45s", "--max-ack-pending", "7")
    assert info["config"]["ack_wait"] == 45_000_000_000 and info["config"]["max_ack_pending"] == 7
    assert info["config"]["max_deliver"] == 5
    assert "nothing to change" in one_line_error(await cli(url, "consumer", "edit", "ORDERS", "EDITME"))
