"""deploy/nats-server.conf + deploy/streamd.toml as shipped: a real nats-server and a real `streamd serve` attach.

The only change to the shipped files is the two loopback ports (4222/7422 become free ones, so the test never meets
another server on this machine); the leaf password comes from STREAMD_LEAF_PASSWORD in both processes, as the files
say."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest

from streamd.server.embedded import nats_server_binary
from tests.deploy.shipped import HEALTHCHECK, leaf_password, read, streamd_command, with_ports
from tests.helpers import wait_for
from tests.natsd import free_port

pytestmark = pytest.mark.timeout(60)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any STREAMD_* setting (they would override the files), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMD_")}
    return {**env, **extra}


async def _stop(proc: asyncio.subprocess.Process, timeout: float = 15.0) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(timeout):
            return await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"process {proc.pid} did not stop within {timeout}s of SIGTERM") from None


class Deployment:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port, self.leaf_port = free_port(), free_port()
        self.password = leaf_password()
        ports = {4222: self.port, 7422: self.leaf_port}
        self.conf = workdir / "nats-server.conf"
        self.conf.write_text(with_ports(read("nats-server.conf"), ports))
        self.toml = workdir / "streamd.toml"
        self.toml.write_text(with_ports(read("streamd.toml"), ports))

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def nats_server(dep: Deployment) -> AsyncIterator[asyncio.subprocess.Process]:
    """`nats-server -c deploy/nats-server.conf` with STREAMD_LEAF_PASSWORD in its environment."""
    proc = await asyncio.create_subprocess_exec(
        nats_server_binary(),
        "-c",
        str(dep.conf),
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        env=clean_env(STREAMD_LEAF_PASSWORD=dep.password),
    )
    assert proc.stderr is not None
    lines: list[bytes] = []
    try:
        async with asyncio.timeout(10):
            while not lines or b"Server is ready" not in lines[-1]:
                line = await proc.stderr.readline()
                assert line, "nats-server exited: " + b"".join(lines[-5:]).decode(errors="replace")
                lines.append(line)
        drain = asyncio.create_task(proc.stderr.read())
        yield proc
    finally:
        await _stop(proc)
    await drain


async def start_streamd(dep: Deployment, password: str) -> asyncio.subprocess.Process:
    """`streamd serve --config deploy/streamd.toml` (data in the work dir), leaf password from the environment."""
    return await asyncio.create_subprocess_exec(
        *streamd_command(),
        "serve",
        "--config",
        str(dep.toml),
        "--data",
        str(dep.workdir / "data"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(STREAMD_LEAF_PASSWORD=password),
    )


async def healthcheck(dep: Deployment, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HEALTHCHECK),
        *args,
        stdout=asyncio.subprocess.PIPE,
        env=clean_env(STREAMD_SERVER=dep.url),
    )
    out, _ = await proc.communicate()
    return await proc.wait(), out.decode()


async def test_nats_server_conf_has_no_default_password(tmp_path: Path) -> None:
    """Without STREAMD_LEAF_PASSWORD the shipped server config does not load: there is no fallback password."""
    dep = Deployment(tmp_path)
    proc = await asyncio.create_subprocess_exec(
        nats_server_binary(),
        "-t",
        "-c",
        str(dep.conf),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=clean_env(),
    )
    out, _ = await proc.communicate()
    assert proc.returncode != 0
    assert b"STREAMD_LEAF_PASSWORD" in out


async def test_streamd_attaches_to_shipped_server(tmp_path: Path) -> None:
    dep = Deployment(tmp_path)
    async with nats_server(dep):
        # a wrong leaf password is refused by the server and streamd says so and exits
        wrong = await start_streamd(dep, leaf_password())
        async with asyncio.timeout(20):
            _, err = await wrong.communicate()
        assert wrong.returncode == 1, err.decode()
        assert b"leaf" in err and b"Authorization" in err, err.decode()

        streamd = await start_streamd(dep, dep.password)
        assert streamd.stderr is not None
        log = asyncio.create_task(streamd.stderr.read())
        try:
            nc = await nats.connect(dep.url)
            try:

                async def answers() -> bool:
                    try:
                        await nc.request("$JS.API.INFO", b"", timeout=1)
                    except nats.errors.NoRespondersError:
                        return False
                    return True

                await wait_for(answers, timeout=20, interval=0.1)
                js = nc.jetstream(timeout=5)
                await js.add_stream(name="DEPLOY", subjects=["deploy.>"])
                ack = await js.publish("deploy.hello", b"shipped")
                assert (ack.stream, ack.seq) == ("DEPLOY", 1)
                sub = await js.pull_subscribe("deploy.>", durable="reader")
                (msg,) = await sub.fetch(1, timeout=5)  # delivered over the leaf connection
                assert (msg.subject, msg.data) == ("deploy.hello", b"shipped")
                await msg.ack_sync()
                info = await js.consumer_info("DEPLOY", "reader")
                assert info.num_ack_pending == 0 and info.num_pending == 0
            finally:
                await nc.close()
            assert await healthcheck(dep) == (0, "streamd healthy: connected, leaf up, store writable\n")
            assert (await healthcheck(dep, "--live"))[0] == 0
        finally:
            code = await _stop(streamd)
            text = (await log).decode(errors="replace")
        assert code == 0, text
        assert "leaf connection up" in text and "streamd stopped" in text, text
        assert dep.password not in text  # the secret is never logged
        # nobody answers now: the health check says so in one line and fails
        code, out = await healthcheck(dep)
        assert code == 1 and out.startswith("streamd unhealthy: no $JS.API.INFO answer"), out
