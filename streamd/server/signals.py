"""SIGTERM/SIGINT: a graceful stop that is always honoured, and a hard exit when the graceful one hangs.

A hard exit is as safe as a crash, which the store is built for: every acknowledged write is committed already.
The embedded nats-server runs in a session of its own (server/embedded.py), so a terminal's Ctrl-C reaches streamd
only, and streamd stops it last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence

from streamd.server.service import Service
from streamd.server.state import ServiceState

logger = logging.getLogger(__name__)

HARD_EXIT_AFTER = 10.0  # after SIGTERM, the process ends even if the graceful stop has not
LEFTOVER_GRACE = 0.2  # for tasks whose cancellation is under way when the service returns
LEFTOVER_TIMEOUT = 2.0  # after the service stopped, tasks still on the loop are cancelled for at most this long


def install_signal_handlers(
    service: Service, hard_exit_after: float = HARD_EXIT_AFTER, received: Sequence[int] = ()
) -> None:
    """SIGTERM/SIGINT stop the service; it is always honoured.

    A Python-level handler (not loop.add_signal_handler) runs between bytecodes even while a long handler holds the
    event loop; it schedules the graceful stop and starts a watchdog thread that ends the process if the stop has not
    finished after `hard_exit_after` seconds. A second signal, or one after the service has stopped, ends it at
    once. Call from the loop's thread; `received`: signals that came before (handled now, in order).
    """
    loop = asyncio.get_running_loop()
    earlier, received = list(received), []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        if len(received) > 1:
            _hard_exit(service, f"{_name(signum)} again")
        if service.state == ServiceState.CLOSED:
            _hard_exit(service, f"{_name(signum)} after the service stopped", code=0)
        with contextlib.suppress(RuntimeError):  # the loop is closed already: the watchdog below still runs
            loop.call_soon_threadsafe(_begin_stop, service, signum)
        threading.Thread(
            target=_exit_after, args=(service, hard_exit_after), name="streamd-stop-watchdog", daemon=True
        ).start()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    for signum in earlier:
        on_signal(signum, None)


def _name(signum: int) -> str:
    with contextlib.suppress(ValueError):
        return signal.Signals(signum).name
    return f"signal {signum}"


def _begin_stop(service: Service, signum: int) -> None:
    """On the loop (a log call inside the signal handler could interleave with one it interrupted)."""
    logger.info("%s: stopping (a second Ctrl-C or SIGTERM ends streamd at once)", _name(signum))
    service.stop()


async def end_leftover_tasks(timeout: float = LEFTOVER_TIMEOUT) -> list[str]:
    """After the service stopped, no task should be left on the loop; one that is (a library's task that missed its
    cancellation) would keep working after "streamd stopped", and asyncio.run's own cleanup would wait for it
    without end. Each is cancelled again and again for at most `timeout` seconds; their names are returned."""
    current = asyncio.current_task()
    left = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
    if left:  # a task cancelled by the last close step ends at its next turn: only one still running after is left
        await asyncio.wait(left, timeout=LEFTOVER_GRACE)
    deadline = time.monotonic() + timeout
    names: list[str] = []
    while True:
        left = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
        if not left:
            return names
        if not names:
            names = sorted(_describe(task) for task in left)
            logger.warning("tasks still running after the service stopped, cancelled: %s", ", ".join(names))
        if time.monotonic() >= deadline:
            logger.error("tasks that ignored cancellation for %.0fs: %s", timeout, ", ".join(map(_describe, left)))
            return names
        for task in left:
            task.cancel()
        await asyncio.wait(left, timeout=0.05)


def _describe(task: asyncio.Task[object]) -> str:
    coro = task.get_coro()
    return f"{task.get_name()} ({getattr(coro, '__qualname__', coro)})"


def _exit_after(service: Service, seconds: float) -> None:
    """Still alive `seconds` after the signal: the stop hangs (or, once CLOSED, the interpreter's exit does)."""
    time.sleep(seconds)
    if service.state == ServiceState.CLOSED:
        _hard_exit(service, f"the process did not exit {seconds:g}s after the service stopped", code=0)
    _hard_exit(service, f"the graceful stop took over {seconds:g}s")


def _hard_exit(service: Service, why: str, code: int = 1) -> None:
    """End now: committed data is safe (as after a crash); the embedded nats-server is told to stop first."""
    if service.embedded is not None:
        service.embedded.kill_now()
    os.write(2, f"streamd: {why}; exiting now (everything acknowledged is committed)\n".encode())
    os._exit(code)
