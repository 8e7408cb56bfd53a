"""The streamd service: wiring of connection, store, writer, streams and API, and its lifecycle.

Who owns what:
- the event loop runs the nats-py connection, the API handlers (one at a time, in arrival order), the ingest
  handler (appends to the writer's queue, never blocks), the retention timer and the reply path;
- one writer thread (``writer.Writer``) runs every LMDB write transaction; stream counters change only there;
- reads (info, message get) use short read transactions on the event loop.

Shutdown order: stop intake (unsubscribe, then a flush so nothing already sent to us is dropped), let the writer
commit and answer everything queued, close the leaf and NATS connections, stop the embedded server, close LMDB.
Every step has a timeout (nothing awaits a server that is gone), and ``install_signal_handlers`` ends the process
outright if the whole stop has not finished ``HARD_EXIT_AFTER`` seconds after SIGTERM, or at a second signal:
every acknowledged write is committed already, so that is as safe as a crash, which the store is built for.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import gc
import logging
import os
import signal
import ssl
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import nats.errors

from streamd.api import handlers as api
from streamd.consumers.manager import ConsumerManager
from streamd.server.claim import Claim, ClaimLost
from streamd.server.embedded import EmbeddedServer
from streamd.server.settings import ServiceConfig, SyncMode, redact
from streamd.store import stream as streams
from streamd.store.env import Store
from streamd.store.writer import Writer, error_puback
from streamd.streams.manager import StreamManager
from streamd.transport.connection import Connection
from streamd.transport.leaf import LeafConnection, LeafError
from streamd.wire import errors, timefmt
from streamd.wire.models import API_PREFIX_TYPE, Health

logger = logging.getLogger(__name__)
_ADVISORY = "$JS.EVENT.ADVISORY.STREAM.{}.{}"
_ACTIONS = {"create": "CREATED", "modify": "UPDATED", "delete": "DELETED"}


BAD_REQUEST_STATUS = b"NATS/1.0 400 Bad Request\r\n\r\n"
# A pull's deliveries carry its reply subject and an ack subject (up to ~1.2 KB) on one protocol line, which the
# server takes up to 4 KiB; a longer reply would make it close the leaf connection, so it is refused.
MAX_PULL_REPLY = 2048
API_PENDING_MSGS = 100_000  # queued API requests before more are dropped (counted as slow consumer events)
API_PENDING_BYTES = 64 << 20
STEP_TIMEOUT = 2.0  # each network step of the stop path (flush, close)
DRAIN_TIMEOUT = 5.0  # the writer committing and answering what it took
HARD_EXIT_AFTER = 10.0  # after SIGTERM, the process ends even if the graceful stop has not
DOWN_WARNING_EVERY = 5.0  # seconds between "not connected" warnings
FREEZE_EVERY = 5000
BIG_REQUEST = 32 << 10  # API requests at least this large are answered in a task of their own
MAX_BIG_IN_FLIGHT = 4  # beyond this, a large request holds its queue like any other (memory stays bounded)


class StartupError(RuntimeError):
    """A reason the service cannot start that the operator can fix; the CLI prints it as one line."""


class ServiceState(enum.Enum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"
    CLOSED = "closed"


class Service:
    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.state = ServiceState.NEW
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._stopping = threading.Event()  # the same, for work on other threads (the store's layout migration)
        self.registry: dict[str, streams.Stream] = {}
        self._ingest_subs: dict[str, dict[str, Any]] = {}  # stream -> subject -> raw subscription
        self._direct_subs: dict[str, list[Any]] = {}
        self._api_subs: list[Any] = []
        self._api_workers: list[asyncio.Task[None]] = []
        self._api_tasks: set[asyncio.Task[None]] = set()  # large API requests in flight
        self._ack_subs: list[Any] = []
        self.url = ""
        self._overload_logged = 0.0
        self._api_drop_logged = 0.0
        self.conn: Connection | None = None
        self.leaf: LeafConnection | None = None
        self.embedded: EmbeddedServer | None = None
        self.writer: Writer | None = None
        self._down_since: float | None = None  # monotonic time the client connection was lost
        self._leaf_down_since: float | None = None
        self._down_warned = 0.0
        self._last_error = ""
        self._last_error_at = 0.0
        self._auth_failed = asyncio.Event()
        self.ctx: api.Context | None = None

    def stop(self) -> None:
        self._stop.set()
        self._stopping.set()

    async def run(self) -> None:
        self.state = ServiceState.STARTING
        cfg = self.config
        try:
            store = await asyncio.to_thread(  # a thread: a layout migration may take a while and must heed SIGTERM
                Store.open,
                cfg.data,
                sync=cfg.sync == SyncMode.ALWAYS,
                map_size=cfg.map_size_mib << 20,
                stop=self._stopping,
            )
        except Exception as exc:
            raise StartupError(str(exc)) from None
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(store.close)
            await self._start_embedded(stack)
            conn = await self._connect()
            self.conn = conn
            stack.push_async_callback(self._close_conn, conn)
            if cfg.check_api:
                await self._check_api_free(conn)  # fails fast where nats-server -js answers
            leaf = await self._connect_leaf()
            self.leaf = leaf
            stack.push_async_callback(self._close_leaf, leaf)
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
            manager.on_subjects = self._subjects_changed
            manager.on_advisory = self._advise
            consumers = ConsumerManager(store, writer, manager, leaf, conn)
            consumers.recover()
            manager.on_deleted = consumers.stream_deleted
            manager.consumer_count = consumers.count
            self.writer = writer
            if cfg.check_api:
                claim = await self._claim_api(conn)
                stack.push_async_callback(claim.release)
                await self._check_api_free(conn)  # again: an instance busy past the claim window still holds this
            api.install_consumer_routes()
            self.ctx = api.Context(
                manager=manager, conn=conn, domain=cfg.domain, consumers=consumers, health=self.health
            )
            await self._run_serving(conn, writer, manager, consumers)
        self.state = ServiceState.CLOSED
        logger.info("streamd stopped")

    async def _run_serving(
        self, conn: Connection, writer: Writer, manager: StreamManager, consumers: ConsumerManager
    ) -> None:
        cfg = self.config
        async with asyncio.TaskGroup() as tg:
            writer_task = tg.create_task(writer.run(), name="streamd-writer")
            consumers.start(tg)
            timers = [
                tg.create_task(self._retention_loop(manager), name="streamd-retention"),
                tg.create_task(self._monitor_loop(), name="streamd-monitor"),
            ]
            if cfg.sync == SyncMode.BATCH_INTERVAL:
                timers.append(tg.create_task(self._sync_loop(writer), name="streamd-sync"))
            for stream in list(self.registry.values()):
                await self._serve_recovered(stream)
            await self._subscribe_acks(conn, consumers)
            await self._subscribe_api(conn)
            await conn.flush()
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
            await self._stop.wait()
            self.state = ServiceState.DRAINING
            pending = writer.pending
            await _bounded(self._stop_intake(conn), 3 * STEP_TIMEOUT, "stopping intake")
            await _bounded(consumers.stop(), 5.0, "stopping consumers")
            await _bounded(writer.wait_idle(), DRAIN_TIMEOUT, "committing pending writes")
            for task in (*timers, writer_task):
                task.cancel()
            logger.info(
                "shutdown ◆ %d streams ◆ %d writes were pending ◆ %d items in %d write batches",
                len(self.registry),
                pending,
                writer.committed_items,
                writer.committed_batches,
            )

    # ---- connection -----------------------------------------------------------------------------------------

    async def _start_embedded(self, stack: contextlib.AsyncExitStack) -> None:
        """Without --server, run our own nats-server; it is stopped after both connections are closed."""
        cfg = self.config
        if cfg.server:
            self.url = cfg.server
            return
        embedded = EmbeddedServer(cfg.data, cfg.host, cfg.port, cfg.leaf_port)
        try:
            await embedded.start()
        except Exception as exc:
            raise StartupError(str(exc)) from None
        self.embedded = embedded
        stack.push_async_callback(embedded.stop)
        self.url = embedded.url

    async def _connect(self) -> Connection:
        cfg = self.config
        options: dict[str, Any] = {
            "servers": [self.url],
            "name": cfg.name,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 1,
            "allow_reconnect": True,
            "pending_size": 64 << 20,
            "error_cb": self._on_error,
            "disconnected_cb": self._on_disconnect,
            "reconnected_cb": self._on_reconnect,
            "connect_timeout": 5,
            # a half-open TCP connection (peer gone without a FIN) is found within ~20 s, not nats-py's 4 min
            "ping_interval": 5,
            "max_outstanding_pings": 3,
        }
        if cfg.user:
            options["user"], options["password"] = cfg.user, cfg.password
        if cfg.token:
            options["token"] = cfg.token
        if cfg.creds:
            options["user_credentials"] = cfg.creds
        if cfg.nkey_seed:
            options["nkeys_seed"] = cfg.nkey_seed
        if cfg.tls_ca or cfg.tls_cert:
            ctx = ssl.create_default_context(cafile=cfg.tls_ca or None)
            if cfg.tls_cert:
                ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key or None)
            options["tls"] = ctx
        # nats-py keeps retrying the first connection by itself (max_reconnect_attempts=-1); streamd waits for
        # it, but gives up at once on an authorization error or a stop request.
        conn = Connection()
        self._auth_failed = asyncio.Event()
        connect = asyncio.ensure_future(conn.connect(**options))
        refused = asyncio.ensure_future(self._auth_failed.wait())
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({connect, refused, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            refused.cancel()
            stopped.cancel()
        if connect.done() and connect.exception() is None:
            return conn
        connect.cancel()
        with contextlib.suppress(BaseException):
            await connect
        with contextlib.suppress(Exception):
            await conn.close()
        if self._auth_failed.is_set():
            raise StartupError(
                f"{redact(self.url)} refused streamd's credentials (authorization violation); "
                "check --user/--password, --token, --creds or --nkey-seed"
            )
        if connect.done() and not connect.cancelled() and connect.exception() is not None:
            raise StartupError(f"could not connect to {redact(self.url)}: {connect.exception()}")
        raise StartupError(f"stopped before a connection to {redact(self.url)} was made")

    def leaf_url(self) -> str:
        cfg = self.config
        if cfg.leaf:
            return cfg.leaf
        if not cfg.server:
            return f"nats-leaf://{cfg.host}:{cfg.leaf_port}"
        host = urlsplit(cfg.server if "://" in cfg.server else "nats://" + cfg.server).hostname or "127.0.0.1"
        return f"nats-leaf://{host}:7422"

    async def _connect_leaf(self) -> LeafConnection:
        """The leafnode connection that carries consumer deliveries (see README: attaching to a server)."""
        cfg = self.config
        url = self.leaf_url()
        user = cfg.leaf_user or cfg.user
        password = cfg.leaf_password if cfg.leaf_user else cfg.password
        try:
            return await LeafConnection.connect(
                url,
                user=user,
                password=password,
                name=cfg.name,
                on_disconnect=self._on_leaf_down,
                on_reconnect=self._on_leaf_up,
            )
        except (LeafError, OSError, TimeoutError) as exc:
            raise StartupError(
                f"cannot open the leafnode connection to {redact(url)} ({exc}); consumers need it: add "
                "'leafnodes { listen: 127.0.0.1:7422 }' to the server config or pass --leaf nats-leaf://host:port"
            ) from None

    async def _close_conn(self, conn: Connection) -> None:
        if conn.is_connected:
            await _bounded(conn.flush(timeout=int(STEP_TIMEOUT)), STEP_TIMEOUT + 0.5, "flushing the NATS connection")
        await _bounded(conn.close(), STEP_TIMEOUT, "closing the NATS connection")

    async def _close_leaf(self, leaf: LeafConnection) -> None:
        await _bounded(leaf.close(timeout=STEP_TIMEOUT / 2), STEP_TIMEOUT + 0.5, "closing the leaf connection")

    async def _claim_api(self, conn: Connection) -> Claim:
        """Claim the API prefix through the server (streamd.server.claim: race-free on one server)."""
        claim = Claim(conn, self.config.api_prefix, self.config.claim_window)
        acquire = asyncio.ensure_future(claim.acquire())
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({acquire, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if not acquire.done():
            acquire.cancel()
            await claim.release()
            raise StartupError("stopped while claiming the API prefix")
        try:
            acquire.result()
        except ClaimLost as exc:
            raise StartupError(
                f"another streamd ({exc.rival.state}, claim {exc.rival.id}) serves {self.config.api_prefix} on "
                f"{redact(self.url)}; stop it, or run this one with --domain NAME"
            ) from None
        return claim

    async def _check_api_free(self, conn: Connection) -> None:
        subject = f"{self.config.api_prefix}.INFO"
        try:
            await conn.request(subject, b"", timeout=1.0)
        except nats.errors.NoRespondersError:
            return
        except nats.errors.TimeoutError:
            raise StartupError(
                f"something subscribes to {subject} but does not answer; stop it or use --domain"
            ) from None
        raise StartupError(
            f"{subject} is already answered by another JetStream server or streamd on {redact(self.url)}; "
            "disable JetStream there, stop the other streamd, or run this one with --domain NAME"
        )

    async def _on_error(self, exc: Exception) -> None:
        if "Authorization Violation" in str(exc) and self.state == ServiceState.STARTING:
            self._auth_failed.set()
            return
        self._note_error(f"nats: {exc}")
        if isinstance(exc, nats.errors.SlowConsumerError):
            if self.ctx is not None:
                self.ctx.stats.slow_consumer_events += 1
            logger.error("slow consumer on %s: a message was dropped by the client", exc.subject)
            return
        if self._down_since is not None and self.state == ServiceState.RUNNING:
            # each failed reconnect attempt: the monitor's rate-limited warning reports the latest one
            logger.debug("nats: %s", exc)
            return
        logger.warning("nats: %s", exc)

    async def _on_disconnect(self) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
        if self.state != ServiceState.RUNNING:
            return
        if time.monotonic() - self._last_error_at > 2:  # else keep the error that caused it
            self._note_error(f"disconnected from {redact(self.url)}")
        logger.warning("disconnected from %s; data is kept, reconnecting", redact(self.url))

    async def _on_reconnect(self) -> None:
        down = time.monotonic() - self._down_since if self._down_since is not None else 0.0
        self._down_since = None
        logger.info("reconnected to %s after %.1fs", redact(self.url), down)

    def _on_leaf_down(self) -> None:
        self._leaf_down_since = time.monotonic()
        self._note_error("leaf connection lost")

    def _on_leaf_up(self) -> None:
        self._leaf_down_since = None
        logger.info("leaf connection back; consumer deliveries resume")

    def _note_error(self, text: str) -> None:
        self._last_error = f"{timefmt.format_ns(time.time_ns())} {text}"
        self._last_error_at = time.monotonic()

    # ---- health ---------------------------------------------------------------------------------------------

    def health(self) -> Health:
        """Can streamd serve right now (shown in $JS.API.INFO's streamd block; for a later health endpoint)."""
        conn, leaf, writer = self.conn, self.leaf, self.writer
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

    async def _monitor_loop(self) -> None:
        """Once a second: restart a NATS reader that stopped by itself, warn (rate-limited) while not connected."""
        while True:
            await asyncio.sleep(1.0)
            conn = self.conn
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
        conn_down = self.conn is not None and not self.conn.is_connected
        leaf_down = self.leaf is not None and not self.leaf.connected
        if conn_down:
            since = now - (self._down_since or now)
            logger.warning(
                "not connected to NATS at %s for %.0fs: no API answers, publishes or acks until it is back "
                "(reconnecting; last error: %s)",
                redact(self.url),
                since,
                self._last_error or "none",
            )
            self._down_warned = now
        elif leaf_down:
            since = now - (self._leaf_down_since or now)
            logger.warning("leaf connection down for %.0fs: consumer deliveries wait (reconnecting)", since)
            self._down_warned = now

    # ---- subscriptions --------------------------------------------------------------------------------------

    async def _subscribe_api(self, conn: Connection) -> None:
        """API requests take the raw path (bytes, never a nats-py Msg: odd bytes cannot break its reader); each
        subscription keeps its own queue and worker, so requests run one at a time in arrival order as before."""
        prefix = self.config.api_prefix
        cut = len(prefix) + 1
        verbs = ("CREATE", "DURABLE", "INFO", "DELETE", "NAMES", "LIST", "PAUSE")
        consumer_subjects = [f"{prefix}.CONSUMER.{verb}.>" for verb in verbs]
        for subject in (f"{prefix}.INFO", f"{prefix}.STREAM.>", *consumer_subjects):
            queue = api.RequestQueue(API_PENDING_MSGS, API_PENDING_BYTES)
            self._api_workers.append(asyncio.create_task(self._api_worker(queue, cut), name="streamd-api"))
            self._api_subs.append(await conn.subscribe_raw(subject, self._api_enqueue(queue)))

    def _api_enqueue(self, queue: api.RequestQueue) -> Any:
        def on_api(subject: bytes, reply: bytes, data: bytes, hdrs: bytes | None) -> None:
            if not queue.offer((bytes(subject), bytes(reply), bytes(data), bytes(hdrs) if hdrs else None)):
                assert self.ctx is not None
                self.ctx.stats.slow_consumer_events += 1
                now = time.monotonic()
                if now - self._api_drop_logged > 5:
                    self._api_drop_logged = now
                    logger.error("API queue full: requests dropped (%d so far)", self.ctx.stats.slow_consumer_events)

        return on_api

    async def _api_worker(self, queue: api.RequestQueue, cut: int) -> None:
        while True:
            subject, reply, data, hdrs = await queue.take()
            assert self.ctx is not None
            call = self._answer(subject, cut, reply, data, hdrs)
            if len(data) < BIG_REQUEST or len(self._api_tasks) >= MAX_BIG_IN_FLIGHT:
                await call
                continue
            # A large request (a create with 100k subjects) may take seconds: it must not hold the requests
            # queued behind it on this subscription (INFO, other streams). Changes stay ordered by the manager.
            task = asyncio.get_running_loop().create_task(call, name="streamd-api-large")
            self._api_tasks.add(task)
            task.add_done_callback(self._api_tasks.discard)

    async def _answer(self, subject: bytes, cut: int, reply: bytes, data: bytes, hdrs: bytes | None) -> None:
        assert self.ctx is not None
        try:
            await api.dispatch(self.ctx, subject[cut:], reply, data, hdrs)
        except Exception:  # dispatch answers its own errors; this only guards the worker's life
            logger.exception("API request on %r was not answered", subject[:200])

    async def _subscribe_acks(self, conn: Connection, consumers: ConsumerManager) -> None:
        """Acks, flow-control replies and pull requests take the raw path: no Msg objects, no queue hop."""
        next_prefix = f"{self.config.api_prefix}.CONSUMER.MSG.NEXT."
        cut = len(next_prefix)

        def on_next(subject: bytes, reply: bytes, data: bytes, _hdrs: bytes | None) -> None:
            names = subject[cut:].decode(errors="replace").split(".")
            if len(names) != 2 or not reply:
                return
            try:
                reply_text = bytes(reply).decode()
            except UnicodeDecodeError:  # deliveries go to this subject as text: refuse it at the door
                reply_text = ""
            if not reply_text or len(reply) > MAX_PULL_REPLY:  # see MAX_PULL_REPLY
                conn.send_soon(bytes(reply), b"", BAD_REQUEST_STATUS)
                return
            consumers.pull_request_or_503(names[0], names[1], reply_text, bytes(data))

        self._ack_subs = [
            await conn.subscribe_raw("$JS.ACK.>", consumers.on_ack),
            await conn.subscribe_raw("$JS.FC.>", consumers.on_flow_control),
            await conn.subscribe_raw(next_prefix + ">", on_next),
        ]

    async def _serve_recovered(self, stream: streams.Stream) -> None:
        """Subscribe a stream found in the store; one that cannot be subscribed is logged and left unserved, so
        the others still start."""
        try:
            await self._subjects_changed(stream, [], list(stream.config.subjects))
        except Exception as exc:
            logger.error("stream '%s' is not served: subscribing to its subjects failed (%s)", stream.name, exc)
            for sub in self._ingest_subs.pop(stream.name, {}).values():
                with contextlib.suppress(Exception):
                    assert self.conn is not None
                    await self.conn.unsubscribe_raw(sub)
            self.registry.pop(stream.name, None)

    async def _subjects_changed(self, stream: streams.Stream, old: list[str], new: list[str]) -> None:
        """Keep one raw subscription per stream subject: drop the removed ones, add the new ones."""
        conn = self.conn
        assert conn is not None
        name = stream.name
        current = self._ingest_subs.setdefault(name, {})
        wanted = set(new)  # a set: 100k subjects must not cost 100k * 100k comparisons
        for i, subject in enumerate([s for s in current if s not in wanted]):
            await conn.unsubscribe_raw(current.pop(subject))
            if i % 100 == 99:
                await asyncio.sleep(0)  # let other requests in between long runs of (un)subscribes
        handler = self._ingest_handler(stream)
        for i, subject in enumerate(new):
            if subject not in current:
                current[subject] = await conn.subscribe_raw(subject, handler)
            if i % 100 == 99:
                await asyncio.sleep(0)
            if i % FREEZE_EVERY == FREEZE_EVERY - 1:
                # Long-lived subscriptions would make every full GC pass rescan them (pauses of 0.1-0.7 s with
                # 100k): move what exists now out of the collector's generations.
                gc.freeze()
        if not current:
            del self._ingest_subs[name]
        await self._update_direct(conn, stream, bool(new) and stream.config.allow_direct)
        try:  # the change is committed already: a slow server must not turn its answer into an error
            await conn.flush()
        except Exception as exc:
            logger.warning("stream '%s': subscriptions sent, not yet confirmed by the server (%s)", name, exc)

    async def _update_direct(self, conn: Connection, stream: streams.Stream, wanted: bool) -> None:
        subs = self._direct_subs.get(stream.name)
        if wanted and subs is None:
            self._direct_subs[stream.name] = await self._subscribe_direct(conn, stream.name)
        elif not wanted and subs is not None:
            for sub in self._direct_subs.pop(stream.name):
                await conn.unsubscribe_raw(sub)

    async def _subscribe_direct(self, conn: Connection, name: str) -> list[Any]:
        base = f"{self.config.api_prefix}.DIRECT.GET.{name}"
        skip = len(base) + 1

        def on_direct(subject: bytes, reply: bytes, data: bytes, _hdrs: bytes | None) -> None:
            assert self.ctx is not None
            tail = subject[skip:].decode(errors="replace").split(".") if len(subject) > len(base) else []
            api.direct_get(self.ctx, name, tail, reply, bytes(data))

        return [await conn.subscribe_raw(s, on_direct) for s in (base, base + ".>")]

    def _ingest_handler(self, stream: streams.Stream) -> Any:
        registry = self.registry

        def on_publish(subject: bytes, reply: bytes, data: bytes, hdrs: bytes | None) -> None:
            current = registry.get(stream.name, stream)
            assert self.ctx is not None
            if not self.ctx.manager.writer.publish(current, subject, reply, hdrs, data):
                self._refuse_overload(current, subject, reply)

        return on_publish

    def _refuse_overload(self, stream: streams.Stream, subject: bytes, reply: bytes) -> None:
        assert self.ctx is not None and self.conn is not None
        self.ctx.stats.ingest_dropped += 1
        now = time.monotonic()
        if now - self._overload_logged > 5:
            self._overload_logged = now
            logger.error(
                "stream '%s': writer queue full, refusing publishes (%d refused so far)",
                stream.name,
                self.ctx.stats.ingest_dropped,
            )
        if reply:
            err = errors.INSUFFICIENT_RESOURCES()
            self.ctx.manager.writer.extra_replies.append((reply, error_puback(stream.name, err)))

    async def _stop_intake(self, conn: Connection) -> None:
        for sub in self._api_subs:
            with contextlib.suppress(Exception):
                await conn.unsubscribe_raw(sub)
        for task in (*self._api_workers, *self._api_tasks):
            task.cancel()
        raw = [s for group in self._ingest_subs.values() for s in group.values()]
        raw += [s for group in self._direct_subs.values() for s in group]
        for sub in raw:
            with contextlib.suppress(Exception):
                await conn.unsubscribe_raw(sub)
        for sub in self._ack_subs:
            with contextlib.suppress(Exception):
                await conn.unsubscribe_raw(sub)
        with contextlib.suppress(Exception):
            await conn.flush(timeout=int(STEP_TIMEOUT))

    async def _advise(self, name: str, action: str) -> None:
        if self.conn is None:
            return
        body = api._ENCODER.encode(
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


async def _bounded(work: Any, timeout: float, what: str) -> None:
    """Await a stop step for at most `timeout` seconds; a step that fails or hangs is logged and skipped."""
    try:
        async with asyncio.timeout(timeout):
            await work
    except TimeoutError:
        logger.warning("shutdown: %s took over %.1fs; skipped", what, timeout)
    except Exception as exc:
        logger.warning("shutdown: %s failed: %s", what, exc)


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


__all__ = ["API_PREFIX_TYPE", "Service", "ServiceState", "StartupError", "install_signal_handlers"]
