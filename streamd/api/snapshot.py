"""STREAM.SNAPSHOT and STREAM.RESTORE as nats-server speaks them, with streamd's own (opaque) payload format.

Snapshot: after the request checks the reply carries the stream's config and state; the payload then goes to the
request's deliver subject in chunks of chunk_size (clamped to 1 KiB..1 MiB), each but the last with a reply
`$JS.SNAPSHOT.ACK.<stream>.<id>.<len>.<n>` the client answers to free its window slot (window_size, 1 KiB..32 MiB,
at least one chunk); a final empty message with a status header ends it: `204` done, `408 No Interest` when the
receiver went away, `408 No Flow Response` after 5 s without an ack for a full window, `500 <why>` on a failure.

Restore: the reply names a deliver subject `$JS.SNAPSHOT.RESTORE.<stream>.<id>`; each chunk sent there with a
reply is written and then answered with an empty message; an empty chunk ends the transfer and is answered with
a stream create response (the restored stream's info, or 500/10062 "restore failed: ..."). 5 s without a chunk
cancels the restore without an answer, as nats-server does. The stream exists only once everything was checked
(the store's import writes under a hidden id until its last transaction), so a failed or abandoned restore leaves
nothing visible, and its rows are collected like a deleted stream's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncGenerator
from typing import Any

import msgspec

from streamd.api.context import Context, check_reply_fits, decode_request, without_server_metadata
from streamd.api.streams import answered
from streamd.api.unserved import is_empty_request
from streamd.consumers.manager import check_imported
from streamd.store import snapshot as snap
from streamd.store import stream as streams
from streamd.streams import rules as config_rules
from streamd.wire import errors, subjects
from streamd.wire.models import (
    API_PREFIX_TYPE,
    RestoreRequest,
    SnapshotRequest,
    StreamConfig,
    StreamCreateResponse,
    StreamState,
)

logger = logging.getLogger(__name__)

DEFAULT_CHUNK = 128 * 1024
DEFAULT_WINDOW = 8 * 1024 * 1024
ACK_TIMEOUT = 5.0  # nats-server's snapshotAckTimeout
INTEREST_WAIT = 2.0  # how long the server waits for the deliver subject's subscriber to show up
RESTORE_IDLE = 5.0  # nats-server's restore activityInterval
MAX_QUEUED = 64 << 20  # restore chunks waiting to be written; a client that floods past this is cut off
# Chunks and their answers go out on one protocol line each (subject + reply), which the server takes up to 4 KiB
# (a longer one closes streamd's connection): a deliver or reply subject longer than this is refused.
MAX_SUBJECT_LEN = 2048
EOF_OK = b"NATS/1.0 204\r\n\r\n"
NO_INTEREST = b"NATS/1.0 408 No Interest\r\n\r\n"
NO_FLOW = b"NATS/1.0 408 No Flow Response\r\n\r\n"


class SnapshotResponse(msgspec.Struct, kw_only=True):
    type: str = API_PREFIX_TYPE + "stream_snapshot_response"
    config: StreamConfig
    state: StreamState


class RestoreResponse(msgspec.Struct, kw_only=True):
    type: str = API_PREFIX_TYPE + "stream_restore_response"
    deliver_subject: str


def _token() -> str:
    return secrets.token_hex(11)


def _spawn(ctx: Context, coro: Any, name: str) -> None:
    if ctx.consumers is not None and ctx.consumers.spawn(coro, name) is not None:
        return
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _orphans.add(task)
    task.add_done_callback(_orphans.discard)


_orphans: set[asyncio.Task[None]] = set()


def _has_interest(ctx: Context, subject: str) -> bool:
    return ctx.consumers is None or ctx.consumers.leaf.has_interest(subject)


# ---- snapshot ---------------------------------------------------------------------------------------------------


async def stream_snapshot(ctx: Context, names: list[str], data: bytes) -> SnapshotResponse:
    if is_empty_request(data):
        raise errors.BAD_REQUEST()
    stream = ctx.manager.get(names[0])
    req: SnapshotRequest = decode_request(data, SnapshotRequest, "JSApiStreamSnapshotRequest")
    if not subjects.is_valid_subject(req.deliver_subject, wildcards=False):
        raise errors.SNAPSHOT_DELIVER_SUBJECT_INVALID()
    if len(req.deliver_subject.encode()) > MAX_SUBJECT_LEN:
        raise errors.SNAPSHOT_DELIVER_SUBJECT_INVALID()  # streamd could not send to it
    c = stream.committed
    head = snap.Head(snap.VERSION, stream.config, stream.created_ns, c.first_seq, c.last_seq, c.last_ns)
    consumers = [] if req.no_consumers or ctx.consumers is None else ctx.consumers.exported(stream.name)
    info = ctx.manager.info(stream)
    _spawn(ctx, _send_snapshot(ctx, stream, req, head, consumers), f"streamd-snapshot-{stream.name}")
    return SnapshotResponse(config=answered(stream.config), state=info.state)


async def _pieces(
    ctx: Context, stream: streams.Stream, head: snap.Head, consumers: list[tuple[str, bytes, bytes]]
) -> AsyncGenerator[bytes, None]:
    """The snapshot's bytes, a slice at a time: each slice is one short read transaction in a worker thread."""
    exporter = snap.Exporter()
    yield exporter.start(head)
    seq, last = max(head.first_seq, 1), head.last_seq
    while seq <= last:
        if stream.deleted:
            raise RuntimeError("stream was deleted")
        piece, seq = await asyncio.to_thread(snap.export_step, ctx.manager.store, stream, exporter, seq, last)
        if piece:
            yield piece
    for name, record, state in consumers:
        yield exporter.add(snap.ConsumerEntry(name, record, state))
    yield exporter.end()


