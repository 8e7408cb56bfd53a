"""Issue 9: the connections always come back, one instance per API prefix, SIGTERM is always honoured."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from streamd.server.claim import DEFAULT_WINDOW, Announcement, winner
from streamd.server.service import StartupError
from tests.conftest import RunningService, StartService
from tests.helpers import read_until, start_streamd_process, wait_for
from tests.natsd import NatsServer, free_port, run_nats_server

SLOW = "max_pending: 256KB\nmax_payload: 64KB\n"  # a reader that stops is cut off as a slow consumer quickly
NO_AUTH_USER = "no_auth_user: app\n"  # clients without credentials are APP's
ACCOUNTS = """accounts {
  SYS { users [{user: sys, password: sys}] }
  APP { users [{user: app, password: app}] }
}
system_account: SYS
"""
CONF = SLOW + ACCOUNTS + NO_AUTH_USER
LEAF_AUTH = "authorization { user: leaf, password: leaf, account: APP }"


class Harness:
    """A core server on fixed ports (so it can be restarted or reloaded), streamd on it, and a test client."""

    def __init__(self, tmp_path: Path, start_service: StartService) -> None:
        self.tmp_path = tmp_path
        self.start_service = start_service
        self.port, self.leaf_port = free_port(), free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.server: Any = None
        self.nats: NatsServer | None = None
        self.svc: RunningService | None = None
        self.nc: Any = None
        self.js: Any = None
        self.acked: list[int] = []
        self.rounds = 0

    async def start_server(self) -> None:
        self.server = run_nats_server(
            self.tmp_path / f"natsd{self.rounds}",
            port=self.port,
            leaf_port=self.leaf_port,
            extra=CONF,
            leaf_auth=LEAF_AUTH,
        )
        self.rounds += 1
        self.nats = await self.server.__aenter__()

    async def stop_server(self) -> None:
        await self.server.__aexit__(None, None, None)

    async def client(self) -> None:
        if self.nc is not None:
            await self.nc.close()
        self.nc = await nats.connect(self.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        self.js = self.nc.jetstream(timeout=2)

    @property
    def conn(self) -> Any:
        assert self.svc is not None
        return self.svc.service.conn

    def health(self) -> Any:
        assert self.svc is not None
        return self.svc.service.health()

    async def publish_and_consume(self, label: str) -> None:
        """A PubAck and a pull delivery work (retrying while streamd is still reconnecting)."""

        async def published() -> int:
            return int((await self.js.publish("rc.x", label.encode())).seq)

        self.acked.append(await wait_for(published, timeout=30, interval=0.2))
        sub = await self.js.pull_subscribe("rc.x", durable="PULL", stream="RC")

        async def consumed() -> bool:
            for msg in await sub.fetch(10, timeout=1):
                await msg.ack()
                if msg.data == label.encode():
                    return True
            return False

        assert await wait_for(consumed, timeout=30, interval=0.1), label


async def _socket_of(conn: Any) -> socket.socket:
    sock: socket.socket = conn._transport._io_writer.get_extra_info("socket")
    return sock


async def _publish_meanwhile(url: str, acked: dict[int, bytes], stop: asyncio.Event) -> None:
    """Publish distinct messages to stream BG until `stop`, keeping those acknowledged (seq -> payload)."""
    nc = await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    js = nc.jetstream(timeout=1)
    n = 0
    try:
        while not stop.is_set():
            n += 1
            payload = f"bg {n}".encode()
            try:
                acked[(await js.publish("bg.x", payload)).seq] = payload
            except (nats.errors.Error, TimeoutError):  # not acknowledged: no promise was made
                await asyncio.sleep(0.01)  # pacing while streamd or the server is away, not a wait
    finally:
        await nc.close()


async def _kick(h: Harness, kind: str) -> None:
    """Ask the server (as the system account) to kick streamd's connection of this kind (Client or Leafnode)."""
    admin = await nats.connect(h.url, user="sys", password="sys")
    try:
        found = await admin.request("$SYS.REQ.SERVER.PING.CONNZ", b'{"account": "APP"}', timeout=5)
        connz = json.loads(found.data)
        conns = connz["data"]["connections"]
        cid = next(c["cid"] for c in conns if c.get("name") == "streamd" and c.get("kind") == kind)
        subject = f"$SYS.REQ.SERVER.{connz['server']['id']}.KICK"
        kicked = await admin.request(subject, json.dumps({"cid": cid}).encode(), timeout=5)
        assert "error" not in json.loads(kicked.data), kicked.data
    finally:
        await admin.close()


async def _drop(h: Harness, how: Callable[[], Awaitable[None]]) -> None:
    before = h.health().reconnects
    await how()
    await wait_for(lambda: h.health().reconnects > before and h.health().connected, timeout=30, interval=0.05)


