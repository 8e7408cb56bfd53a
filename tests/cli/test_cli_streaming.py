"""`streamd replay`, `streamd subscribe` and `streamd bench`, against streamd and (replay) nats-server -js."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any

import nats
import pytest
import typer
from typer.testing import CliRunner, Result

from streamd.cli.streaming import percentile, register
from tests.helpers import wait_for
from tests.natsd import NatsServer

app = typer.Typer(no_args_is_help=True)
register(app)


async def cli(server: str, *args: str) -> Result:
    runner = CliRunner(env={"STREAMD_SERVER": None, "STREAMD_CONFIG": None})
    return await asyncio.to_thread(runner.invoke, app, [*args, "--server", server])


async def ok(server: str, *args: str) -> str:
    result = await cli(server, *args)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


def json_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


async def consumer_names(url: str, stream: str) -> list[str]:
    nc = await nats.connect(url)
    try:
        reply = await nc.request(f"$JS.API.CONSUMER.NAMES.{stream}", b"", timeout=5)
        return list(json.loads(reply.data).get("consumers") or [])
    finally:
        await nc.close()


async def stream_names(url: str) -> list[str]:
    nc = await nats.connect(url)
    try:
        reply = await nc.request("$JS.API.STREAM.NAMES", b"", timeout=5)
        return list(json.loads(reply.data).get("streams") or [])
    finally:
        await nc.close()


async def fill_orders(url: str) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(timeout=5)
        await js.add_stream(name="ORDERS", subjects=["orders.>"])
        await js.publish("orders.new", b"one", headers={"Trace-Id": "1"})
        await js.publish("orders.paid", b"two")
        await js.publish("orders.new", b"three")
        await js.publish("orders.shipped", b"four")
    finally:
        await nc.close()


async def check_replay(url: str) -> None:
    out = await ok(url, "replay", "ORDERS")
    assert "[1] " in out and " orders.new\n  Trace-Id: 1\none\n" in out and "[4] " in out
    every = json_lines(await ok(url, "replay", "ORDERS", "--json"))
    assert [m["sequence"] for m in every] == [1, 2, 3, 4]
    assert every[0]["headers"] == {"Trace-Id": "1"} and every[0]["data"] == "one"
    assert every[0]["time"].endswith("Z") and every[0]["subject"] == "orders.new"
    from_3 = json_lines(await ok(url, "replay", "ORDERS", "--sequence", "3", "--json"))
    assert [m["data"] for m in from_3] == ["three", "four"]
    new = json_lines(await ok(url, "replay", "ORDERS", "--subject", "orders.new", "--json"))
    assert [m["sequence"] for m in new] == [1, 3]
    two = json_lines(await ok(url, "replay", "ORDERS", "--subject", "orders.new", "--subject", "orders.paid", "--json"))
    assert [m["sequence"] for m in two] == [1, 2, 3]
    last = json_lines(await ok(url, "replay", "ORDERS", "--last-per-subject", "--json"))
    assert sorted(m["sequence"] for m in last) == [2, 3, 4]
    first_two = json_lines(await ok(url, "replay", "ORDERS", "--count", "2", "--json"))
    assert [m["sequence"] for m in first_two] == [1, 2]
    recent = json_lines(await ok(url, "replay", "ORDERS", "--since", "1h", "--json"))
    assert len(recent) == 4
    assert await consumer_names(url, "ORDERS") == []


async def test_replay(streamd: object, nats_server: NatsServer) -> None:
    await fill_orders(nats_server.url)
    await check_replay(nats_server.url)
    # (nats-server 2.x answers a start time after the last message with every message; streamd with none)
    future = await ok(nats_server.url, "replay", "ORDERS", "--since", "2999-01-01T00:00:00Z")
    assert future == "No messages in stream ORDERS from the chosen start.\n"
    assert await consumer_names(nats_server.url, "ORDERS") == []


async def test_replay_against_nats_server(jetstream_server: NatsServer) -> None:
    await fill_orders(jetstream_server.url)
    await check_replay(jetstream_server.url)


async def test_replay_follow_with_count_sees_new_messages(streamd: object, nats_server: NatsServer) -> None:
    url = nats_server.url
    await fill_orders(url)
    task = asyncio.create_task(ok(url, "replay", "ORDERS", "--follow", "--count", "6", "--json"))
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(timeout=5)
        await asyncio.sleep(0.3)
        await js.publish("orders.new", b"five")
        await js.publish("orders.new", b"six")
        out = await asyncio.wait_for(task, 20)
    finally:
        await nc.close()
    assert [m["data"] for m in json_lines(out)][-2:] == ["five", "six"]
    assert await consumer_names(url, "ORDERS") == []


async def test_replay_errors(streamd: object, nats_server: NatsServer) -> None:
    url = nats_server.url
    missing = await cli(url, "replay", "NOPE")
    assert missing.exit_code == 1 and missing.stderr.startswith("streamd: ") and "stream list" in missing.stderr
    both = await cli(url, "replay", "NOPE", "--sequence", "1", "--last-per-subject")
    assert both.exit_code == 1 and "at most one" in both.stderr
    bad = await cli(url, "replay", "NOPE", "--since", "yesterday")
    assert bad.exit_code == 1 and "invalid --since" in bad.stderr


async def test_replay_ctrl_c_ends_cleanly(streamd: object, nats_server: NatsServer) -> None:
    """A real process following a stream: SIGINT ends it with status 0 and its consumer is gone."""
    url = nats_server.url
    await fill_orders(url)
    code = (
        "import sys, typer; from streamd.cli.streaming import register; app = typer.Typer(); register(app); "
        "app(sys.argv[1:])"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMD_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        "replay",
        "ORDERS",
        "--follow",
        "--server",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    try:
        seen = b""
        async with asyncio.timeout(20):
            while b"four" not in seen:
                seen += await proc.stdout.readline()
        assert len(await consumer_names(url, "ORDERS")) == 1
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err
    assert b"Stopped after 4 messages." in err and b"Traceback" not in err
    assert await consumer_names(url, "ORDERS") == []


async def test_subscribe(streamd: object, nats_server: NatsServer) -> None:
    url = nats_server.url
    task = asyncio.create_task(ok(url, "subscribe", "greet.*", "--count", "3", "--queue", "q", "--json"))
    nc = await nats.connect(url)
    try:
        n = 0

        async def published_until_done() -> bool:
            nonlocal n
            n += 1
            await nc.publish(f"greet.{n}", f"hello {n}".encode(), headers={"K": "v"})
            await nc.flush()
            return task.done()

        await wait_for(published_until_done, timeout=20)
        out = await task
    finally:
        await nc.close()
    got = json_lines(out)
    assert len(got) == 3
    first = int(got[0]["subject"].split(".")[1])
    assert [m["data"] for m in got] == [f"hello {i}" for i in range(first, first + 3)]
    assert got[0]["headers"] == {"K": "v"} and got[0]["reply"] == ""
    text_task = asyncio.create_task(ok(url, "subscribe", "plain", "--count", "1"))
    nc = await nats.connect(url)
    try:

        async def published() -> bool:
            await nc.publish("plain", b"hi there")
            await nc.flush()
            return text_task.done()

        await wait_for(published, timeout=20)
        out = await text_task
    finally:
        await nc.close()
    assert out == "[#1] plain\nhi there\n\n"


@pytest.mark.parametrize("mode", ["publish", "consume", "work-queue"])
async def test_bench(streamd: object, nats_server: NatsServer, mode: str) -> None:
    url = nats_server.url
    result = json.loads(await ok(url, "bench", mode, "--count", "200", "--size", "64", "--workers", "2", "--json"))
    assert result["mode"] == mode and result["messages"] == 200 and result["workers"] == 2
    assert result["messages_per_second"] > 0
    lat = result["latency_microseconds"]
    assert 0 <= lat["p50"] <= lat["p90"] <= lat["p99"]
    text = await ok(url, "bench", mode, "--count", "200")
    assert f"Bench {mode}: 200 messages of 128 bytes" in text and "Latency p99" in text and "microseconds" in text
    assert await stream_names(url) == []


async def test_bench_bad_values(streamd: object, nats_server: NatsServer) -> None:
    result = await cli(nats_server.url, "bench", "publish", "--count", "0")
    assert result.exit_code == 1 and result.stderr == "streamd: --count must be at least 1\n"
    assert await stream_names(nats_server.url) == []


def test_percentile() -> None:
    values = [float(x) for x in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 90), percentile(values, 99)) == (50, 90, 99)
    assert percentile([], 50) == 0 and percentile([7.0], 99) == 7