class _Window:
    """Chunks in flight: a slot is taken per chunk sent and given back by its ack."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.freed = asyncio.Event()

    def ack(self, _subject: bytes, _reply: bytes, _data: bytes, _hdrs: bytes | None) -> None:
        self.slots += 1
        self.freed.set()


async def _send_snapshot(
    ctx: Context,
    stream: streams.Stream,
    req: SnapshotRequest,
    head: snap.Head,
    consumers: list[tuple[str, bytes, bytes]],
) -> None:
    deliver = req.deliver_subject
    chunk_size = min(max(1024, req.chunk_size or DEFAULT_CHUNK), 1024 * 1024)
    window_size = max(min(max(1024, req.window_size or DEFAULT_WINDOW), 32 * 1024 * 1024), chunk_size)
    window = _Window(window_size // chunk_size)
    ack_base = f"$JS.SNAPSHOT.ACK.{stream.name}.{_token()}"
    sub = await ctx.conn.subscribe_raw(ack_base + ".>", window.ack)
    started = time.monotonic()
    try:
        status = await _stream_chunks(ctx, stream, deliver, chunk_size, window, ack_base, head, consumers)
    except Exception as exc:
        logger.exception("snapshot of stream '%s' failed", stream.name)
        why = " ".join(str(exc).split())[:200] or type(exc).__name__  # one header line, whatever the text
        status = f"NATS/1.0 500 {why}\r\n\r\n".encode()
    finally:
        await ctx.conn.unsubscribe_raw(sub)
    with contextlib.suppress(Exception):
        await ctx.conn.publish_raw(deliver.encode(), b"", status)
    logger.info(
        "snapshot of stream '%s' %s in %.2f s",
        stream.name,
        "sent" if status == EOF_OK else "ended: " + status.decode().split("\r\n")[0],
        time.monotonic() - started,
    )


async def _stream_chunks(
    ctx: Context,
    stream: streams.Stream,
    deliver: str,
    chunk_size: int,
    window: _Window,
    ack_base: str,
    head: snap.Head,
    consumers: list[tuple[str, bytes, bytes]],
) -> bytes:
    """Send the chunks; -> the status header of the final empty message."""
    deadline = time.monotonic() + INTEREST_WAIT
    while not _has_interest(ctx, deliver) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    buf = bytearray()
    index = 1
    async with contextlib.aclosing(_pieces(ctx, stream, head, consumers)) as pieces:
        async for piece in pieces:
            buf += piece
            while len(buf) >= chunk_size:
                status = await _wait_slot(ctx, deliver, window)
                if status:
                    return status
                chunk = bytes(buf[:chunk_size])
                del buf[:chunk_size]
                reply = f"{ack_base}.{len(chunk)}.{index}".encode()
                await ctx.conn.publish_raw(deliver.encode(), chunk, None, reply)
                window.slots -= 1
                index += 1
    if buf:
        status = await _wait_slot(ctx, deliver, window)
        if status:
            return status
        await ctx.conn.publish_raw(deliver.encode(), bytes(buf))
    return EOF_OK


async def _wait_slot(ctx: Context, deliver: str, window: _Window) -> bytes:
    """Wait for a free window slot; -> b"" when there is one, else the status that ends the snapshot."""
    deadline = time.monotonic() + ACK_TIMEOUT
    while True:
        if not _has_interest(ctx, deliver):
            return NO_INTEREST
        if window.slots > 0:
            return b""
        left = deadline - time.monotonic()
        if left <= 0:
            return NO_FLOW
        window.freed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(window.freed.wait(), min(left, 0.25))


# ---- restore ----------------------------------------------------------------------------------------------------


async def stream_restore(ctx: Context, names: list[str], data: bytes) -> RestoreResponse:
    if is_empty_request(data):
        raise errors.BAD_REQUEST()
    req: RestoreRequest = decode_request(data, RestoreRequest, "JSApiStreamRestoreRequest")
    cfg = req.config.config()
    cfg.name = cfg.name or names[0]
    if cfg.name != names[0]:
        raise errors.STREAM_NAME_MISMATCH()
    if "/" in cfg.name or "\\" in cfg.name:
        raise errors.STREAM_NAME_PATH_SEPARATORS()
    cfg.metadata = without_server_metadata(cfg.metadata)
    cfg = config_rules.normalize(cfg)
    if (stream := ctx.manager.streams.get(names[0])) is not None and not stream.deleted:
        raise errors.STREAM_NAME_EXISTS_RESTORE()
    if cfg.name in ctx.restoring:
        raise errors.STREAM_NAME_EXISTS_RESTORE()
    ctx.manager.check_overlap(cfg)
    check_reply_fits(ctx, cfg, "stream")
    job = _Restore(ctx, cfg, f"$JS.SNAPSHOT.RESTORE.{cfg.name}.{_token()}")
    await job.subscribe()
    ctx.restoring.add(cfg.name)
    _spawn(ctx, job.run(), f"streamd-restore-{cfg.name}")
    return RestoreResponse(deliver_subject=job.subject)


class _Restore:
    """One restore transfer: chunks queued by the raw handler, decoded and written one at a time by `run`."""

    def __init__(self, ctx: Context, cfg: StreamConfig, subject: str) -> None:
        self.ctx = ctx
        self.cfg = cfg
        self.subject = subject
        self.queue: asyncio.Queue[tuple[bytes, bytes]] = asyncio.Queue()
        self.queued = 0
        self.problem = ""
        self.sub: Any = None
        self.importer = snap.Importer(cfg)
        self.decoder = snap.Decoder()
        self.total = 0

    async def subscribe(self) -> None:
        self.sub = await self.ctx.conn.subscribe_raw(self.subject, self._on_chunk)

    def _on_chunk(self, _subject: bytes, reply: bytes, data: bytes, _hdrs: bytes | None) -> None:
        if len(reply) > MAX_SUBJECT_LEN:
            reply = b""  # cannot be answered
        if not reply:
            self.problem = self.problem or "restore requires a reply subject for each chunk"
        elif self.queued + len(data) > MAX_QUEUED:
            self.problem = self.problem or "restore chunks sent faster than they are acknowledged"
        self.queued += len(data)
        self.queue.put_nowait((reply, data))

    async def run(self) -> None:
        done = False
        started = time.monotonic()
        try:
            await self.ctx.manager.writer.call(self.importer.reserve)
            done = await self._transfer()
        except Exception:
            logger.exception("restore of stream '%s' failed", self.cfg.name)
        finally:
            self.ctx.restoring.discard(self.cfg.name)
            if self.sub is not None:
                await self.ctx.conn.unsubscribe_raw(self.sub)
            if not done and self.importer.stream_id:
                self.ctx.manager.dropped.append(self.importer.stream_id)  # its rows are collected in the background
        logger.info(
            "restore of stream '%s' %s (%d bytes in %.2f s)",
            self.cfg.name,
            "completed" if done else "abandoned",
            self.total,
            time.monotonic() - started,
        )

    async def _transfer(self) -> bool:
        """Take chunks until the empty one; -> True once the stream exists."""
        while True:
            try:
                reply, data = await asyncio.wait_for(self.queue.get(), RESTORE_IDLE)
            except TimeoutError:
                logger.warning("restore of stream '%s' stalled: no chunk for %.0f s", self.cfg.name, RESTORE_IDLE)
                return False
            self.queued -= len(data)
            try:
                if self.problem:
                    raise snap.SnapshotError(self.problem)
                if not data:
                    stream = await self._finish()
                    await self._answer(reply, self._created(stream))
                    return True
                await self._take(data)
            except Exception as exc:
                if not isinstance(exc, errors.ApiError):
                    logger.exception("restore of stream '%s' failed", self.cfg.name)
                    exc = errors.STREAM_RESTORE(err="internal error")
                body = msgspec.json.encode({"type": API_PREFIX_TYPE + "stream_create_response", "error": exc.as_dict()})
                await self._answer(reply, body)
                return False
            await self._answer(reply, b"")

    async def _answer(self, reply: bytes, body: bytes) -> None:
        if reply:
            await self.ctx.conn.publish_raw(reply, body)

    async def _take(self, data: bytes) -> None:
        self.total += len(data)
        self.decoder.feed(data)
        while self.decoder.has_more:
            records = await asyncio.to_thread(self.decoder.step)
            for group in snap.in_groups(records):
                await self.ctx.manager.writer.call(lambda b, g=group: self.importer.apply(b, g))  # type: ignore[misc]
                self.importer.committed()

    async def _finish(self) -> streams.Stream:
        self.decoder.check_complete()
        head = self.importer.head
        if head is None:
            raise snap.SnapshotError("snapshot has no header")
        entries: list[tuple[str, bytes, bytes]] = []
        for entry in self.importer.consumers:
            problem = check_imported(entry.record, entry.state)
            if problem:
                raise snap.SnapshotError(f"consumer '{entry.name}': {problem}")
            entries.append((entry.name, entry.record, entry.state or b""))
        return await self.ctx.manager.add_restored(
            self.importer, self.cfg, head.created_ns, entries, self._load_consumers
        )

    def _load_consumers(self, stream: streams.Stream) -> None:
        if self.ctx.consumers is not None:
            for c in self.ctx.consumers.load_stream(stream):
                c.wake.set()

    def _created(self, stream: streams.Stream) -> bytes:
        info = self.ctx.manager.info(stream)
        resp = StreamCreateResponse(config=answered(info.config), created=info.created, state=info.state, ts=info.ts)
        return msgspec.json.encode(resp)
