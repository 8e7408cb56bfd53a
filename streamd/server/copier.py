"""Mirrors and sources at run time: each copying stream is a client of its origin's JetStream API, as in
nats-server. Per mirror or source one ``Link`` creates an ephemeral push consumer on the origin (flow control,
1 s idle heartbeats, ack none, deliver to an inbox on streamd's client connection, starting just past the last
copied message), takes its deliveries on the connection's raw path into a bounded queue, stores them through the
writer (one transaction per batch, never on the event loop) and answers a flow-control request only once every
message before it is committed: the origin never runs further ahead than its flow-control window, and what we
hold in memory stays bounded.

A lost delivery (the consumer sequence jumps, a heartbeat names a later one), a silent origin (no heartbeat for
3 s), a full queue or a failed create all end the same way: the consumer is dropped and a new one is created
from the last committed sequence, so resumption is exact whichever side restarted.

Decisions are pure functions in streams/copying.py; the store side is store/copied.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from msgspec import UNSET

from streamd.store import copied
from streamd.store import stream as streams
from streamd.store.env import Store
from streamd.store.writer import Writer
from streamd.streams import copying
from streamd.streams.copying import Tracker, Verdict
from streamd.transport.connection import Connection
from streamd.wire import errors, headers
from streamd.wire.ack_protocol import parse_ack_subject, parse_delivered_ack_subject
from streamd.wire.models import ExternalStream, StreamSource, StreamSourceInfo

logger = logging.getLogger(__name__)

CAUGHT_UP = 10  # nats-server's dgetCaughtUpThresh: a mirror this close to its origin answers its direct gets
MAX_QUEUE_MSGS = 10_000  # per link: past this (or the bytes) the link drops what it holds back and restarts
MAX_QUEUE_BYTES = 32 << 20
BATCH_MSGS = 2_000
CREATE_TIMEOUT = 10.0
_STATUS_100 = b"NATS/1.0 100"
_DECODER = msgspec.json.Decoder()
IDENTITY = "Nats-Stream-Identity"
IDENTITY_MISMATCH = 10225  # JSConsumerStreamIdentityMismatchF


class _FlowControl(msgspec.Struct, gc=False):
    """A flow-control request, answered once everything queued before it is stored."""

    reply: bytes


class Link:
    """One mirror or one source of one stream."""

    def __init__(self, host: Copiers, stream_name: str, src: StreamSource, mirror: bool) -> None:
        self.host = host
        self.stream_name = stream_name
        self.src = src
        self.mirror = mirror
        self.iname = copying.index_name(src)
        self.transforms = copying.compiled(src)
        self.tracker = Tracker()
        self.queue: deque[copied.Copied | _FlowControl] = deque()
        self.queued_bytes = 0
        self.wake = asyncio.Event()
        self.restart = False
        self.heard_ns = 0  # monotonic; 0 = never
        self.error: errors.ApiError | None = None
        self.task: asyncio.Task[None] | None = None
        self._sub: Any = None
        self.ident = ""  # the origin's identity (nats-server 2.15: a hash of its creation time), "" if not sent
        self.recreated = False  # the origin refused the identity we had: start again from the configured start
        self.closed = False  # set when the link is stopped: its loops end even if a cancellation went missing
        self.caught_up = False  # told the host (mirror_direct)

    # ---- state for STREAM.INFO ------------------------------------------------------------------------------

    def info(self) -> StreamSourceInfo:
        ext = self.src.external
        out = StreamSourceInfo(
            name=self.src.name,
            lag=self.tracker.lag,
            active=time.monotonic_ns() - self.heard_ns if self.heard_ns else -1,
        )
        if isinstance(ext, ExternalStream):
            out.external = ext
        if self.error is not None:
            out.error = self.error.as_dict()
        if isinstance(self.src.filter_subject, str):
            out.filter_subject = self.src.filter_subject
        if trs := copying.transforms_of(self.src):
            out.subject_transforms = trs
        return out

    # ---- the loop -------------------------------------------------------------------------------------------

    async def run(self) -> None:
        retry_at, fails, logged = 0.0, 0, ""
        while not self.closed:
            await asyncio.sleep(max(0.0, retry_at - time.monotonic()))
            started = time.monotonic()
            try:
                if await self._connect():
                    fails = 0
                    await self._pump()
                else:
                    fails += 1
            except asyncio.CancelledError:
                await self._drop_consumer()
                raise
            except errors.ApiError as exc:
                self.error = exc
                fails += 1
            except Exception:
                logger.exception("stream '%s' copying from '%s' failed", self.stream_name, self.src.name)
                fails += 1
            if self.error is not None and self.error.description != logged:  # once per distinct error, not per try
                logged = self.error.description
                logger.warning("stream '%s' copying from '%s': %s", self.stream_name, self.src.name, logged)
            retry_at = started + copying.retry_delay_ns(fails) / 1e9
            await self._drop_consumer()

    async def _resume_point(self) -> tuple[int, str]:
        """The last origin sequence stored (and, for a source, the origin's identity then), read through the
        writer: queued behind any batch a previous link of this stream still has in flight (cancelled by a config
        change), so it is never read too early."""
        stream = self.host.stream(self.stream_name)
        if self.mirror:
            return await self.host.writer.call(lambda _b: stream.counters.last_seq), ""
        if self.recreated:
            return 0, ""
        meta, iname = self.host.store.meta, self.iname
        seq, ident = await self.host.writer.call(lambda b: copied.source_progress(b.txn, meta, stream.id, iname))
        if seq:
            return seq, ident
        return await asyncio.to_thread(self.host.scan_progress, stream, iname)

    async def _connect(self) -> bool:
        """Create a consumer on the origin just past the last committed message; False (retry later) on error."""
        last, ident = await self._resume_point()
        policy, start_seq, start_time = copying.start_point(self.src, last)
        name = ("JS_MIRROR_" if self.mirror else "JS_SOURCE_") + secrets.token_hex(8)
        inbox = copying.deliver_subject(self.src, "M" if self.mirror else "S", secrets.token_hex(11))
        self.tracker = Tracker(consumer=name, stream_seq=last)
        self.queue.clear()
        self.queued_bytes = 0
        self.restart = False
        conn = self.host.conn
        self._sub = await conn.subscribe_raw(inbox, self._on_delivery)
        config: dict[str, Any] = {
            "name": name,
            "deliver_subject": inbox,
            "deliver_policy": policy,
            "ack_policy": "none",
            "ack_wait": 22 * 3600 * 1_000_000_000,
            "max_deliver": 1,
            "idle_heartbeat": copying.HEARTBEAT_NS,
            "flow_control": True,
            "inactive_threshold": copying.INACTIVE_NS,
            "direct": True,  # as nats-server's copying consumers: unreplicated, and allowed on a workqueue origin
            "metadata": {"_nats.mirror.stream" if self.mirror else "_nats.source.stream": self.stream_name},
        }
        if start_seq:
            config["opt_start_seq"] = start_seq
        if start_time:
            config["opt_start_time"] = start_time
        config.update(copying.consumer_filters(self.src))
        prefix = copying.api_prefix(self.src, self.host.api_prefix)
        subject = f"{prefix}.CONSUMER.CREATE.{self.src.name}.{name}"
        body = msgspec.json.encode({"stream_name": self.src.name, "config": config})
        # The identity we expect: an origin of API level 5 refuses the create when it was recreated since (10225)
        hdrs = {IDENTITY: ident} if ident else None
        try:
            reply = await conn.request(subject, body, timeout=CREATE_TIMEOUT, headers=hdrs)
        except Exception as exc:
            self.error = self._setup_failed(f"consumer create for '{self.src.name}' failed: {exc!r}")
            return False
        answer = _DECODER.decode(reply.data)
        err = answer.get("error") if isinstance(answer, dict) else None
        if err:
            code, err_code = int(err.get("code", 500)), int(err.get("err_code", 0))
            if err_code == IDENTITY_MISMATCH and not self.recreated:
                return await self._origin_recreated()
            self.error = errors.ApiError(code, err_code, str(err.get("description", "")))
            return False
        self.error = None
        self.recreated = False
        # An origin of API level 5 names the stream's identity (a recreated stream gets a new one); it goes into
        # the source header as nats-server writes it.
        self.ident = (reply.headers or {}).get(IDENTITY, "")
        self.heard_ns = time.monotonic_ns()
        logger.info(
            "stream '%s' %s '%s' from sequence %d",
            self.stream_name,
            "mirrors" if self.mirror else "sources",
            self.src.name,
            start_seq or 1,
        )
        return True

    async def _origin_recreated(self) -> bool:
        """The origin was deleted and created again under its name: what we copied came from the old one, so copy
        the new one from the configured start (nats-server 2.15 does likewise for sources; mirrors are not told)."""
        logger.warning(
            "stream '%s': source stream '%s' was recreated, copying it again from the start",
            self.stream_name,
            self.src.name,
        )
        await self._drop_consumer()
        self.recreated = True
        return await self._connect()

    def _setup_failed(self, text: str) -> errors.ApiError:
        kind = errors.MIRROR_CONSUMER_SETUP_FAILED if self.mirror else errors.SOURCE_CONSUMER_SETUP_FAILED
        return kind(err=text)

    async def _pump(self) -> None:
        """Store what arrives until the link must restart (a loss, a stall, the queue overflowing)."""
        stalled = copying.STALLED_NS / 1e9
        while not self.restart and not self.closed:
            if not self.queue:
                self.wake.clear()
                # asyncio.timeout, not wait_for: Python 3.11's wait_for can drop a cancellation that lands as the
                # wait ends, and this loop would then outlive the service's stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self.wake.wait()
                if time.monotonic_ns() - self.heard_ns > copying.STALLED_NS:
                    logger.warning(
                        "stream '%s': '%s' silent for %.0f s, recreating its consumer",
                        self.stream_name,
                        self.src.name,
                        stalled,
                    )
                    self.restart = True
            await self._drain()
        await self._drain()  # what was accepted before the restart is contiguous: keep it

    async def _drain(self) -> None:
        while self.queue:
            batch: list[copied.Copied] = []
            fc: _FlowControl | None = None
            while self.queue and len(batch) < BATCH_MSGS:
                item = self.queue.popleft()
                if isinstance(item, _FlowControl):
                    fc = item
                    break
                self.queued_bytes -= len(item.data) + len(item.hdrs or b"")
                batch.append(self._prepared(item))
            if batch:
                await self._store(batch)
            if fc is not None:
                await self._answer_flow_control(fc.reply)

    def _prepared(self, m: copied.Copied) -> copied.Copied:
        """The message as stored: under its transformed subject; a source's with its `Nats-Stream-Source` header,
        which names the subject as the origin has it."""
        subject = copying.apply_transforms(self.transforms, m.subject)
        if self.mirror:
            m.subject = subject
            return m
        h = copying.sourced_headers(m.hdrs, self.iname, m.origin_seq, m.subject, self.ident)
        return copied.Copied(m.origin_seq, m.ts_ns, subject, h, m.data)

    async def _store(self, batch: list[copied.Copied]) -> None:
        stream = self.host.stream(self.stream_name)
        if self.mirror:
            await self.host.writer.call(lambda b: copied.store_mirrored(b, stream, batch))
            if not self.caught_up and self.tracker.lag < CAUGHT_UP and stream.config.mirror_direct:
                self.caught_up = True
                if self.host.on_caught_up is not None:
                    await self.host.on_caught_up(stream)
        else:
            iname, ident = self.iname, self.ident
            refusal = await self.host.writer.call(lambda b: copied.store_sourced(b, stream, iname, batch, ident))
            if refusal is not None:  # stored up to the refused one: start again from it (in 2 s)
                raise refusal

    async def _answer_flow_control(self, reply: bytes) -> None:
        t = self.tracker
        hdrs = f"NATS/1.0\r\nNats-Last-Consumer: {t.delivered}\r\nNats-Last-Stream: {t.stream_seq}\r\n\r\n"
        await self.host.conn.publish_raw(reply, b"", hdrs.encode())

    async def _drop_consumer(self) -> None:
        """Unsubscribe the inbox: with no interest left, the origin removes the consumer after its inactive
        threshold (as nats-server leaves its own copying consumers)."""
        sub, self._sub = self._sub, None
        self.tracker.consumer = ""  # late deliveries of the old consumer are ignored
        if sub is None:
            return
        with contextlib.suppress(Exception):
            await self.host.conn.unsubscribe_raw(sub)

    # ---- deliveries (raw path, on the loop: never blocks) ----------------------------------------------------

    def _on_delivery(self, subject: bytes, reply: bytes, data: bytes, hdrs: bytes | None) -> None:
        if hdrs and hdrs.startswith(_STATUS_100):
            self._on_control(reply, hdrs)
            return
        if not reply:
            return
        # streamd's and nats-server's v1 ack subject on the quick path; the general parser for the rest (v2)
        ack = parse_delivered_ack_subject(reply) or parse_ack_subject(reply.decode(errors="replace"))
        if ack is None:
            return
        t = self.tracker
        verdict = copying.on_message(
            t, self.mirror, ack.consumer, ack.num_delivered, ack.stream_seq, ack.consumer_seq, ack.num_pending
        )
        if verdict is Verdict.IGNORE:
            return
        self.heard_ns = time.monotonic_ns()
        if verdict is Verdict.RETRY or self._full(len(data) + len(hdrs or b"")):
            self._restart()
            return
        # As delivered: the subject transforms and a source's header (which names the origin's identity, known only
        # once the create's reply is in, after the first deliveries) are applied when the batch is stored.
        item = copied.Copied(
            ack.stream_seq, ack.timestamp_ns, bytes(subject), bytes(hdrs) if hdrs else None, bytes(data)
        )
        self.queue.append(item)
        self.queued_bytes += len(item.data) + len(item.hdrs or b"")
        self.wake.set()

    def _full(self, size: int) -> bool:
        return len(self.queue) >= MAX_QUEUE_MSGS or self.queued_bytes + size > MAX_QUEUE_BYTES

    def _restart(self) -> None:
        """Stop taking this consumer's deliveries; the loop stores what it holds and creates a new one."""
        self.tracker.consumer = ""
        self.restart = True
        self.wake.set()

    def _on_control(self, reply: bytes, hdrs: bytes) -> None:
        if not self.tracker.consumer:
            return
        self.heard_ns = time.monotonic_ns()
        if reply:  # a flow-control request: answered in order, after what came before it is stored
            self.queue.append(_FlowControl(bytes(reply)))
            self.wake.set()
            return
        h = headers.parse(hdrs)
        last = h.get(b"Nats-Last-Consumer", b"0")
        if copying.on_heartbeat(self.tracker, int(last) if last.isdigit() else 0) is Verdict.RETRY:
            self._restart()
            return
        stalled = h.get(b"Nats-Consumer-Stalled")
        if stalled:
            self.host.conn.send_soon(stalled, b"")


class Copiers:
    """Every copying stream's links, started and stopped as stream configs come and go."""

    def __init__(
        self, conn: Connection, writer: Writer, store: Store, registry: dict[str, streams.Stream], api_prefix: str
    ) -> None:
        self.conn = conn
        self.writer = writer
        self.store = store
        self.registry = registry
        self.api_prefix = api_prefix
        self.links: dict[str, list[Link]] = {}
        self._configs: dict[str, bytes] = {}
        self._tg: asyncio.TaskGroup | None = None
        # A mirror with mirror_direct came within CAUGHT_UP messages of its origin (wired to the ingest).
        self.on_caught_up: Callable[[streams.Stream], Awaitable[None]] | None = None

    def stream(self, name: str) -> streams.Stream:
        stream = self.registry.get(name)
        if stream is None or stream.deleted:
            raise errors.STREAM_NOT_FOUND()
        return stream

    def scan_progress(self, stream: streams.Stream, iname: str) -> tuple[int, str]:
        """Worker thread: the newest `Nats-Stream-Source` header of that source (a stream without a progress
        record, e.g. restored from a backup); (0, "") when there is none."""
        with self.store.read() as txn:
            return copied.scan_source_headers(txn, stream, {iname}).get(iname, (0, ""))

    def start(self, tg: asyncio.TaskGroup) -> None:
        self._tg = tg
        for stream in list(self.registry.values()):
            self.config_changed(stream)

    def config_changed(self, stream: streams.Stream) -> None:
        """(Re)start a stream's links when its mirror/sources changed; stop them when it went away or was promoted."""
        cfg = stream.config
        copies = [None if x is UNSET else x for x in (cfg.mirror, cfg.sources)]
        wanted = msgspec.json.encode(copies) if any(copies) and not stream.deleted else b""
        if self._configs.get(stream.name) == wanted:
            return
        self.stop_stream(stream.name)
        if not wanted or self._tg is None:
            return
        self._configs[stream.name] = wanted
        links: list[Link] = []
        if isinstance(cfg.mirror, StreamSource):
            links.append(Link(self, stream.name, cfg.mirror, mirror=True))
        for src in cfg.sources or ():
            links.append(Link(self, stream.name, src, mirror=False))
        for link in links:
            link.task = self._tg.create_task(link.run(), name=f"streamd-copy-{stream.name}")
        self.links[stream.name] = links

    def stop_stream(self, name: str) -> None:
        self._configs.pop(name, None)
        for link in self.links.pop(name, []):
            link.closed = True
            link.wake.set()
            if link.task is not None:
                link.task.cancel()

    async def stop(self) -> None:
        tasks = [link.task for links in self.links.values() for link in links if link.task is not None]
        for name in list(self.links):
            self.stop_stream(name)
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)

    def info(self, stream: streams.Stream) -> tuple[StreamSourceInfo | Any, list[StreamSourceInfo] | Any]:
        """The `mirror` and `sources` blocks of STREAM.INFO."""
        cfg = stream.config
        links = {link.iname: link for link in self.links.get(stream.name, [])}
        mirror: Any = UNSET
        if isinstance(cfg.mirror, StreamSource):
            link = links.get(copying.index_name(cfg.mirror))
            mirror = link.info() if link else StreamSourceInfo(name=cfg.mirror.name)
        sources: Any = UNSET
        if cfg.sources:
            sources = []
            for src in cfg.sources:
                link = links.get(copying.index_name(src))
                sources.append(link.info() if link else StreamSourceInfo(name=src.name))
        return mirror, sources
