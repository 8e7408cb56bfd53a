"""SIGTERM/SIGINT: a graceful stop that is always honoured, and a hard exit when the graceful one hangs.

A hard exit is as safe as a crash, which the store is built for: every acknowledged write is committed already.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time

from streamd.server.service import Service
from streamd.server.state import ServiceState

HARD_EXIT_AFTER = 10.0  # after SIGTERM, the process ends even if the graceful stop has not


def install_signal_handlers(service: Service, hard_exit_after: float = HARD_EXIT_AFTER) -> None:
    """SIGTERM/SIGINT stop the service; it is always honoured.

    A Python-level handler (not loop.add_signal_handler) runs between bytecodes even while a long handler holds the
    event loop; it schedules the graceful stop and starts a watchdog thread that ends the process if the stop has not
    finished after `hard_exit_after` seconds. A second signal ends it at once. Call from the loop's thread.
    """
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        if len(received) > 1:
            _hard_exit(service, "second signal")
        loop.call_soon_threadsafe(service.stop)
        threading.Thread(
            target=_exit_after, args=(service, hard_exit_after), name="streamd-stop-watchdog", daemon=True
        ).start()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)


def _exit_after(service: Service, seconds: float) -> None:
    """Still alive `seconds` after the signal: the stop hangs (or, once CLOSED, the interpreter's exit does)."""
    time.sleep(seconds)
    if service.state == ServiceState.CLOSED:
        _hard_exit(service, f"the process did not exit {seconds:g}s after the service stopped", code=0)
    _hard_exit(service, f"the graceful stop took over {seconds:g}s")


def _hard_exit(service: Service, why: str, code: int = 1) -> None:
    """End now: committed data is safe (as after a crash); the embedded nats-server is told to stop first."""
    proc = service.embedded.proc if service.embedded is not None else None
    if proc is not None and proc.returncode is None:
        with contextlib.suppress(OSError):
            os.kill(proc.pid, signal.SIGTERM)
    os.write(2, f"streamd: {why}; exiting now (everything acknowledged is committed)\n".encode())
    os._exit(code)
