"""Stream subjects in: one raw subscription per stream subject feeding the writer's queue, plus each stream's
DIRECT.GET subscriptions, kept in step with stream configs (the stream manager calls `subjects_changed`).

The ingest handler runs on the connection's read path: it only appends to the writer's queue and never blocks;
a full queue is refused on the spot with a 503 PubAck (sent with the writer's next batch of replies).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from typing import Any

import msgspec

from streamd.api.context import API_LEVEL, Context
from streamd.api.messages import direct_get
from streamd.store import stream as streams
from streamd.store.writer import error_puback
from streamd.streams import batching
from streamd.transport.connection import Connection
from streamd.wire import errors, timefmt
from streamd.wire.models import StreamSource

logger = logging.getLogger(__name__)

FREEZE_EVERY = 5000
# Origin and mirror_direct mirrors share DIRECT.GET requests through this queue group. nats-server uses `_sys_`,
# which the server refuses to clients (permissions violation), so streamd's streams share one of their own.
DIRECT_GROUP = "_streamd_dget"
_MIRROR_KEY = "\x00mirror"  # the mirror-direct subscriptions of a stream, beside its own
ABANDONED = "$JS.EVENT.ADVISORY.STREAM.BATCH_ABANDONED"
_JSON = msgspec.json.Encoder()
OVERLOAD_LOG_EVERY = 5.0  # seconds between "writer queue full" errors in the log


class Ingest:
    """The stream-side subscriptions, by stream, so a config change or the stop touches exactly its own."""

    def __init__(
        self,
        conn: Connection,
        ctx: Context,
        registry: dict[str, streams.Stream],
        api_prefix: str,
        batch_limits: batching.Limits | None = None,
    ) -> None:
        self._conn = conn
        self.stager = batching.Stager(API_LEVEL, batch_limits)
        self._ctx = ctx
        self._registry = registry
        self._api_prefix = api_prefix
        self._subs: dict[str, dict[str, Any]] = {}  # stream -> subject -> raw subscription
        self._direct_subs: dict[str, list[Any]] = {}
        self._caught_up: set[str] = set()  # mirrors whose copier came within a few messages of the origin
        self._overload_logged = 0.0

    async def serve_recovered(self, stream: streams.Stream) -> None:
        """Subscribe a stream found in the store; one that cannot be subscribed is logged and left unserved, so
        the others still start."""
        try:
            await self.subjects_changed(stream, [], list(stream.config.subjects))
        except Exception as exc:
            logger.error("stream '%s' is not served: subscribing to its subjects failed (%s)", stream.name, exc)
            for sub in self._subs.pop(stream.name, {}).values():
                with contextlib.suppress(Exception):
                    await self._conn.unsubscribe_raw(sub)
            self._registry.pop(stream.name, None)

    async def subjects_changed(self, stream: streams.Stream, old: list[str], new: list[str]) -> None:
        """Keep one raw subscription per stream subject: drop the removed ones, add the new ones."""
        conn = self._conn
        name = stream.name
        if not new or stream.config.allow_atomic is not True:
            self.stager.forget_stream(name)  # deleted, or atomic publish turned off: its open batches go
        current = self._subs.setdefault(name, {})
        await self._drop_removed(current, set(new))  # a set: 100k subjects must not cost 100k * 100k comparisons
        await self._add_new(stream, current, new)
        if not current:
            del self._subs[name]
        await self._update_direct(stream, bool(new) and stream.config.allow_direct)
        await self._update_mirror_direct(stream)
        try:  # the change is committed already: a slow server must not turn its answer into an error
            await conn.flush()
        except Exception as exc:
            logger.warning("stream '%s': subscriptions sent, not yet confirmed by the server (%s)", name, exc)

    async def _drop_removed(self, current: dict[str, Any], wanted: set[str]) -> None:
        for i, subject in enumerate([s for s in current if s not in wanted]):
            await self._conn.unsubscribe_raw(current.pop(subject))
            if i % 100 == 99:
                await asyncio.sleep(0)  # let other requests in between long runs of (un)subscribes

    async def _add_new(self, stream: streams.Stream, current: dict[str, Any], new: list[str]) -> None:
        handler = self._handler(stream)
        for i, subject in enumerate(new):
            if subject not in current:
                current[subject] = await self._conn.subscribe_raw(subject, handler)
            if i % 100 == 99:
                await asyncio.sleep(0)
            if i % FREEZE_EVERY == FREEZE_EVERY - 1:
                # Long-lived subscriptions would make every full GC pass rescan them (pauses of 0.1-0.7 s with
                # 100k): move what exists now out of the collector's generations.
                gc.freeze()

    async def _update_direct(self, stream: streams.Stream, wanted: bool) -> None:
        subs = self._direct_subs.get(stream.name)
        if wanted and subs is None:
            self._direct_subs[stream.name] = await self._subscribe_direct(stream.name)
        elif not wanted and subs is not None:
            for sub in self._direct_subs.pop(stream.name):
                await self._conn.unsubscribe_raw(sub)

    async def mirror_caught_up(self, stream: streams.Stream) -> None:
        """The mirror's copier is within a few messages of its origin: from now on it answers the origin's
        DIRECT.GET (nats-server subscribes on the first mirrored message with fewer than 10 pending)."""
        if stream.name not in self._caught_up:
            self._caught_up.add(stream.name)
            await self._update_mirror_direct(stream)

    async def _update_mirror_direct(self, stream: streams.Stream) -> None:
        """A mirror with mirror_direct answers its origin's DIRECT.GET too, once caught up, in the same queue
        group as the origin (as nats-server's subscribeToMirrorDirect): each request is answered once, by one."""
        cfg, key = stream.config, stream.name + _MIRROR_KEY
        mirror = cfg.mirror
        wanted = cfg.mirror_direct and isinstance(mirror, StreamSource) and not stream.deleted and mirror.name or ""
        if not wanted:
            self._caught_up.discard(stream.name)
        elif stream.name not in self._caught_up:
            wanted = ""
        subs = self._direct_subs.get(key)
        if wanted and subs is None:
            self._direct_subs[key] = await self._subscribe_direct(stream.name, as_name=wanted)
        elif not wanted and subs is not None:
            for sub in self._direct_subs.pop(key):
                await self._conn.unsubscribe_raw(sub)

    async def _subscribe_direct(self, name: str, as_name: str = "") -> list[Any]:
        """DIRECT.GET of `as_name` (default: the stream's own), answered from stream `name`; in a queue group,
        so that mirrors with mirror_direct share the requests."""
        base = f"{self._api_prefix}.DIRECT.GET.{as_name or name}"
        skip = len(base) + 1
        ctx = self._ctx

        def on_direct(subject: bytes, reply: bytes, data: bytes, hdrs: bytes | None) -> None:
            tail = subject[skip:].decode(errors="replace").split(".") if len(subject) > len(base) else []
            direct_get(ctx, name, tail, reply, bytes(data), bytes(hdrs) if hdrs else None)

        return [await self._conn.subscribe_raw(s, on_direct, queue=DIRECT_GROUP) for s in (base, base + ".>")]

    def _handler(self, stream: streams.Stream) -> Any:
        registry = self._registry
        writer = self._ctx.manager.writer

        def on_publish(subject: bytes, reply: bytes, data: bytes, hdrs: bytes | None) -> None:
            current = registry.get(stream.name, stream)
            if hdrs and batching.BATCH_ID in hdrs and (bid := batching.batch_id(hdrs)):
                self._stage(current, bid, subject, reply, bytes(hdrs), bytes(data))
            elif not writer.publish(current, subject, reply, hdrs, data):
                self._refuse_overload(current, reply)

        return on_publish

    def _stage(
        self, stream: streams.Stream, bid: bytes, subject: bytes, reply: bytes, hdrs: bytes, data: bytes
    ) -> None:
        """One message of an atomic batch: staged (answered with an empty message, as nats-server does), or the
        commit (the whole batch goes to the writer as one item), or refused (the batch is abandoned)."""
        try:
            commit = self._check_batch_message(stream, bid, subject, hdrs, data)
        except errors.ApiError as exc:
            if reply:
                self._conn.send_soon(reply, error_puback(stream.name, exc))
            self._advise_abandoned()
            return
        if self.stager.abandoned:  # an idle batch whose slot this one took
            self._advise_abandoned()
        if commit is None:
            if reply and stream.config.no_ack is not True:
                self._conn.send_soon(reply, b"")
        elif not self._ctx.manager.writer.publish_batch(stream, reply, commit.batch_id, commit.msgs):
            self._refuse_overload(stream, reply)

    def _check_batch_message(
        self, stream: streams.Stream, bid: bytes, subject: bytes, hdrs: bytes, data: bytes
    ) -> batching.Commit | None:
        """nats-server's order: sealed, message size, atomic publish allowed, then the batch's own rules."""
        cfg = stream.config
        if cfg.sealed:
            raise errors.SEALED()
        if cfg.max_msg_size >= 0 and len(hdrs) + len(data) > cfg.max_msg_size:
            raise errors.MESSAGE_TOO_BIG()
        if cfg.allow_atomic is not True:
            raise errors.ATOMIC_DISABLED()
        return self.stager.offer(stream.name, bid, subject, hdrs, data, time.monotonic_ns())

    def _advise_abandoned(self) -> None:
        """nats-server's BATCH_ABANDONED advisory for each batch the stager gave up."""
        gone, self.stager.abandoned = self.stager.abandoned, []
        domain = self._ctx.domain
        for stream, bid, reason in gone:
            now = time.time_ns()
            body: dict[str, str] = {
                "type": "io.nats.jetstream.advisory.v1.stream_batch_abandoned",
                "id": f"{now:x}",
                "timestamp": timefmt.format_ns(now),
                "stream": stream,
                "batch": bid,
                "reason": reason,
            }
            if domain:
                body["domain"] = domain
            self._conn.send_soon(f"{ABANDONED}.{stream}".encode(), _JSON.encode(body))

    async def expire_batches(self, every: float = 1.0) -> None:
        """Drop atomic batches idle past their timeout (their memory, their slot) and advise it, as nats-server's
        per-batch timer does; runs for the service's life."""
        while True:
            await asyncio.sleep(every)
            if len(self.stager) and self.stager.expire(time.monotonic_ns()):
                self._advise_abandoned()

    def _refuse_overload(self, stream: streams.Stream, reply: bytes) -> None:
        stats = self._ctx.stats
        stats.ingest_dropped += 1
        now = time.monotonic()
        if now - self._overload_logged > OVERLOAD_LOG_EVERY:
            self._overload_logged = now
            logger.error(
                "stream '%s': writer queue full, refusing publishes (%d refused so far)",
                stream.name,
                stats.ingest_dropped,
            )
        if reply:
            err = errors.INSUFFICIENT_RESOURCES()
            self._ctx.manager.writer.extra_replies.append((reply, error_puback(stream.name, err)))

    async def unsubscribe_all(self) -> None:
        """Stop intake: every stream-subject and DIRECT.GET subscription; failures are ignored (we are leaving)."""
        raw = [s for group in self._subs.values() for s in group.values()]
        raw += [s for group in self._direct_subs.values() for s in group]
        for sub in raw:
            with contextlib.suppress(Exception):
                await self._conn.unsubscribe_raw(sub)
