"""streamd.transport.leaf against a real core nats-server, with nats-py as the receiving client (no mocks)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from streamd.server.embedded import nats_server_binary
from streamd.transport.leaf import LeafConnection, LeafError, parse_leaf_url
from tests.helpers import wait_for
from tests.natsd import NatsServer, free_port, run_nats_server

ACK = "$JS.ACK.S.C.1.5.7.1795850919168804187.0"


@pytest.fixture
async def leaf(nats_server: NatsServer) -> AsyncIterator[LeafConnection]:
    conn = await LeafConnection.connect(f"nats-leaf://127.0.0.1:{nats_server.leaf_port}")
    yield conn
    await conn.close()


@pytest.fixture
async def receiver(nats_server: NatsServer) -> AsyncIterator[Client]:
    """A plain nats-py client on the hub (no streamd involved)."""
    client = await nats.connect(nats_server.url)
    yield client
    with contextlib.suppress(Exception):
        await client.close()


async def collect(client: Client, subject: str, queue: str = "") -> tuple[Subscription, list[Msg]]:
    got: list[Msg] = []

    async def cb(msg: Msg) -> None:
        got.append(msg)

    sub = await client.subscribe(subject, queue=queue, cb=cb)
    await client.flush()
    return sub, got


def write_conf(workdir: Path, conf_text: str) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "custom.conf"
    conf.write_text(conf_text)
    return conf


@contextlib.asynccontextmanager
async def custom_server(workdir: Path, conf_text: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """A nats-server with a hand-written config (tests.natsd only writes its fixed one)."""
    conf = write_conf(workdir, conf_text)
    proc = await asyncio.create_subprocess_exec(
        nats_server_binary(), "-c", str(conf), stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL
    )
    assert proc.stderr is not None
    drain: asyncio.Task[bytes] | None = None
    try:
        async with asyncio.timeout(15):
            while b"Server is ready" not in (line := await proc.stderr.readline()):
                assert line, "nats-server exited"
        drain = asyncio.create_task(proc.stderr.read())
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
        if drain is not None:
            await drain


def test_parse_leaf_url() -> None:
    assert parse_leaf_url("nats-leaf://127.0.0.1:7000") == ("127.0.0.1", 7000, "", "", False)
    assert parse_leaf_url("nats://u:p%40ss@host:1") == ("host", 1, "u", "p@ss", False)
    assert parse_leaf_url("localhost:9") == ("localhost", 9, "", "", False)
    assert parse_leaf_url("tls://[::1]") == ("::1", 7422, "", "", True)


async def test_handshake_and_flush(leaf: LeafConnection) -> None:
    assert leaf.connected
    assert leaf.max_payload == 1024 * 1024
    assert leaf.server_info["remote_account"] == "$G"
    await leaf.flush()
    await leaf.flush()


async def test_delivery_rewrites_subject_and_keeps_headers(leaf: LeafConnection, receiver: Client) -> None:
    events: list[tuple[str, str | None, bool]] = []
    leaf.on_interest(lambda s, q, p: events.append((s, q, p)))
    _, plain = await collect(receiver, "_INBOX.x")
    _, wild = await collect(receiver, "_INBOX.y.*")
    await wait_for(lambda: leaf.has_interest("_INBOX.x") and leaf.has_interest("_INBOX.y.z"))
    assert ("_INBOX.x", None, True) in events and ("_INBOX.y.*", None, True) in events
    assert not leaf.has_interest("_INBOX.y") and not leaf.has_interest("_INBOX.y.z.w")
    assert not leaf.has_interest("_INBOX.xx") and leaf.queue_groups("_INBOX.x") == []
    assert not any(s.startswith(("$LDS.", "$SYS.")) for s in leaf.interest())

    assert leaf.send("_INBOX.x", f"{ACK}@orders.new", b"NATS/1.0\r\nX-A: 1\r\n\r\n", b"order #1")
    assert leaf.send("_INBOX.y.z", None, None, b"no headers")  # LMSG
    assert leaf.send("_INBOX.x", None, b"NATS/1.0 404 No Messages\r\n\r\n", b"")  # header-only status
    await wait_for(lambda: len(plain) == 2 and len(wild) == 1)

    msg = plain[0]
    assert (msg.subject, msg.reply, msg.headers, msg.data) == ("orders.new", ACK, {"X-A": "1"}, b"order #1")
    meta = msg.metadata
    assert (meta.stream, meta.consumer, meta.num_delivered, meta.num_pending) == ("S", "C", 1, 0)
    assert (meta.sequence.stream, meta.sequence.consumer) == (5, 7)
    assert (wild[0].subject, wild[0].reply, wild[0].headers, wild[0].data) == ("_INBOX.y.z", "", None, b"no headers")
    status = plain[1]
    assert (status.subject, status.reply, status.data) == ("_INBOX.x", "", b"")
    assert status.headers == {"Status": "404", "Description": "No Messages"}


async def test_unsubscribe_and_close_remove_interest(leaf: LeafConnection, nats_server: NatsServer) -> None:
    events: list[tuple[str, str | None, bool]] = []
    leaf.on_interest(lambda s, q, p: events.append((s, q, p)))
    client = await nats.connect(nats_server.url)
    sub, _ = await collect(client, "_INBOX.u")
    await collect(client, "foo.>")
    await wait_for(lambda: leaf.has_interest("_INBOX.u") and leaf.has_interest("foo.bar.baz"))
    await sub.unsubscribe()
    await wait_for(lambda: not leaf.has_interest("_INBOX.u"))
    assert ("_INBOX.u", None, False) in events
    await client.close()
    await wait_for(lambda: not leaf.has_interest("foo.bar.baz"))
    assert ("foo.>", None, False) in events
    assert leaf.interest() == {}


async def test_queue_group_needs_queue_names(leaf: LeafConnection, nats_server: NatsServer) -> None:
    clients = [await nats.connect(nats_server.url) for _ in range(2)]
    try:
        members = [await collect(c, "deliver.q", queue="workers") for c in clients]
        await wait_for(lambda: leaf.interest().get("deliver.q") == {"workers": 2})
        assert leaf.queue_groups("deliver.q") == ["workers"] and leaf.has_interest("deliver.q")
        groups = leaf.queue_groups("deliver.q")
        for i in range(100):  # even: `LMSG subj + reply q size`; odd: `HMSG subj | q hdr total` (no reply)
            if i % 2 == 0:
                leaf.send("deliver.q", f"{ACK}@orders.{i}", None, b"%d" % i, queues=groups)
            else:
                leaf.send("deliver.q", None, b"NATS/1.0\r\nN: %d\r\n\r\n" % i, b"%d" % i, queues=groups)
        await wait_for(lambda: sum(len(got) for _, got in members) == 100)
        received = sorted(int(m.data) for _, got in members for m in got)
        assert received == list(range(100))  # each message reached exactly one member
        for m in (m for _, got in members for m in got):
            if int(m.data) % 2 == 0:
                assert (m.subject, m.reply, m.headers) == (f"orders.{int(m.data)}", ACK, None)
            else:
                assert (m.subject, m.reply, m.headers) == ("deliver.q", "", {"N": m.data.decode()})

        # Without queue names the hub skips every queue subscription of a leaf message: nothing is delivered.
        # Barrier: the hub has handled our messages once flush() returns, and each client's own flush() then proves
        # nothing was queued to it.
        for i in range(100):
            leaf.send("deliver.q", None, None, b"%d" % i)
            leaf.send("deliver.q", None, None, b"%d" % i, queues=["nobody"])
        await leaf.flush()
        for c in clients:
            await c.flush()
        assert [sub.delivered for sub, _ in members] == [len(got) for _, got in members]
        assert sum(sub.delivered for sub, _ in members) == 100

        # Weight updates and the group's end are reported.
        await clients[0].close()
        await wait_for(lambda: leaf.interest().get("deliver.q") == {"workers": 1})
        await clients[1].close()
        await wait_for(lambda: not leaf.has_interest("deliver.q") and leaf.queue_groups("deliver.q") == [])
    finally:
        for c in clients:
            await c.close()


async def test_wildcard_queue_groups(leaf: LeafConnection, receiver: Client) -> None:
    await collect(receiver, "jobs.*", queue="a")
    await collect(receiver, "jobs.>", queue="b")
    await collect(receiver, "jobs.x", queue="a")
    await wait_for(lambda: len(leaf.queue_groups("jobs.x")) == 2)
    assert sorted(leaf.queue_groups("jobs.x")) == ["a", "b"]
    assert leaf.queue_groups("jobs.x.y") == ["b"] and leaf.queue_groups("other") == []


async def test_oversize_refused_locally(leaf: LeafConnection, receiver: Client) -> None:
    _, got = await collect(receiver, "big")
    await wait_for(lambda: leaf.has_interest("big"))
    headers = b"NATS/1.0\r\nX: y\r\n\r\n"
    with pytest.raises(ValueError, match="max_payload"):
        leaf.send("big", None, headers, b"x" * (leaf.max_payload - len(headers) + 1))
    with pytest.raises(ValueError):
        leaf.send("big", None, None, b"x" * (leaf.max_payload + 1))
    assert leaf.send("big", None, headers, b"x" * (leaf.max_payload - len(headers)))  # exactly max_payload is fine
    await leaf.flush()
    assert leaf.connected
    await wait_for(lambda: len(got) == 1)
    assert len(got[0].data) == leaf.max_payload - len(headers)


async def test_messages_from_hub_reach_on_message(leaf: LeafConnection, receiver: Client) -> None:
    got: list[tuple[str, str | None, bytes | None, bytes]] = []
    leaf.on_message = lambda s, r, h, p: got.append((s, r, h, p))
    leaf.subscribe("leafin.>")
    with pytest.raises(ValueError):
        leaf.subscribe("$LDS.abc")
    await leaf.flush()
    await receiver.publish("leafin.a", b"one", reply="_INBOX.r1", headers={"K": "v"})
    await receiver.publish("leafin.b", b"two")
    await receiver.publish("leafin.c", b"")
    await wait_for(lambda: len(got) == 3)
    assert got[0] == ("leafin.a", "_INBOX.r1", b"NATS/1.0\r\nK: v\r\n\r\n", b"one")
    assert got[1:] == [("leafin.b", None, None, b"two"), ("leafin.c", None, None, b"")]
    leaf.unsubscribe("leafin.>")
    await leaf.flush()
    await receiver.publish("leafin.d", b"gone")
    await receiver.flush()
    await leaf.flush()
    assert len(got) == 3 and leaf.connected


async def test_reconnect_relearns_interest(tmp_path: Path) -> None:
    port, leaf_port = free_port(), free_port()
    events: list[tuple[str, str | None, bool]] = []
    hooks: list[str] = []
    async with run_nats_server(tmp_path / "a", port=port, leaf_port=leaf_port) as server:
        leaf = await LeafConnection.connect(
            f"127.0.0.1:{leaf_port}",
            on_reconnect=lambda: hooks.append("reconnect"),
            on_disconnect=lambda: hooks.append("disconnect"),
        )
        leaf.on_interest(lambda s, q, p: events.append((s, q, p)))
        client = await nats.connect(server.url, reconnect_time_wait=0.1, max_reconnect_attempts=-1)
        got: list[Msg] = []

        async def cb(msg: Msg) -> None:
            got.append(msg)

        await client.subscribe("_INBOX.r", cb=cb)
        oneshot = await nats.connect(server.url, allow_reconnect=False)
        await oneshot.subscribe("_INBOX.gone")
        await oneshot.flush()
        await wait_for(lambda: leaf.has_interest("_INBOX.r") and leaf.has_interest("_INBOX.gone"))
    try:
        await wait_for(lambda: not leaf.connected)
        assert hooks == ["disconnect"]
        assert not leaf.send("_INBOX.r", None, None, b"dropped")
        with pytest.raises(LeafError):
            await leaf.flush()
        async with run_nats_server(tmp_path / "b", port=port, leaf_port=leaf_port):
            await leaf.wait_connected(timeout=10)
            assert hooks == ["disconnect", "reconnect"]
            await wait_for(lambda: leaf.has_interest("_INBOX.r"), timeout=10)  # client re-subscribed
            assert not leaf.has_interest("_INBOX.gone") and ("_INBOX.gone", None, False) in events
            assert leaf.send("_INBOX.r", f"{ACK}@orders.again", None, b"after")
            await wait_for(lambda: len(got) == 1)
            assert (got[0].subject, got[0].reply, got[0].data) == ("orders.again", ACK, b"after")
    finally:
        await leaf.close()
        await client.close()
        await oneshot.close()


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_tls(tmp_path: Path, self_signed: tuple[Path, Path]) -> None:
    cert, key = self_signed
    port, leaf_port = free_port(), free_port()
    conf = (
        f"listen: 127.0.0.1:{port}\n"
        f'leafnodes {{ listen: 127.0.0.1:{leaf_port}, tls {{ cert_file: "{cert}", key_file: "{key}" }} }}\n'
    )
    async with custom_server(tmp_path / "tls", conf):
        tls = ssl.create_default_context(cafile=str(cert))
        async with await LeafConnection.connect(f"127.0.0.1:{leaf_port}", tls=tls) as leaf:
            await leaf.flush()
            client = await nats.connect(f"nats://127.0.0.1:{port}")
            _, got = await collect(client, "_INBOX.tls")
            await wait_for(lambda: leaf.has_interest("_INBOX.tls"))
            leaf.send("_INBOX.tls", f"{ACK}@orders.tls", None, b"secure")
            await wait_for(lambda: len(got) == 1)
            assert (got[0].subject, got[0].data) == ("orders.tls", b"secure")
            await client.close()
        with pytest.raises(LeafError, match="requires TLS"):
            await LeafConnection.connect(f"127.0.0.1:{leaf_port}")


async def test_auth(tmp_path: Path) -> None:
    port, leaf_port = free_port(), free_port()
    conf = (
        f"listen: 127.0.0.1:{port}\n"
        f'leafnodes {{ listen: 127.0.0.1:{leaf_port}, authorization {{ user: streamd, password: "s3cret" }} }}\n'
    )
    async with custom_server(tmp_path / "auth", conf):
        url = f"nats-leaf://127.0.0.1:{leaf_port}"
        async with await LeafConnection.connect(url, user="streamd", password="s3cret") as leaf:
            await leaf.flush()
            client = await nats.connect(f"nats://127.0.0.1:{port}")
            _, got = await collect(client, "_INBOX.auth")
            await wait_for(lambda: leaf.has_interest("_INBOX.auth"))
            leaf.send("_INBOX.auth", f"{ACK}@orders.auth", None, b"ok")
            await wait_for(lambda: len(got) == 1)
            assert got[0].subject == "orders.auth"
            await client.close()
        async with await LeafConnection.connect(f"nats-leaf://streamd:s3cret@127.0.0.1:{leaf_port}") as leaf:
            assert leaf.connected
        for user, password in (("streamd", "wrong"), ("", "")):
            start = time.monotonic()
            with pytest.raises(LeafError, match="Authorization Violation") as info:
                await LeafConnection.connect(url, user=user, password=password)
            assert time.monotonic() - start < 2
            assert "wrong" not in str(info.value)


async def test_throughput_in_order(leaf: LeafConnection, receiver: Client) -> None:
    _, got = await collect(receiver, "_INBOX.fast")
    await wait_for(lambda: leaf.has_interest("_INBOX.fast"))
    total = 50_000
    for i in range(total):
        leaf.send("_INBOX.fast", f"{ACK}@orders.fast", None, b"%d" % i)
        if i % 1000 == 999:
            await leaf.wait_writable()
    await leaf.flush(timeout=20)
    await wait_for(lambda: len(got) == total, timeout=20)
    assert [int(m.data) for m in got] == list(range(total))
    assert got[-1].subject == "orders.fast"


async def test_back_pressure_small_buffer(nats_server: NatsServer, receiver: Client) -> None:
    _, got = await collect(receiver, "_INBOX.bp")
    async with await LeafConnection.connect(f"127.0.0.1:{nats_server.leaf_port}", write_buffer_limit=4096) as leaf:
        await wait_for(lambda: leaf.has_interest("_INBOX.bp"))
        for i in range(2000):
            leaf.send("_INBOX.bp", None, None, b"y" * 100 + b"%d" % i)
            await leaf.wait_writable()
            assert leaf.pending_bytes < 4096 + 64 * 1024 + 200
        await wait_for(lambda: len(got) == 2000)


def process_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


async def test_stale_hub_detected_by_pings(nats_server: NatsServer, receiver: Client) -> None:
    hooks: list[str] = []
    leaf = await LeafConnection.connect(
        f"127.0.0.1:{nats_server.leaf_port}",
        ping_interval=0.1,
        max_outstanding_pings=2,
        connect_timeout=1.0,
        on_disconnect=lambda: hooks.append("disconnect"),
        on_reconnect=lambda: hooks.append("reconnect"),
    )
    _, got = await collect(receiver, "_INBOX.stale")
    await wait_for(lambda: leaf.has_interest("_INBOX.stale"))
    pid = nats_server.process.pid
    os.kill(pid, signal.SIGSTOP)  # the hub stops answering, TCP stays up
    try:
        await wait_for(lambda: process_state(pid) == "T")  # SIGSTOP is asynchronous
        with pytest.raises(TimeoutError):
            await leaf.flush(timeout=0.05)
        await wait_for(lambda: hooks == ["disconnect"])
        assert not leaf.connected
    finally:
        os.kill(pid, signal.SIGCONT)
    try:
        await leaf.wait_connected(timeout=10)
        assert hooks == ["disconnect", "reconnect"]
        await wait_for(lambda: leaf.has_interest("_INBOX.stale"))
        leaf.send("_INBOX.stale", None, None, b"alive")
        await wait_for(lambda: len(got) == 1)
    finally:
        await leaf.close()
