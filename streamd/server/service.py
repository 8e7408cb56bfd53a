"""The streamd service: wiring of connection, store, writer, streams and API, and its lifecycle.

Who owns what:
- the event loop runs the nats-py connection, the API handlers (one at a time per subscription, in arrival order;
  server/api_intake.py), the ingest handler (appends to the writer's queue, never blocks; server/ingest.py), the
  retention timer and the reply path;
- one writer thread (``writer.Writer``) runs every LMDB write transaction; stream counters change only there;
- reads (info, message get) use short read transactions on the event loop.

Every background task belongs to one of the service's two nested TaskGroups: the outer one lives as long as the
connections and owns the embedded server's stderr drain and the leaf's supervisor (each stopped by its ``stop`` /
``close`` in the shutdown order below); the inner, serving one owns the writer, the timers, the consumer tasks,
the API workers and large API requests. Nothing is left running on the loop when ``run`` returns.

Shutdown order: stop intake (unsubscribe, then a flush so nothing already sent to us is dropped), let the writer
commit and answer everything queued, close the leaf and NATS connections (a closed connection never reconnects:
transport/connection.py), stop the embedded server (in a session of its own, so a terminal's Ctrl-C does not reach
it first: server/embedded.py), close LMDB.
Every step has a timeout (nothing awaits a server that is gone), and ``signals.install_signal_handlers`` ends the
process outright if the whole stop has not finished ``HARD_EXIT_AFTER`` seconds after SIGTERM, or at a second
signal: every acknowledged write is committed already, so that is as safe as a crash, which the store is built for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from streamd.api.context import ENCODER, Context, Counters
from streamd.consumers.manager import ConsumerManager
from streamd.server.api_intake import ApiIntake
from streamd.server.connect import STEP_TIMEOUT, Connector, bounded
from streamd.server.copier import Copiers
from streamd.server.embedded import EmbeddedServer
from streamd.server.health import LinkWatch
from streamd.server.http import MetricsServer, serve_metrics
from streamd.server.ingest import Ingest
from streamd.server.settings import ServiceConfig, SyncMode, redact
from streamd.server.state import ServiceState, StartupError
from streamd.store import stream as streams
from streamd.store.env import Store
from streamd.store.writer import Writer
from streamd.streams import batching
from streamd.streams.manager import StreamManager
from streamd.transport.connection import Connection
from streamd.transport.leaf import LeafConnection
from streamd.wire import timefmt
from streamd.wire.models import API_PREFIX_TYPE, Health

logger = logging.getLogger(__name__)
_ADVISORY = "$JS.EVENT.ADVISORY.STREAM.{}.{}"
_ACTIONS = {"create": "CREATED", "modify": "UPDATED", "delete": "DELETED"}

DRAIN_TIMEOUT = 5.0  # the writer committing and answering what it took
CONSUMERS_STOP_TIMEOUT = 5.0  # consumers persisting their state and ending their tasks


@dataclass
class _Serving:
    """What the serving phase runs on, made once the store, the connections and the claim are in hand."""

    conn: Connection
    ctx: Context
    writer: Writer
    manager: StreamManager
    consumers: ConsumerManager
    ingest: Ingest
    intake: ApiIntake
    copiers: Copiers


class Service:
    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.state = ServiceState.NEW
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._stopping = threading.Event()  # the same, for work on other threads (the store's layout migration)
        self.registry: dict[str, streams.Stream] = {}
        self.url = ""
        self.conn: Connection | None = None
        self.leaf: LeafConnection | None = None
        self.embedded: EmbeddedServer | None = None
        self.writer: Writer | None = None
        self.stats = Counters()
        self.watch = LinkWatch(self, self.stats)
        self._links = Connector(config, self.watch, self._stop)
        self.ctx: Context | None = None
        self.metrics: MetricsServer | None = None

    def stop(self) -> None:
        self._stop.set()
        self._stopping.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def health(self) -> Health:
        """Can streamd serve right now (shown in $JS.API.INFO's streamd block; for a later health endpoint)."""
        return self.watch.health()

    async def run(self) -> None:
        self.state = ServiceState.STARTING
        store = await self._open_store()
        try:
            async with asyncio.TaskGroup() as tg:
                await self._run_in(tg, store)
        except BaseExceptionGroup as group:
            raise _sole(group) from None
        self.state = ServiceState.CLOSED
        logger.info("streamd stopped")

    async def _open_store(self) -> Store:
        cfg = self.config
        try:
            return await asyncio.to_thread(  # a thread: a layout migration may take a while and must heed SIGTERM
                Store.open,
                cfg.data,
                sync=cfg.sync == SyncMode.ALWAYS,
                map_size=cfg.map_size_mib << 20,
                stop=self._stopping,
            )
        except Exception as exc:
            raise StartupError(str(exc)) from None

    async def _run_in(self, tg: asyncio.TaskGroup, store: Store) -> None:
        cfg = self.config
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(store.close)
            self.metrics = await serve_metrics(self, cfg.metrics_listen, tg, stack)
            conn, leaf = await self._open_links(stack, tg)
            serving = self._assemble(store, conn, leaf)
            if cfg.check_api:
                claim = await self._links.claim_api(conn)
                stack.push_async_callback(claim.release)
                await self._links.check_api_free(conn)  # again: an instance busy past the claim window still holds this
            self.ctx = serving.ctx
            await self._run_serving(serving)

    async def _open_links(
        self, stack: contextlib.AsyncExitStack, tg: asyncio.TaskGroup
    ) -> tuple[Connection, LeafConnection]:
        """The embedded server (if any), the client connection, the leaf; each closed by `stack`, in reverse."""
        links = self._links
        self.embedded = await links.start_embedded(stack, tg)
        self.url = links.url
        conn = await links.connect()
        self.conn = conn
        stack.push_async_callback(links.close_conn, conn)
        if self.config.check_api:
            await links.check_api_free(conn)  # fails fast where nats-server -js answers
        leaf = await links.connect_leaf(tg)
        self.leaf = leaf
        stack.push_async_callback(links.close_leaf, leaf)
        return conn, leaf

    def _assemble(self, store: Store, conn: Connection, leaf: LeafConnection) -> _Serving:
        """Writer, streams and consumers recovered from the store, and the intake paths that feed them."""
        cfg = self.config
        writer = Writer(
            store,
            self.registry,
            conn.publish_many,
            max_batch_msgs=cfg.max_batch_msgs,
            max_pending_msgs=cfg.max_pending_msgs,
            max_pending_bytes=cfg.max_pending_bytes,
            linger=cfg.batch_linger_ms / 1000,
        )
        manager = StreamManager(store, self.registry, writer, cfg.domain)
        manager.recover()
        consumers = ConsumerManager(store, writer, manager, leaf, conn)
        consumers.recover()
        manager.on_deleted = consumers.stream_deleted
        manager.consumer_count = consumers.count
        self.writer = writer
        writer.on_batch = self.metrics.metrics.on_batch if self.metrics is not None else None
        ctx = Context(
            manager=manager, conn=conn, domain=cfg.domain, stats=self.stats, consumers=consumers, health=self.health
        )
        limits = batching.Limits(
            inflight_per_stream=cfg.atomic_inflight_per_stream,
            inflight_total=cfg.atomic_inflight_total,
            max_msgs=cfg.atomic_max_msgs,
            max_bytes=cfg.atomic_max_bytes,
            timeout_ns=int(cfg.atomic_timeout * 1e9),
        )
        ingest = Ingest(conn, ctx, self.registry, cfg.api_prefix, limits)
        copiers = Copiers(conn, writer, store, self.registry, cfg.api_prefix)

        async def subjects_changed(stream: streams.Stream, old: list[str], new: list[str]) -> None:
            await ingest.subjects_changed(stream, old, new)
            copiers.config_changed(stream)  # a change of mirror / sources comes with every create and update

        manager.on_subjects = subjects_changed
        manager.copy_info = copiers.info
        copiers.on_caught_up = ingest.mirror_caught_up
        manager.on_advisory = self._advise
        intake = ApiIntake(conn, ctx, cfg.api_prefix)
        return _Serving(conn, ctx, writer, manager, consumers, ingest, intake, copiers)

    async def _run_serving(self, s: _Serving) -> None:
        cfg = self.config
        async with asyncio.TaskGroup() as tg:
            writer_task = tg.create_task(s.writer.run(), name="streamd-writer")
            s.consumers.start(tg)
            timers = [
                tg.create_task(self._retention_loop(s.manager), name="streamd-retention"),
                tg.create_task(self.watch.monitor_loop(), name="streamd-monitor"),
                tg.create_task(s.ingest.expire_batches(), name="streamd-batches"),
            ]
            if cfg.sync == SyncMode.BATCH_INTERVAL:
                timers.append(tg.create_task(self._sync_loop(s.writer), name="streamd-sync"))
            for stream in list(self.registry.values()):
                await s.ingest.serve_recovered(stream)
            await s.intake.subscribe_consumer_paths(s.consumers)
            await s.intake.subscribe_api(tg)
            s.copiers.start(tg)
            await s.conn.flush()
            self._announce_running()
            await self._stop.wait()
            self.state = ServiceState.DRAINING
            pending = s.writer.pending
            await bounded(self._stop_intake(s), 3 * STEP_TIMEOUT, "stopping intake")
            await bounded(s.consumers.stop(), CONSUMERS_STOP_TIMEOUT, "stopping consumers")
            await bounded(s.writer.wait_idle(), DRAIN_TIMEOUT, "committing pending writes")
            for task in (*timers, writer_task):
                task.cancel()
            logger.info(
                "shutdown ◆ %d streams ◆ %d writes were pending ◆ %d items in %d write batches",
                len(self.registry),
                pending,
                s.writer.committed_items,
                s.writer.committed_batches,
            )

    def _announce_running(self) -> None:
        cfg = self.config
        self.state = ServiceState.RUNNING
        logger.info(
            "streamd serving %s on %s ◆ data %s ◆ sync %s ◆ %d streams",
            cfg.api_prefix,
            redact(self.url),
            cfg.data,
            cfg.sync.value,
            len(self.registry),
        )
        self.ready.set()

    async def _stop_intake(self, s: _Serving) -> None:
        """API first (and its workers), then stream subjects and DIRECT.GET, then the consumer paths; the flush
        makes sure the server has seen the unsubscribes before the writer drains."""
        await s.intake.stop_api()
        await s.copiers.stop()
        await s.ingest.unsubscribe_all()
        await s.intake.stop_consumer_paths()
        if s.conn.is_connected:  # (a flush while reconnecting waits its whole timeout for nothing)
            with contextlib.suppress(Exception):
                await s.conn.flush(timeout=int(STEP_TIMEOUT))

    async def _advise(self, name: str, action: str) -> None:
        if self.conn is None:
            return
        body = ENCODER.encode(
            {
                "type": "io.nats.jetstream.advisory.v1.stream_action",
                "id": f"{time.time_ns():x}",
                "timestamp": timefmt.format_ns(time.time_ns()),
                "stream": name,
                "action": action,
            }
        )
        with contextlib.suppress(Exception):
            await self.conn.publish(_ADVISORY.format(_ACTIONS[action], name), body)

    # ---- timers ---------------------------------------------------------------------------------------------

    async def _retention_loop(self, manager: StreamManager) -> None:
        while True:
            try:
                deadline = await manager.expire_due(time.time_ns())
            except Exception:
                logger.exception("retention pass failed")
                deadline = 0
            now = time.time_ns()
            wait = 1.0 if not deadline else min(1.0, max(0.0, (deadline - now) / 1e9))
            await asyncio.sleep(max(wait, 0.005))

    async def _sync_loop(self, writer: Writer) -> None:
        while True:
            await asyncio.sleep(self.config.sync_interval)
            try:
                await writer.run_in_thread(writer.store.sync)
            except Exception:
                logger.exception("periodic sync failed")


def _sole(group: BaseExceptionGroup[Any]) -> BaseException:
    """The outer TaskGroup wraps what its body raises in a group of one; unwrapped, callers see what they saw
    before it existed (a StartupError the CLI prints as one line, the serving group's own ExceptionGroup)."""
    return group.exceptions[0] if len(group.exceptions) == 1 else group


__all__ = ["API_PREFIX_TYPE", "Service", "ServiceState", "StartupError"]
