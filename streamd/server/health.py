"""How the service's links are doing: the NATS client callbacks, the leaf's up/down hooks, the health report and
the once-a-second monitor. Kept apart from the lifecycle because it is all about observing, never deciding: the
only thing it changes is the `auth_failed` event the first connect waits on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

import nats.errors

from streamd.api.context import Counters
from streamd.server.settings import redact
from streamd.server.state import ServiceState
from streamd.store.writer import Writer
from streamd.transport.connection import Connection
from streamd.transport.leaf import LeafConnection
from streamd.wire import timefmt
from streamd.wire.models import Health

logger = logging.getLogger(__name__)

DOWN_WARNING_EVERY = 5.0  # seconds between "not connected" warnings


class Links(Protocol):
    """What the watch reads from the service: its state and the connections it holds (None until made)."""

    url: str
    state: ServiceState
    conn: Connection | None
    leaf: LeafConnection | None
    writer: Writer | None


class LinkWatch:
    """Remembers when each link went down and the last error, so health and warnings can say since when and why."""

    def __init__(self, links: Links, stats: Counters) -> None:
        self._links = links
        self._stats = stats
        self.auth_failed = asyncio.Event()
        self._down_since: float | None = None  # monotonic time the client connection was lost
        self._leaf_down_since: float | None = None
        self._down_warned = 0.0
        self._last_error = ""
        self._last_error_at = 0.0

    # ---- the NATS client's callbacks ---------------------------------------------------------------------

    async def on_error(self, exc: Exception) -> None:
        if "Authorization Violation" in str(exc) and self._links.state == ServiceState.STARTING:
            self.auth_failed.set()
            return
        self._note_error(f"nats: {exc}")
        if isinstance(exc, nats.errors.SlowConsumerError):
            self._stats.slow_consumer_events += 1
            logger.error("slow consumer on %s: a message was dropped by the client", exc.subject)
            return
        if self._down_since is not None and self._links.state == ServiceState.RUNNING:
            # each failed reconnect attempt: the monitor's rate-limited warning reports the latest one
            logger.debug("nats: %s", exc)
            return
        logger.warning("nats: %s", exc)

    async def on_disconnect(self) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
        if self._links.state != ServiceState.RUNNING:
            return
        url = redact(self._links.url)
        if time.monotonic() - self._last_error_at > 2:  # else keep the error that caused it
            self._note_error(f"disconnected from {url}")
        logger.warning("disconnected from %s; data is kept, reconnecting", url)

    async def on_reconnect(self) -> None:
        down = time.monotonic() - self._down_since if self._down_since is not None else 0.0
        self._down_since = None
        logger.info("reconnected to %s after %.1fs", redact(self._links.url), down)

    # ---- the leaf's hooks ---------------------------------------------------------------------------------

    def on_leaf_down(self) -> None:
        self._leaf_down_since = time.monotonic()
        self._note_error("leaf connection lost")

    def on_leaf_up(self) -> None:
        self._leaf_down_since = None
        logger.info("leaf connection back; consumer deliveries resume")

    def _note_error(self, text: str) -> None:
        self._last_error = f"{timefmt.format_ns(time.time_ns())} {text}"
        self._last_error_at = time.monotonic()

    # ---- health -------------------------------------------------------------------------------------------

    def health(self) -> Health:
        """Can streamd serve right now (shown in $JS.API.INFO's streamd block; for a later health endpoint)."""
        conn, leaf, writer = self._links.conn, self._links.leaf, self._links.writer
        store_error = writer.commit_error if writer is not None else ""
        down = time.monotonic() - self._down_since if self._down_since is not None else 0.0
        return Health(
            connected=conn is not None and conn.is_connected,
            leaf_connected=leaf is not None and leaf.connected,
            store_writable=not store_error,
            last_error=self._last_error if not store_error else store_error,
            disconnected_seconds=round(down, 1),
            reconnects=int(conn.stats["reconnects"]) if conn is not None else 0,
        )

    async def monitor_loop(self) -> None:
        """Once a second: restart a NATS reader that stopped by itself, warn (rate-limited) while not connected."""
        while True:
            await asyncio.sleep(1.0)
            conn = self._links.conn
            if conn is not None:
                try:
                    await conn.check_reader()
                except Exception:
                    logger.exception("restarting the NATS reader failed")
            self._warn_if_down()

    def _warn_if_down(self) -> None:
        now = time.monotonic()
        if now - self._down_warned < DOWN_WARNING_EVERY:
            return
        conn, leaf = self._links.conn, self._links.leaf
        if conn is not None and not conn.is_connected:
            since = now - (self._down_since or now)
            logger.warning(
                "not connected to NATS at %s for %.0fs: no API answers, publishes or acks until it is back "
                "(reconnecting; last error: %s)",
                redact(self._links.url),
                since,
                self._last_error or "none",
            )
            self._down_warned = now
        elif leaf is not None and not leaf.connected:
            since = now - (self._leaf_down_since or now)
            logger.warning("leaf connection down for %.0fs: consumer deliveries wait (reconnecting)", since)
            self._down_warned = now
