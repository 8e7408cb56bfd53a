"""The same commands against a real nats-server -js: the CLI speaks the JetStream API, not streamd internals."""

from __future__ import annotations

from pathlib import Path

from tests.cli import cli, ok, ok_json, one_line_error
from tests.natsd import NatsServer, run_nats_server


async def test_sample_against_nats_server_js(jetstream_server: NatsServer) -> None:
    url = jetstream_server.url
    await ok(url, "stream", "add", "ORDERS", "--subject", "orders.>", "--max-age", "1h", "--duplicate-window", "1m")
    info = await ok_json(url, "stream", "info", "ORDERS")
    assert info["config"]["max_age"] == 3600 * 10**9 and info["config"]["duplicate_window"] == 60 * 10**9
    assert (await ok(url, "publish", "orders.new", "hello", "--header", "K:V")).strip().endswith("sequence 1")
    await ok(url, "publish", "orders.new", "n{n}", "--count", "2")
    msg = await ok_json(url, "stream", "get", "ORDERS", "--sequence", "1")
    assert msg["data"] == "hello" and msg["headers"]["K"] == "V"
    assert (await ok_json(url, "stream", "get", "ORDERS", "--last-for", "orders.new"))["data"] == "n2"
    assert [m["seq"] for m in await ok_json(url, "stream", "view", "ORDERS", "--last", "2")] == [2, 3]

    await ok(url, "consumer", "add", "ORDERS", "W", "--ack-wait", "30s")
    got = await ok_json(url, "consumer", "next", "ORDERS", "W", "--count", "3")
    assert [m["data"] for m in got] == ["hello", "n1", "n2"]
    info = await ok_json(url, "consumer", "info", "ORDERS", "W")
    assert info["ack_floor"]["stream_seq"] == 3 and info["num_ack_pending"] == 0

    assert "(404/10059)" in one_line_error(await cli(url, "stream", "info", "NOPE"))
    assert "ORDERS" in await ok(url, "report")


async def test_authentication_options(tmp_path: Path) -> None:
    """--user/--password and a TOML file's token reach the server; without them the error says what to check."""
    extra = "authorization { users: [ { user: app, password: s3cret }, { user: other, password: x } ] }\n"
    async with run_nats_server(tmp_path / "auth", jetstream=True, extra=extra) as server:
        assert "No streams" in await ok(server.url, "stream", "list", "--user", "app", "--password", "s3cret")
        conf = tmp_path / "streamd.toml"
        conf.write_text('user = "app"\npassword = "s3cret"\n')
        assert "No streams" in await ok(server.url, "stream", "list", "--config", str(conf))
        line = one_line_error(await cli(server.url, "stream", "list"))
        assert "requires credentials and none were given (authorization violation)" in line