@pytest.fixture
async def harness(tmp_path: Path, start_service: StartService) -> AsyncIterator[Harness]:
    h = Harness(tmp_path, start_service)
    await h.start_server()
    try:
        h.svc = await start_service(
            server=h.url, leaf=f"nats-leaf://127.0.0.1:{h.leaf_port}", leaf_user="leaf", leaf_password="leaf"
        )
        await h.client()
        await h.js.add_stream(name="RC", subjects=["rc.>"])
        await h.js.add_stream(name="FLOOD", subjects=["flood"])
        await h.js.add_stream(name="BG", subjects=["bg.>"])
        await h.js.add_consumer("RC", ConsumerConfig(durable_name="PULL", ack_policy=AckPolicy.EXPLICIT, ack_wait=2))
        yield h
    finally:
        if h.nc is not None:
            await h.nc.close()
        if h.svc is not None:
            await h.svc.stop()
        await h.stop_server()


def _client_drops(h: Harness) -> dict[str, Callable[[], Awaitable[None]]]:
    """Every way the client connection was seen to drop, by name."""

    async def bad_frame() -> None:  # a protocol error: the server answers -ERR and closes
        await h.conn._write(b"THIS IS NOT NATS\r\n")

    async def over_max_payload() -> None:  # finding 3: -ERR 'Maximum Payload Violation'
        await h.conn.publish_raw(b"rc.big", b"x" * (80 * 1024))

    async def socket_closed() -> None:  # the TCP connection dies under us
        (await _socket_of(h.conn)).shutdown(socket.SHUT_RDWR)

    async def slow_consumer() -> None:  # the server cuts off a reader that stopped reading
        transport = h.conn._transport._io_writer.transport
        transport.pause_reading()
        flood = await nats.connect(h.url)
        try:
            for _ in range(800):
                await flood.publish("flood", b"f" * 32 * 1024)
            await flood.flush()
        finally:
            await flood.close()
            transport.resume_reading()

    async def system_kick() -> None:  # the system account's KICK request (nats-server >= 2.11)
        await _kick(h, "Client")

    return {
        "bad-frame": bad_frame,
        "max-payload": over_max_payload,
        "socket": socket_closed,
        "slow-consumer": slow_consumer,
        "kick": system_kick,
    }


def _leaf_drops(h: Harness, leaf: Any) -> dict[str, Callable[[], Awaitable[None]]]:
    """Every way the leaf connection alone was seen to drop, by name."""

    async def leaf_abort() -> None:
        assert leaf._session is not None
        leaf._session.writer.transport.abort()

    async def leaf_bad_frame() -> None:
        leaf._out += b"NOT A LEAF FRAME\r\n"
        leaf._wake.set()

    async def leaf_kick() -> None:
        await _kick(h, "Leafnode")

    return {"leaf-abort": leaf_abort, "leaf-bad-frame": leaf_bad_frame, "leaf-kick": leaf_kick}


async def test_every_kind_of_drop_comes_back_and_nothing_acked_is_lost(harness: Harness) -> None:
    h = harness
    await h.publish_and_consume("start")
    acked: dict[int, bytes] = {}
    stop = asyncio.Event()
    publisher = asyncio.create_task(_publish_meanwhile(h.url, acked, stop))

    for name, how in _client_drops(h).items():
        await _drop(h, how)
        await h.publish_and_consume(name)

    # The server restarts: both connections come back (the leaf carries the pull delivery).
    await h.stop_server()
    await wait_for(lambda: not h.health().connected and not h.health().leaf_connected, timeout=10)
    await h.start_server()
    await h.client()
    await wait_for(lambda: h.health().connected and h.health().leaf_connected, timeout=30)
    await h.publish_and_consume("restart")

    # The leaf connection alone: closed under it, and a bad frame on it.
    assert h.svc is not None
    leaf = h.svc.service.leaf
    assert leaf is not None
    assert leaf._session is not None

    for label, how in _leaf_drops(h, leaf).items():
        before = leaf.reconnects
        await how()
        await wait_for(lambda: leaf.reconnects > before and leaf.connected, timeout=30)  # noqa: B023
        await h.publish_and_consume(label)

    # Nothing acknowledged was lost (here or by the publisher running all along), and INFO shows the health block.
    stop.set()
    await publisher
    for seq in h.acked:
        await h.js.get_msg("RC", seq)
    assert acked, "the background publisher never got a PubAck"
    for seq, payload in acked.items():
        assert (await h.js.get_msg("BG", seq)).data == payload
    raw = await h.nc.request("$JS.API.INFO", b"", timeout=5)
    health = json.loads(raw.data)["streamd"]["health"]
    assert health["connected"] and health["leaf_connected"] and health["store_writable"]
    assert health["reconnects"] >= 5


