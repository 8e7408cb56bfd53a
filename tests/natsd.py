"""Real nats-server processes for tests: core NATS (what streamd attaches to) and JetStream (the reference)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from streamd.server.embedded import nats_server_binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class NatsServer:
    port: int
    leaf_port: int
    process: asyncio.subprocess.Process
    conf: Path

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def leaf_url(self) -> str:
        return f"nats-leaf://127.0.0.1:{self.leaf_port}"


async def _wait_ready(proc: asyncio.subprocess.Process) -> None:
    assert proc.stderr is not None
    lines: list[str] = []
    while True:
        raw = await proc.stderr.readline()
        if not raw:
            raise RuntimeError("nats-server exited: " + "".join(lines[-5:]))
        lines.append(raw.decode(errors="replace"))
        if b"Server is ready" in raw:
            return


async def _drain(proc: asyncio.subprocess.Process) -> None:
    assert proc.stderr is not None
    while await proc.stderr.readline():
        pass


@contextlib.asynccontextmanager
async def run_nats_server(
    workdir: Path,
    *,
    jetstream: bool = False,
    port: int = 0,
    leaf_port: int = 0,
    extra: str = "",
    leaf_auth: str = "",
) -> AsyncIterator[NatsServer]:
    """A nats-server on loopback; core only unless `jetstream` (then with a store dir under `workdir`).

    Ports picked here can be taken by someone else (e.g. as a client's ephemeral source port) before the server
    binds them; then the start is retried on fresh ports."""
    workdir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (test setup, a local directory)
    for attempt in range(5):
        use_port, use_leaf = port or free_port(), leaf_port or free_port()
        conf = workdir / f"nats-{use_port}.conf"
        text = f"listen: 127.0.0.1:{use_port}\nleafnodes {{\n  listen: 127.0.0.1:{use_leaf}\n  {leaf_auth}\n}}\n"
        if jetstream:
            text += f'jetstream {{ store_dir: "{workdir / "js"}" }}\n'
        conf.write_text(text + extra)
        proc = await asyncio.create_subprocess_exec(
            nats_server_binary(), "-c", str(conf), stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL
        )
        try:
            async with asyncio.timeout(15):
                await _wait_ready(proc)
            break
        except BaseException as exc:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
            port_taken = isinstance(exc, RuntimeError) and "address already in use" in str(exc)
            if not port_taken or (port and leaf_port) or attempt == 4:
                raise
    port, leaf_port = use_port, use_leaf
    drain: asyncio.Task[None] | None = None
    try:
        drain = asyncio.create_task(_drain(proc))
        yield NatsServer(port, leaf_port, proc, conf)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if drain is not None:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain
