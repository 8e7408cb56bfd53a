"""/metrics and /healthz (--metrics-listen) against a real streamd on a real nats-server: values checked after real
publishes and consumes, health that follows the links, and bad HTTP that must not hurt the service."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import nats
import pytest
from nats.js.api import ConsumerConfig, StreamConfig
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from streamd.cli.app import app
from streamd.server import http
from streamd.server.settings import ServiceConfig, parse_listen
from streamd.server.state import StartupError
from tests.cli import one_line_error
from tests.conftest import RunningService, StartService
from tests.helpers import drain_stderr, read_until, start_streamd_process, wait_for
from tests.natsd import NatsServer, run_nats_server

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def _get(address: str, path: str) -> tuple[int, dict[str, str], bytes]:
    return await _raw(address, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())


async def _raw(address: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    host, port = parse_listen(address)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.read()  # the server closes after one answer
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


async def _scrape(address: str) -> Samples:
    status, headers, body = await _get(address, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def _of(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def _names(samples: Samples, name: str) -> set[tuple[tuple[str, str], ...]]:
    return {labels for n, labels in samples if n == name}


@pytest.fixture
async def metered(start_service: StartService) -> RunningService:
    return await start_service(metrics_listen="127.0.0.1:0")


def _address(running: RunningService) -> str:
    assert running.service.metrics is not None
    return running.service.metrics.address


async def test_metrics_follow_streams_and_consumers(metered: RunningService, nats_server: NatsServer) -> None:
    address = _address(metered)
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream(timeout=5)
        await js.add_stream(StreamConfig(name="ORDERS", subjects=["orders.>"]))
        await js.add_stream(StreamConfig(name="GONE", subjects=["gone"]))
        for i in range(10):
            await js.publish(f"orders.{i}", b"x" * 10)
        await js.publish("gone", b"y")
        with pytest.raises(nats.js.errors.BadRequestError):  # a refusal in the writer: wrong last sequence
            await js.publish("orders.1", b"z", headers={"Nats-Expected-Last-Sequence": "3"})
        await js.add_consumer("ORDERS", ConsumerConfig(durable_name="work", ack_wait=30))
        await js.add_consumer("GONE", ConsumerConfig(durable_name="other"))
        sub = await js.pull_subscribe_bind("work", "ORDERS")
        msgs = await sub.fetch(4, timeout=5)
        for m in msgs[:2]:
            await m.ack_sync()

        s = await _scrape(address)
        assert _of(s, "streamd_stream_messages", stream="ORDERS") == 10
        assert _of(s, "streamd_stream_first_seq", stream="ORDERS") == 1
        assert _of(s, "streamd_stream_last_seq", stream="ORDERS") == 10
        assert _of(s, "streamd_stream_stored_messages_total", stream="ORDERS") == 10
        info = await js.stream_info("ORDERS")
        assert _of(s, "streamd_stream_bytes", stream="ORDERS") == info.state.bytes > 0
        assert _of(s, "streamd_consumer_num_pending", stream="ORDERS", consumer="work") == 6
        assert _of(s, "streamd_consumer_num_ack_pending", stream="ORDERS", consumer="work") == 2
        assert _of(s, "streamd_consumer_num_redelivered", stream="ORDERS", consumer="work") == 0
        assert _of(s, "streamd_consumer_num_waiting", stream="ORDERS", consumer="work") == 0
        assert _of(s, "streamd_consumer_num_pending", stream="GONE", consumer="other") == 1
        assert _of(s, "streamd_ingest_refused_total", reason="wrong_last_sequence") == 1
        assert _of(s, "streamd_ingest_refused_total", reason="writer_queue_full") == 0
        assert _of(s, "streamd_writer_batch_items_count") >= 1
        assert _of(s, "streamd_writer_batch_items_sum") >= 11  # every stored message went through a batch
        assert _of(s, "streamd_writer_commit_seconds_count") == _of(s, "streamd_writer_batch_items_count")
        assert _of(s, "streamd_api_requests_total") >= 5
        assert _of(s, "streamd_api_errors_total") == 0
        assert _of(s, "streamd_streams") == 2 and _of(s, "streamd_consumers") == 2
        for name in ("streamd_up", "streamd_nats_connected", "streamd_leaf_connected", "streamd_store_writable"):
            assert _of(s, name) == 1, name

        with pytest.raises(nats.js.errors.NotFoundError):
            await js.stream_info("NOPE")
        await js.delete_consumer("ORDERS", "work")
        await js.delete_stream("GONE")
        s = await _scrape(address)
        assert _names(s, "streamd_stream_messages") == {(("stream", "ORDERS"),)}  # removed: gone from the output
        assert _names(s, "streamd_consumer_num_pending") == set()
        assert _of(s, "streamd_api_errors_total") == 1
    finally:
        await nc.close()


async def test_a_redelivery_and_a_waiting_pull_request_are_counted(
    metered: RunningService, nats_server: NatsServer
) -> None:
    address = _address(metered)
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream(timeout=5)
        await js.add_stream(StreamConfig(name="S", subjects=["s"]))
        await js.publish("s", b"1")
        await js.add_consumer("S", ConsumerConfig(durable_name="c", ack_wait=30))
        sub = await js.pull_subscribe_bind("c", "S")
        (msg,) = await sub.fetch(1, timeout=5)
        await msg.nak()
        (again,) = await sub.fetch(1, timeout=5)
        assert again.metadata.num_delivered == 2
        s = await _scrape(address)
        assert _of(s, "streamd_consumer_num_redelivered", stream="S", consumer="c") == 1
        assert _of(s, "streamd_consumer_num_ack_pending", stream="S", consumer="c") == 1
        fetch = asyncio.create_task(sub.fetch(1, timeout=5))  # nothing left: the request waits
        try:
            await wait_for(lambda: _waiting(address))
        finally:
            fetch.cancel()
    finally:
        await nc.close()


async def _waiting(address: str) -> bool:
    s = await _scrape(address)
    return _of(s, "streamd_consumer_num_waiting", stream="S", consumer="c") == 1


async def test_healthz_follows_the_server(metered: RunningService, nats_server: NatsServer) -> None:
    address = _address(metered)
    status, headers, body = await _get(address, "/healthz")
    report = json.loads(body)
    assert (status, headers["Content-Type"], report["status"]) == (200, "application/json", "ok"), report
    assert report["connected"] and report["leaf_connected"] and report["store_writable"]

    nats_server.process.terminate()
    await nats_server.process.wait()

    async def unavailable() -> dict[str, object] | None:
        status, _, body = await _get(address, "/healthz")
        report = json.loads(body)
        return report if status == 503 and not report["connected"] and not report["leaf_connected"] else None

    report = await wait_for(unavailable)
    assert report["status"] == "unavailable" and report["store_writable"] is True
    s = await _scrape(address)  # metrics keep answering while NATS is gone
    assert _of(s, "streamd_up") == 0 and _of(s, "streamd_nats_connected") == 0


async def test_healthz_says_when_only_the_leaf_is_down(
    start_service: StartService, nats_server: NatsServer, tmp_path: Path
) -> None:
    async with run_nats_server(tmp_path / "hub") as hub:
        running = await start_service(metrics_listen="127.0.0.1:0", leaf=hub.leaf_url)
        address = _address(running)
        status, _, _ = await _get(address, "/healthz")
        assert status == 200
        hub.process.terminate()
        await hub.process.wait()

        async def leaf_down() -> dict[str, object] | None:
            status, _, body = await _get(address, "/healthz")
            report = json.loads(body)
            return report if status == 503 else None

        report = await wait_for(leaf_down)
        assert report["connected"] is True and report["leaf_connected"] is False, report
        assert _of(await _scrape(address), "streamd_leaf_connected") == 0


async def test_bad_http_gets_an_error_and_streamd_keeps_serving(
    metered: RunningService, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = _address(metered)
    nc = await nats.connect(nats_server.url)
    monkeypatch.setattr(http, "HEAD_TIMEOUT", 0.3)
    huge = b"GET /metrics HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 100_000 + b"\r\n\r\n"
    assert (await _raw(address, huge))[0] == 431
    assert (await _raw(address, b"\x00\x01garbage\r\n\r\n"))[0] == 400
    assert (await _raw(address, b"GET /metrics\r\n\r\n"))[0] == 400
    assert (await _raw(address, b"GET /nothing HTTP/1.1\r\n\r\n"))[0] == 404
    status, headers, _ = await _raw(address, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    status, headers, body = await _raw(address, b"HEAD /healthz HTTP/1.1\r\n\r\n")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0
    assert (await _get(address, "/metrics?name[]=x"))[0] == 200  # a query string is ignored

    # slowloris: many connections trickling a head that never ends, more than the connection limit
    host, port = parse_listen(address)
    slow = [await asyncio.open_connection(host, port) for _ in range(http.MAX_CONNECTIONS + 8)]
    for _, writer in slow:
        writer.write(b"GET /metrics HTTP/1.1\r\nX-A: ")
    js = nc.jetstream(timeout=5)
    await js.add_stream(StreamConfig(name="LIVE", subjects=["live"]))
    assert (await js.publish("live", b"still here")).seq == 1  # NATS side unaffected meanwhile
    answers = [await asyncio.wait_for(reader.read(), 5) for reader, _ in slow]  # each cut off: 408 or closed
    assert all(a == b"" or a.startswith(b"HTTP/1.1 408") for a in answers)
    assert sum(a.startswith(b"HTTP/1.1 408") for a in answers) >= http.MAX_CONNECTIONS - 8
    for _, writer in slow:
        writer.close()
    assert (await _get(address, "/healthz"))[0] == 200
    assert _of(await _scrape(address), "streamd_stream_messages", stream="LIVE") == 1
    await nc.close()


async def test_two_services_in_one_process_have_their_own_metrics(
    start_service: StartService, nats_server: NatsServer, tmp_path: Path
) -> None:
    a = await start_service(metrics_listen="127.0.0.1:0")
    b = await start_service(metrics_listen="127.0.0.1:0", domain="other", data=tmp_path / "b")
    nc = await nats.connect(nats_server.url)
    try:
        await nc.jetstream(timeout=5, domain="other").add_stream(StreamConfig(name="ONLY_B", subjects=["b"]))
    finally:
        await nc.close()
    assert _names(await _scrape(_address(a)), "streamd_stream_messages") == set()
    assert _names(await _scrape(_address(b)), "streamd_stream_messages") == {(("stream", "ONLY_B"),)}


async def test_a_port_in_use_fails_the_start(start_service: StartService, tmp_path: Path) -> None:
    a = await start_service(metrics_listen="127.0.0.1:0")
    with pytest.raises(StartupError, match="metrics-listen"):
        await start_service(metrics_listen=_address(a), domain="second", data=tmp_path / "second")


@pytest.mark.parametrize("value", ["nonsense", "127.0.0.1:", "127.0.0.1:99999", ":x"])
def test_bad_listen_values_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="metrics-listen"):
        ServiceConfig(metrics_listen=value)


def test_listen_values() -> None:
    assert parse_listen("9464") == ("127.0.0.1", 9464)  # a bare port is loopback, never 0.0.0.0
    assert parse_listen("[::1]:9464") == ("::1", 9464)
    assert parse_listen("localhost:0") == ("localhost", 0)


def test_serve_refuses_an_open_metrics_address_without_insecure(tmp_path: Path) -> None:
    runner = CliRunner(env={"STREAMD_SERVER": None, "STREAMD_CONFIG": None, "STREAMD_METRICS_LISTEN": None})
    result = runner.invoke(app, ["serve", "--metrics-listen", "0.0.0.0:9464", "--data", str(tmp_path / "d")])
    line = one_line_error(result)
    assert "no authentication" in line and "--insecure" in line, line
    assert not (tmp_path / "d").exists()


async def test_refusals_are_counted_by_reason(start_service: StartService, nats_server: NatsServer) -> None:
    running = await start_service(metrics_listen="127.0.0.1:0", max_pending_msgs=1)
    address = _address(running)
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream(timeout=5)
        await js.add_stream(StreamConfig(name="FULL", subjects=["full"], max_msgs=1, discard="new"))
        await js.publish("full", b"1")
        with pytest.raises(nats.js.errors.APIError, match="maximum messages exceeded"):
            await js.publish("full", b"2")
        await js.add_stream(StreamConfig(name="BURST", subjects=["burst"]))
        inbox = nc.new_inbox()
        answers = await nc.subscribe(inbox)
        for _ in range(200):  # one flush: they reach streamd together, beyond its queue of 1
            await nc.publish("burst", b"x", reply=inbox)
        await nc.flush()
        refused = 0
        for _ in range(200):
            msg = await answers.next_msg(timeout=5)
            refused += b"insufficient resources" in msg.data
        assert refused > 0
        s = await _scrape(address)
        assert _of(s, "streamd_ingest_refused_total", reason="store_failed") == 1
        assert _of(s, "streamd_ingest_refused_total", reason="writer_queue_full") == refused
        assert _of(s, "streamd_stream_messages", stream="BURST") == 200 - refused
    finally:
        await nc.close()


async def test_streamd_serve_with_metrics_listen(nats_server: NatsServer, tmp_path: Path) -> None:
    """The flag end to end: `streamd serve --metrics-listen 127.0.0.1:0` logs where it listens, and answers there
    until SIGTERM."""
    proc = await start_streamd_process(
        "--server", nats_server.url, "--leaf", nats_server.leaf_url, "--data", str(tmp_path / "d"),
        "--metrics-listen", "127.0.0.1:0",
    )  # fmt: skip
    try:
        lines = await read_until(proc, "streamd serving")
        logged = next(line for line in lines if "/healthz" in line)
        address = re.search(r"health on http://(\S+)/healthz", logged)
        assert address is not None, logged
        status, _, body = await _get(address.group(1), "/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"
        assert _of(await _scrape(address.group(1)), "streamd_up") == 1
    finally:
        if proc.returncode is None:
            proc.terminate()
        drain = asyncio.create_task(drain_stderr(proc))
        assert await asyncio.wait_for(proc.wait(), 15) == 0
        await drain
