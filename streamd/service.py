"""The streamd service: wiring of connection, store, writer, streams and API, and its lifecycle.

Who owns what:
- the event loop runs the nats-py connection, the API handlers (one at a time, in arrival order), the ingest
  handler (appends to the writer's queue, never blocks), the retention timer and the reply path;
- one writer thread (``writer.Writer``) runs every LMDB write transaction; stream counters change only there;
- reads (info, message get) use short read transactions on the event loop.

Shutdown order: stop intake (unsubscribe, then a flush so nothing already sent to us is dropped), let the writer
commit and answer everything queued, close NATS, close LMDB, stop the embedded server.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import gc
import logging
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

import nats.errors

from . import api, errors, streams, timefmt
from .config import ServiceConfig, SyncMode, redact
from .connection import Connection
from .consumer_manager import ConsumerManager
from .embedded import EmbeddedServer
from .leaf import LeafConnection, LeafError
from .manager import StreamManager
from .models import API_PREFIX_TYPE
from .store import Store
from .writer import Writer, error_puback

logger = logging.getLogger(__name__)
_ADVISORY = "$JS.EVENT.ADVISORY.STREAM.{}.{}"
_ACTIONS = {"create": "CREATED", "modify": "UPDATED", "delete": "DELETED"}


API_PENDING_MSGS = 100_000  # queued API requests before nats-py drops (counted as slow consumer events)
API_PENDING_BYTES = 64 << 20
FREEZE_EVERY = 5000
BIG_REQUEST = 32 << 10  # API requests at least this large are answered in a task of their own


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
        self.registry: dict[str, streams.Stream] = {}
        self._ingest_subs: dict[str, dict[str, Any]] = {}  # stream -> subject -> raw subscription
        self._direct_subs: dict[str, list[Any]] = {}
        self._api_subs: list[Any] = []
        self._api_tasks: set[asyncio.Task[None]] = set()  # large API requests in flight
        self._ack_subs: list[Any] = []
        self.url = ""
        self._overload_logged = 0.0
        self.conn: Connection | None = None
        self._auth_failed = asyncio.Event()
        self.ctx: api.Context | None = None

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        self.state = ServiceState.STARTING
        cfg = self.config
        try:
            store = Store.open(cfg.data, sync=cfg.sync == SyncMode.ALWAYS, map_size=cfg.map_size_mib << 20)
        except Exception as exc:
            raise StartupError(str(exc)) from None
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(store.close)
            if not cfg.server:
                embedded = EmbeddedServer(cfg.data, cfg.host, cfg.port, cfg.leaf_port)
                try:
                    await embedded.start()
                except Exception as exc:
                    raise StartupError(str(exc)) from None
                stack.push_async_callback(embedded.stop)
                self.url = embedded.url
            else:
                self.url = cfg.server
            conn = await self._connect()
            self.conn = conn
            stack.push_async_callback(self._close_conn, conn)
            if cfg.check_api:
                await self._check_api_free(conn)
            leaf = await self._connect_leaf()
            stack.push_async_callback(leaf.close)
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
            api.install_consumer_routes()
            self.ctx = api.Context(manager=manager, conn=conn, domain=cfg.domain, consumers=consumers)
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
            timers = [tg.create_task(self._retention_loop(manager), name="streamd-retention")]
            if cfg.sync == SyncMode.BATCH_INTERVAL:
                timers.append(tg.create_task(self._sync_loop(writer), name="streamd-sync"))
            for stream in list(self.registry.values()):
                await self._subjects_changed(stream, [], list(stream.config.subjects))
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
            await self._stop_intake(conn)
            await consumers.stop()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30):
                    await writer.wait_idle()
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
            return await LeafConnection.connect(url, user=user, password=password, name=cfg.name)
        except (LeafError, OSError, TimeoutError) as exc:
            raise StartupError(
                f"cannot open the leafnode connection to {redact(url)} ({exc}); consumers need it: add "
                "'leafnodes { listen: 127.0.0.1:7422 }' to the server config or pass --leaf nats-leaf://host:port"
            ) from None

    async def _close_conn(self, conn: Connection) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await conn.flush()
        with contextlib.suppress(Exception):
            await conn.close()

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
        if isinstance(exc, nats.errors.SlowConsumerError):
            assert self.ctx is not None
            self.ctx.stats.slow_consumer_events += 1
            logger.error("slow consumer on %s: a message was dropped by the client", exc.subject)
            return
        logger.warning("nats: %s", exc)

    async def _on_disconnect(self) -> None:
        if self.state != ServiceState.RUNNING:
            return
        logger.warning("disconnected from %s; data is kept, reconnecting", redact(self.url))

    async def _on_reconnect(self) -> None:
        logger.info("reconnected to %s", redact(self.url))

    # ---- subscriptions --------------------------------------------------------------------------------------

    async def _subscribe_api(self, conn: Connection) -> None:
        prefix = self.config.api_prefix
        cut = len(prefix) + 1

        async def on_api(msg: Any) -> None:
            assert self.ctx is not None
            call = api.dispatch(self.ctx, msg.subject[cut:].split("."), msg.reply, msg.data, msg.headers)
            if len(msg.data) < BIG_REQUEST:
                await call
                return
            # A large request (a create with 100k subjects) may take seconds: it must not hold the requests
            # queued behind it on this subscription (INFO, other streams). Changes stay ordered by the manager.
            task = asyncio.get_running_loop().create_task(call, name="streamd-api-large")
            self._api_tasks.add(task)
            task.add_done_callback(self._api_tasks.discard)

        verbs = ("CREATE", "DURABLE", "INFO", "DELETE", "NAMES", "LIST", "PAUSE")
        consumer_subjects = [f"{prefix}.CONSUMER.{verb}.>" for verb in verbs]
        for subject in (f"{prefix}.INFO", f"{prefix}.STREAM.>", *consumer_subjects):
            self._api_subs.append(
                await conn.subscribe(
                    subject, cb=on_api, pending_msgs_limit=API_PENDING_MSGS, pending_bytes_limit=API_PENDING_BYTES
                )
            )

    async def _subscribe_acks(self, conn: Connection, consumers: ConsumerManager) -> None:
        """Acks, flow-control replies and pull requests take the raw path: no Msg objects, no queue hop."""
        next_prefix = f"{self.config.api_prefix}.CONSUMER.MSG.NEXT."
        cut = len(next_prefix)

        def on_next(subject: bytes, reply: bytes, data: bytes, _hdrs: bytes | None) -> None:
            names = subject[cut:].decode(errors="replace").split(".")
            if len(names) == 2 and reply:
                consumers.pull_request_or_503(names[0], names[1], reply.decode(), bytes(data))

        self._ack_subs = [
            await conn.subscribe_raw("$JS.ACK.>", consumers.on_ack),
            await conn.subscribe_raw("$JS.FC.>", consumers.on_flow_control),
            await conn.subscribe_raw(next_prefix + ">", on_next),
        ]

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
        await conn.flush()

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
                await sub.unsubscribe()
        raw = [s for group in self._ingest_subs.values() for s in group.values()]
        raw += [s for group in self._direct_subs.values() for s in group]
        for sub in raw:
            with contextlib.suppress(Exception):
                await conn.unsubscribe_raw(sub)
        for sub in self._ack_subs:
            with contextlib.suppress(Exception):
                await conn.unsubscribe_raw(sub)
        with contextlib.suppress(Exception):
            await conn.flush(timeout=5)

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


__all__ = ["API_PREFIX_TYPE", "Service", "ServiceState", "StartupError"]
