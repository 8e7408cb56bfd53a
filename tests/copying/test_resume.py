"""Exact resumption: a mirror and a source on one streamd process copying from another, each side killed with
SIGKILL mid-copy and restarted; afterwards the copies hold every origin message once, in order."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig

from tests.helpers import drain_stderr, read_until, start_streamd_process, wait_for
from tests.natsd import NatsServer


class _Proc:
    """A streamd process on `domain` that can be killed and started again on the same data."""

    def __init__(self, server: NatsServer, data: Path, domain: str) -> None:
        self.args = ("--server", server.url, "--leaf", server.leaf_url, "--data", str(data), "--domain", domain)
        self.proc: asyncio.subprocess.Process | None = None
        self.drain: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.proc = await start_streamd_process(*self.args)
        await read_until(self.proc, "streamd serving")
        self.drain = asyncio.create_task(drain_stderr(self.proc))

    async def kill(self) -> None:
        assert self.proc is not None and self.drain is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        self.drain.cancel()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()
        if self.drain is not None:
            self.drain.cancel()


async def _api(nc: Client, prefix: str, what: str, body: Any = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else b""
    for _ in range(50):  # right after a restart the API may not answer for a moment
        try:
            reply = await nc.request(f"{prefix}.{what}", data, timeout=2)
            return dict(json.loads(reply.data))
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            await asyncio.sleep(0.1)
    raise AssertionError(f"{prefix}.{what} never answered")


async def _publish(nc: Client, start: int, count: int) -> None:
    for i in range(start, start + count):
        await nc.publish(f"o.{i % 5}", b"m%d" % i, headers={"I": str(i)} if i % 7 == 0 else None)
    await nc.flush()


async def _state(nc: Client, prefix: str, name: str) -> dict[str, Any]:
    return dict((await _api(nc, prefix, f"STREAM.INFO.{name}"))["state"])


async def _all(nc: Client, domain: str, stream: str, n: int) -> list[Any]:
    js = nc.jetstream(domain=domain, timeout=5)
    await js.add_consumer(stream, ConsumerConfig(durable_name="chk", ack_policy=AckPolicy.NONE))
    sub = await js.pull_subscribe_bind("chk", stream)
    out: list[Any] = []
    while len(out) < n:
        out.extend(await sub.fetch(1000, timeout=5))
    return out


async def test_kill_9_on_either_side_resumes_without_gap_or_duplicate(nats_server: NatsServer, tmp_path: Path) -> None:
    origin = _Proc(nats_server, tmp_path / "origin", "hub")
    copier = _Proc(nats_server, tmp_path / "copy", "edge")
    await origin.start()
    await copier.start()
    nc = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
    hub, edge = "$JS.hub.API", "$JS.edge.API"
    try:
        assert "error" not in await _api(nc, hub, "STREAM.CREATE.O", {"name": "O", "subjects": ["o.>"]})
        await _publish(nc, 0, 1200)
        await wait_for(lambda: _last_is(nc, hub, "O", 1200))
        ext = {"api": hub, "deliver": ""}
        await _api(nc, edge, "STREAM.CREATE.M", {"name": "M", "mirror": {"name": "O", "external": ext}})
        await _api(nc, edge, "STREAM.CREATE.S", {"name": "S", "sources": [{"name": "O", "external": ext}]})
        await wait_for(lambda: _last_at_least(nc, edge, "M", 1))
        await copier.kill()  # the copying side dies mid-copy
        await _publish(nc, 1200, 400)
        await wait_for(lambda: _last_is(nc, hub, "O", 1600))
        await copier.start()
        await wait_for(lambda: _last_at_least(nc, edge, "M", 1201), timeout=20)
        await origin.kill()  # the origin dies while the copier runs: it notices the silence, then resumes
        await origin.start()
        await _publish(nc, 1600, 400)
        await wait_for(lambda: _last_is(nc, hub, "O", 2000))
        await wait_for(lambda: _last_is(nc, edge, "M", 2000), timeout=30)
        await wait_for(lambda: _messages_are(nc, edge, "S", 2000), timeout=30)

        mirror_state = await _state(nc, edge, "M")
        assert (mirror_state["messages"], mirror_state["first_seq"]) == (2000, 1)
        theirs = await _all(nc, "hub", "O", 2000)
        mine = await _all(nc, "edge", "M", 2000)
        assert [(m.metadata.sequence.stream, m.subject, m.data, m.headers) for m in mine] == [
            (m.metadata.sequence.stream, m.subject, m.data, m.headers) for m in theirs
        ]
        sourced = await _all(nc, "edge", "S", 2000)
        origin_seqs = [int(m.headers["Nats-Stream-Source"].split(" ")[1]) for m in sourced]
        assert origin_seqs == list(range(1, 2001))  # each origin message once, in order
        assert [m.data for m in sourced] == [m.data for m in theirs]
    finally:
        await nc.close()
        await copier.stop()
        await origin.stop()


async def _last_is(nc: Client, prefix: str, name: str, seq: int) -> bool:
    return (await _state(nc, prefix, name))["last_seq"] == seq


async def _last_at_least(nc: Client, prefix: str, name: str, seq: int) -> bool:
    return (await _state(nc, prefix, name))["last_seq"] >= seq


async def _messages_are(nc: Client, prefix: str, name: str, n: int) -> bool:
    return (await _state(nc, prefix, name))["messages"] == n