async def test_a_reader_that_stopped_is_restarted(harness: Harness) -> None:
    h = harness
    before = h.health().reconnects
    task = h.conn._reading_task
    task.cancel()  # as if nats-py's read loop had ended on an unexpected error
    await wait_for(lambda: h.health().reconnects > before and h.health().connected, timeout=30)
    await h.publish_and_consume("after-reader")


# ---- one instance per API prefix --------------------------------------------------------------------------------


async def test_two_instances_started_at_the_same_instant_never_both_serve(
    start_service: StartService, tmp_path: Path
) -> None:
    for round_ in range(10):
        results = await asyncio.gather(
            start_service(data=tmp_path / f"a{round_}", claim_window=DEFAULT_WINDOW),
            start_service(data=tmp_path / f"b{round_}", claim_window=DEFAULT_WINDOW),
            return_exceptions=True,
        )
        serving = [r for r in results if isinstance(r, RunningService)]
        refused = [r for r in results if isinstance(r, StartupError)]
        assert len(serving) == 1 and len(refused) == 1, results
        assert "another streamd" in str(refused[0]) and "--domain" in str(refused[0])
        await serving[0].stop()


async def test_a_newcomer_is_refused_by_a_running_instance(
    streamd: RunningService, start_service: StartService, tmp_path: Path
) -> None:
    with pytest.raises(StartupError, match="already answered|another streamd"):
        await start_service(data=tmp_path / "second", claim_window=DEFAULT_WINDOW)
    assert streamd.service.health().connected


# ---- SIGTERM is always honoured --------------------------------------------------------------------------------

EXIT_BOUND = 15.0  # HARD_EXIT_AFTER (10 s) plus process start-up slack: the test fails only if SIGTERM is ignored


async def _serving(tmp_path: Path, server: NatsServer) -> asyncio.subprocess.Process:
    proc = await start_streamd_process(
        "--server", server.url, "--leaf", server.leaf_url, "--data", str(tmp_path / "data")
    )
    await read_until(proc, "streamd serving")
    return proc


async def _exits(proc: asyncio.subprocess.Process) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(EXIT_BOUND):
            await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError("streamd ignored SIGTERM") from None
    assert proc.returncode is not None
    return proc.returncode


async def test_sigterm_after_the_server_is_gone(tmp_path: Path) -> None:
    async with run_nats_server(tmp_path / "natsd") as server:
        proc = await _serving(tmp_path, server)
        server.process.kill()
        await server.process.wait()
        await read_until(proc, "disconnected")
        await read_until(proc, "not connected to NATS")  # the health warning, while it tries to reconnect
    assert await _exits(proc) == 0  # a graceful stop: no step waits for the missing server


async def test_sigterm_while_a_long_request_is_in_flight(tmp_path: Path) -> None:
    async with run_nats_server(tmp_path / "natsd", extra="max_payload: 8MB\n") as server:
        proc = await _serving(tmp_path, server)
        nc = await nats.connect(server.url)
        subjects = [f"s{i}.{j}" for i in range(200) for j in range(100)]  # 20,000 subjects, ~250 kB
        body = json.dumps({"name": "BIG", "subjects": subjects}).encode()
        await nc.publish("$JS.API.STREAM.CREATE.BIG", body, reply=nc.new_inbox())
        await nc.flush()
        with contextlib.suppress(nats.errors.TimeoutError):
            # API requests are handled in order: no INFO answer means the create is still being worked on
            await nc.request("$JS.API.INFO", b"", timeout=1)
        code = await _exits(proc)
        await nc.close()
    assert code in (0, 1), code


@pytest.mark.skipif(sys.platform != "linux", reason="signals as on Linux")
async def test_sigterm_while_waiting_for_a_server_that_never_comes(tmp_path: Path) -> None:
    proc = await start_streamd_process("--server", f"nats://127.0.0.1:{free_port()}", "--data", str(tmp_path / "data"))
    await read_until(proc, "nats:")  # it is trying to connect
    assert await _exits(proc) in (0, 1)


def test_the_tie_break_is_the_same_from_both_sides() -> None:
    a = Announcement(id="a", started=2)
    b = Announcement(id="b", started=1)
    c = Announcement(id="c", started=1)
    assert winner(a, [b]) is b and winner(b, [a]) is b  # the earlier start
    assert winner(b, [c]) is b and winner(c, [b]) is b  # then the smaller id
    running = Announcement(id="z", started=9, state="running")
    assert winner(b, [running, c]) is running  # a running instance always keeps it
