from __future__ import annotations

import json
from pathlib import Path

from tests.cli import cli, ok, ok_json, one_line_error
from tests.natsd import NatsServer


async def test_stream_add_info_list(streamd: object, nats_server: NatsServer) -> None:
    url = nats_server.url
    out = await ok(
        url,
        "stream",
        "add",
        "ORDERS",
        "--subject",
        "orders.>",
        "--subject",
        "refunds.*",
        "--max-age",
        "1h",
        "--max-messages",
        "1000",
        "--duplicate-window",
        "30s",
        "--allow-direct",
        "--description",
        "all orders",
    )
    assert "Created stream ORDERS" in out and "Maximum age: 1h" in out and "orders.>, refunds.*" in out
    info = await ok_json(url, "stream", "info", "ORDERS")
    cfg = info["config"]
    assert cfg["max_age"] == 3600 * 10**9 and cfg["max_msgs"] == 1000 and cfg["duplicate_window"] == 30 * 10**9
    assert cfg["allow_direct"] is True and cfg["description"] == "all orders"
    listed = await ok(url, "stream", "list")
    assert "ORDERS" in listed and "Messages" in listed
    assert [s["config"]["name"] for s in await ok_json(url, "stream", "list")] == ["ORDERS"]


async def test_stream_add_from_json_file_and_edit(streamd: object, nats_server: NatsServer, tmp_path: Path) -> None:
    url = nats_server.url
    conf = tmp_path / "s.json"
    conf.write_text(json.dumps({"subjects": ["jobs.>"], "retention": "workqueue", "max_msgs_per_subject": 5}))
    await ok(url, "stream", "add", "JOBS", "--config-file", str(conf))
    out = await ok(url, "stream", "edit", "JOBS", "--max-bytes", "4096", "--description", "queue")
    assert "Changed stream JOBS" in out
    cfg = (await ok_json(url, "stream", "info", "JOBS"))["config"]
    assert (cfg["retention"], cfg["max_msgs_per_subject"], cfg["max_bytes"]) == ("workqueue", 5, 4096)
    assert cfg["description"] == "queue" and cfg["subjects"] == ["jobs.>"]


async def test_publish_get_view_delete_purge(streamd: object, nats_server: NatsServer) -> None:
    url = nats_server.url
    await ok(url, "stream", "add", "ORDERS", "--subject", "orders.>")
    out = await ok(url, "publish", "orders.new", "hello", "--header", "Trace-Id:42")
    assert out.strip() == "Stored in stream ORDERS at sequence 1"
    acks = await ok_json(url, "publish", "orders.bulk", "item {n}", "--count", "3", "--msg-id", "id-{n}")
    assert [a["seq"] for a in acks] == [2, 3, 4]
    again = await ok_json(url, "publish", "orders.bulk", "item 1", "--msg-id", "id-1")
    assert again["duplicate"] is True
    assert (await ok(url, "publish", "orders.stdin", input="from stdin")).strip().endswith("sequence 5")

    msg = await ok_json(url, "stream", "get", "ORDERS", "--sequence", "1")
    assert msg["data"] == "hello" and msg["headers"]["Trace-Id"] == "42" and msg["subject"] == "orders.new"
    last = await ok(url, "stream", "get", "ORDERS", "--last-for", "orders.bulk")
    assert "[4]" in last and "item 3" in last and "Nats-Msg-Id: id-3" in last
    assert (await ok_json(url, "stream", "get", "ORDERS", "--sequence", "5"))["data"] == "from stdin"

    viewed = await ok_json(url, "stream", "view", "ORDERS", "--last", "2")
    assert [m["seq"] for m in viewed] == [4, 5]
    assert [m["seq"] for m in await ok_json(url, "stream", "view", "ORDERS", "--since", "3")] == [3, 4, 5]
    assert len(await ok_json(url, "stream", "view", "ORDERS", "--since", "1h")) == 5
    text = await ok(url, "stream", "view", "ORDERS")
    assert "Trace-Id: 42" in text and "item 2" in text

    assert "Deleted message 2" in await ok(url, "stream", "delete-message", "ORDERS", "2")
    assert [m["seq"] for m in await ok_json(url, "stream", "view", "ORDERS")] == [1, 3, 4, 5]
    assert "Purged 2 messages" in await ok(url, "stream", "purge", "ORDERS", "--subject", "orders.bulk")
    assert (await ok_json(url, "stream", "purge", "ORDERS", "--keep", "1"))["purged"] == 1
    assert (await ok_json(url, "stream", "info", "ORDERS"))["state"]["messages"] == 1
    assert "Purged 1 messages" in await ok(url, "stream", "purge", "ORDERS", "--force")


async def test_stream_delete_asks_unless_forced(streamd: object, nats_server: NatsServer) -> None:
    url = nats_server.url
    await ok(url, "stream", "add", "A", "--subject", "a")
    await ok(url, "stream", "add", "B", "--subject", "b")
    refused = await cli(url, "stream", "delete", "A", input="n\n")
    assert refused.exit_code == 1 and "Delete stream A" in refused.stdout
    assert "Deleted stream A" in await ok(url, "stream", "delete", "A", input="y\n")
    assert "Deleted stream B" in await ok(url, "stream", "delete", "B", "--force")
    assert "No streams" in await ok(url, "stream", "list")


async def test_user_errors_are_one_line(streamd: object, nats_server: NatsServer) -> None:
    url = nats_server.url
    line = one_line_error(await cli(url, "stream", "info", "NOPE"))
    assert line == "streamd: stream not found (404/10059) — list the streams with `streamd stream list`"
    await ok(url, "stream", "add", "S", "--subject", "s.>")
    line = one_line_error(await cli(url, "stream", "add", "T", "--subject", "s.x"))
    assert "(400/10065)" in line
    line = one_line_error(await cli(url, "stream", "add", "U", "--subject", "u", "--max-age", "soon"))
    assert "Invalid value for '--max-age'" in line and "30s" in line
    line = one_line_error(await cli(url, "stream", "add", "U", "--subject", "u", "--retention", "forever"))
    assert "limits, interest, workqueue" in line
    line = one_line_error(await cli(url, "stream", "add", "U", "--subject", "u", "--max-messages", "many"))
    assert "--max-messages" in line
    line = one_line_error(await cli(url, "stream", "get", "S", "--sequence", "9"))
    assert "(404/10037)" in line
    line = one_line_error(await cli(url, "publish", "nobody.listens", "x"))
    assert "no stream stores subject nobody.listens" in line
    line = one_line_error(await cli("nats://127.0.0.1:1", "stream", "list"))
    assert "cannot connect to nats://127.0.0.1:1" in line
    debug = await cli(url, "stream", "info", "NOPE", "--debug")
    assert debug.exit_code == 1 and debug.exception is not None
