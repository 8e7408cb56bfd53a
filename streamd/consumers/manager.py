"""The consumers of all streams: create/update/delete/info, ack intake, persistence, retention and clean-up.

Consumer state changes on the event loop (deliveries, acks) and is persisted by ``_flush_loop`` through the
writer, batched: every consumer that changed since the last flush is written in one transaction, together with
the messages that workqueue and interest retention may now remove. An ack that came with a reply (``ack_sync``)
is confirmed only after the transaction that holds it committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from msgspec import UNSET

from streamd.consumers import acks
from streamd.consumers import rules as consumer_rules
from streamd.consumers.consumer import Consumer, initial_position
from streamd.consumers.index import FilterGroup, StreamIndex
from streamd.store import reads
from streamd.store import stream as streams
from streamd.store.env import Store
from streamd.store.layout import key_seq, message_subject, scan
from streamd.store.writer import Writer
from streamd.streams.manager import StreamManager
from streamd.transport.connection import Connection
from streamd.transport.leaf import LeafConnection
from streamd.wire import ack_protocol, errors, timefmt
from streamd.wire.headers import NO_RESPONDERS
from streamd.wire.models import ConsumerConfig, ConsumerInfo, Retention, SequenceInfo

logger = logging.getLogger(__name__)
# Deliveries and acks without a reply change state constantly under load; persisting them at most every
# LAZY_FLUSH turns one commit (and fsync) per fetch into a few per second. After a crash the last fraction of a
# second of such acks may be redelivered (at least once, as JetStream); acks with a reply are never lost.
LAZY_FLUSH = 0.1
# A consumer state with many pending messages is large (100k pending: ~2.5 MB to encode and write): such a
# state is persisted lazily at most every LAZY_FLUSH per BIG_STATE pending, so a burst of deliveries does not
# turn into megabytes of writes ten times a second. Acks with a reply still flush at once.
BIG_STATE = 10_000
_ADVISORY = "$JS.EVENT.ADVISORY.CONSUMER."
_ENC = msgspec.json.Encoder()


class ConsumerRecord(msgspec.Struct, array_like=True):
    config: ConsumerConfig
    created_ns: int
    last_per_subject: list[int] = []


Publish = Callable[[str, bytes], Awaitable[None]]


class ConsumerManager:
    def __init__(
        self, store: Store, writer: Writer, streams_: StreamManager, leaf: LeafConnection, conn: Connection
    ) -> None:
        self.store = store
        self.writer = writer
        self.streams = streams_
        self.leaf = leaf
        self.conn = conn
        self.by_stream: dict[str, dict[str, Consumer]] = {}
        # Per-message and per-event work goes through these indexes, never over every consumer.
        self.index: dict[str, StreamIndex] = {}
        self._by_deliver: dict[str, set[Consumer]] = {}  # push consumers by deliver subject
        self._expiring: set[Consumer] = set()  # consumers with an inactive threshold (swept)
        self._dirty: set[Consumer] = set()
        self._confirms: list[tuple[bytes, bytes]] = []
        self._retire: list[tuple[streams.Stream, int]] = []
        self._flush = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._advisories: list[tuple[str, bytes]] = []
        self._lazy: asyncio.TimerHandle | None = None
        self._acks_in: list[tuple[bytes, bytes, bytes]] = []

    # ---- lifecycle -----------------------------------------------------------------------------------------

    def recover(self) -> None:
        """Load every consumer and count what it has pending (the only scan at start: O(its backlog))."""
        dec = msgspec.msgpack.Decoder(ConsumerRecord)
        for stream in list(self.streams.streams.values()):
            self._hook_stream(stream)
            for name, raw, state_raw in self.store.load_consumers(stream.id):
                try:
                    rec = dec.decode(raw)
                    state = acks.decode_state(state_raw) if state_raw else acks.ConsumerState()
                except msgspec.DecodeError:
                    logger.exception("consumer '%s > %s' has a corrupt record; skipped", stream.name, name)
                    continue
                problem = consumer_rules.stored_problem(rec.config)
                if problem:
                    logger.error(
                        "consumer '%s > %s' is not served: its stored config is refused (%s)",
                        stream.name,
                        name,
                        problem,
                    )
                    continue
                c = Consumer(self, stream, name, rec.config, rec.created_ns, state)
                c.lps.extend(s for s in rec.last_per_subject if s > state.delivered.stream_seq)
                with self.store.read() as txn:
                    c.num_pending = len(c.lps) + reads.count_after(txn, stream, c.filters, self._count_from(c))
                self.by_stream.setdefault(stream.name, {})[name] = c
                self._track(c)

    def _count_from(self, c: Consumer) -> int:
        return max(c.state.delivered.stream_seq, c.lps[-1] if c.lps else 0)

    def start(self, tg: asyncio.TaskGroup) -> None:
        for group in self.by_stream.values():
            for c in group.values():
                self._start(c)
        self._spawn(self._flush_loop(), "streamd-consumer-flush")
        self._spawn(self._sweep_loop(), "streamd-consumer-sweep")
        self.leaf.on_interest(self._on_interest)
        self.writer.on_commit = self.on_commit

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _start(self, c: Consumer) -> None:
        c.wake.set()  # runs one step (which may end the task at once if there is nothing to do)

    def start_task(self, c: Consumer) -> None:
        """The consumer's delivery task, started on demand (see consumers.Wake)."""
        c.task = self._spawn(c.run(), f"streamd-consumer-{c.stream.name}-{c.name}")

    async def stop(self) -> None:
        """Stop delivering, persist what changed (bounded), cancel the tasks."""
        for group in self.by_stream.values():
            for c in group.values():
                c.close(reason_status=False)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(10):
                await self._persist()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    def _hook_stream(self, stream: streams.Stream) -> None:
        name = stream.name

        def has_interest(subject: bytes) -> bool:
            idx = self.index.get(name)
            return idx is not None and idx.interested(subject.decode(errors="replace"))

        stream.has_interest = has_interest

    def _track(self, c: Consumer) -> None:
        """Put a consumer in the indexes (after create, recovery or a config change)."""
        self.index.setdefault(c.stream.name, StreamIndex()).add(c, c.stream.committed.last_seq)
        if c.is_push:
            self._by_deliver.setdefault(str(c.config.deliver_subject), set()).add(c)
        threshold = c.config.inactive_threshold
        if isinstance(threshold, int) and threshold > 0:
            self._expiring.add(c)

    def _untrack(self, c: Consumer) -> None:
        idx = self.index.get(c.stream.name)
        if idx is not None:
            idx.remove(c)
        deliver = str(c.config.deliver_subject)
        same = self._by_deliver.get(deliver)
        if same is not None:
            same.discard(c)
            if not same:
                del self._by_deliver[deliver]
        self._expiring.discard(c)

    def want_messages(self, c: Consumer) -> None:
        """A pull consumer has a waiting request: wake it on matching stores (until it has none)."""
        idx = self.index.get(c.stream.name)
        if idx is not None and not c.deleted:
            idx.hungry.add(c)

    # ---- lookups -------------------------------------------------------------------------------------------

    def get(self, stream: str, name: str) -> Consumer:
        c = self.by_stream.get(stream, {}).get(name)
        if c is None or c.deleted:
            raise errors.CONSUMER_NOT_FOUND()
        return c

    def count(self, stream: str | None = None) -> int:
        if stream is not None:
            return len(self.by_stream.get(stream, {}))
        return sum(len(g) for g in self.by_stream.values())

    # ---- create / update / delete --------------------------------------------------------------------------

    async def add(self, stream_name: str, requested: ConsumerConfig, action: str, name: str) -> Consumer:
        stream = self.streams.get(stream_name)
        self._hook_stream(stream)
        group = self.by_stream.setdefault(stream_name, {})
        cfg = consumer_rules.normalize(requested, stream.config, name)
        existing = group.get(name)
        if existing is not None:
            if action == "create" and not _same(existing.config, cfg):
                raise errors.CONSUMER_EXISTS()
            return await self._update(existing, cfg)
        if action == "update":
            raise errors.CONSUMER_DOES_NOT_EXIST()
        if 0 < stream.config.max_consumers <= len(group):
            raise errors.MAX_CONSUMERS()
        self._check_workqueue(stream, cfg, group)
        state = acks.ConsumerState()
        with self.store.read() as txn:
            start, lps = initial_position(cfg, stream, txn, consumer_rules.filters(cfg))
            acks.skip_before(state, start)
            c = Consumer(self, stream, name, cfg, time.time_ns(), state)
            c.lps.extend(lps)
            c.num_pending = len(lps) + reads.count_after(txn, stream, c.filters, self._count_from(c))
        record = msgspec.msgpack.encode(ConsumerRecord(cfg, c.created_ns, list(lps)))
        encoded = acks.encode_state(state)

        def save(b: streams.Batch) -> None:
            b.store.put_consumer(b.txn, stream.id, name, record)
            b.store.put_consumer_state(b.txn, stream.id, name, encoded)

        await self.writer.call(save)
        group[name] = c
        self._track(c)
        self._start(c)
        logger.info("consumer '%s > %s' created (%s)", stream_name, name, "push" if c.is_push else "pull")
        self._advise_action(c, "CREATED", "create")
        return c

    def _check_workqueue(self, stream: streams.Stream, cfg: ConsumerConfig, group: dict[str, Consumer]) -> None:
        if stream.config.retention != Retention.WORKQUEUE:
            return

        mine = consumer_rules.filters(cfg)
        if not group:
            return
        if not mine:
            raise errors.WQ_MULTIPLE_UNFILTERED()
        idx = self.index.get(stream.config.name)
        if idx is None:
            return
        if () in idx.groups or any(idx.tree.collides(f) for f in mine):  # O(filters * depth), not pairwise
            raise errors.WQ_NOT_UNIQUE()

    async def _update(self, c: Consumer, cfg: ConsumerConfig) -> Consumer:
        if _same(c.config, cfg):
            return c
        consumer_rules.check_update(c.config, cfg)
        record = msgspec.msgpack.encode(ConsumerRecord(cfg, c.created_ns, list(c.lps)))

        def save(b: streams.Batch) -> None:
            b.store.put_consumer(b.txn, c.stream.id, c.name, record)

        await self.writer.call(save)
        self._untrack(c)
        c.configure(cfg)
        self._track(c)
        c.wake.set()
        logger.info("consumer '%s > %s' updated", c.stream.name, c.name)
        return c

    async def delete(self, stream_name: str, name: str) -> None:
        self.streams.get(stream_name)
        c = self.get(stream_name, name)
        await self._remove(c)

    async def _remove(self, c: Consumer, persist: bool = True) -> None:
        c.close()
        self.by_stream.get(c.stream.name, {}).pop(c.name, None)
        self._untrack(c)
        self._dirty.discard(c)
        if persist:
            stream, name = c.stream, c.name
            interest = stream.config.retention == Retention.INTEREST

            def delete(b: streams.Batch) -> None:
                b.store.delete_consumer(b.txn, stream.id, name)
                if interest:
                    self._retire_unneeded(b, stream)

            await self.writer.call(delete)
        logger.info("consumer '%s > %s' deleted", c.stream.name, c.name)
        self._advise_action(c, "DELETED", "delete")

    def _retire_unneeded(self, b: streams.Batch, stream: streams.Stream) -> None:
        """Interest retention after a consumer left: drop what no remaining consumer still needs (writer thread).

        One pass over the stream's messages; the consumers' states are only read here."""
        idx = self.index.get(stream.name) or StreamIndex()
        doomed: list[int] = []
        for key, raw in scan(b.txn.cursor(db=stream.dbs.msgs), stream.dbs.prefix):
            seq = key_seq(key)
            subject = message_subject(raw).decode(errors="replace")
            if all(_acked(o, seq) for o in idx.matching(subject)):
                doomed.append(seq)
        for seq in doomed:
            streams.delete_seq(b, stream, seq)

    async def stream_deleted(self, stream_name: str) -> None:
        """The stream and its records are gone: stop its consumers (their waiters get 409 Consumer Deleted)."""
        for c in list(self.by_stream.get(stream_name, {}).values()):
            await self._remove(c, persist=False)
        self.by_stream.pop(stream_name, None)
        self.index.pop(stream_name, None)

    async def pause(self, stream_name: str, name: str, until_ns: int, text: str = "") -> Consumer:
        c = self.get(stream_name, name)
        # A time in the past (nats-py resumes with 1970) is kept, as the server does; only zero time clears it.
        keep = bool(text) and text != timefmt.ZERO_TIME
        cfg = msgspec.structs.replace(c.config, pause_until=text if keep else UNSET)
        record = msgspec.msgpack.encode(ConsumerRecord(cfg, c.created_ns, list(c.lps)))
        await self.writer.call(lambda b: b.store.put_consumer(b.txn, c.stream.id, c.name, record))
        c.configure(cfg)
        c.wake.set()
        return c

    # ---- info ----------------------------------------------------------------------------------------------

    def info(self, c: Consumer) -> ConsumerInfo:
        st = c.state
        now = time.time_ns()
        paused = c.paused(now)
        return ConsumerInfo(
            stream_name=c.stream.name,
            name=c.name,
            created=timefmt.format_ns(c.created_ns),
            config=c.config,
            delivered=SequenceInfo(
                consumer_seq=st.delivered.consumer_seq,
                stream_seq=st.delivered.stream_seq,
                last_active=timefmt.format_ns(c.last_delivered_ns) if c.last_delivered_ns else UNSET,
            ),
            ack_floor=SequenceInfo(
                consumer_seq=st.ack_floor.consumer_seq,
                stream_seq=st.ack_floor.stream_seq,
                last_active=timefmt.format_ns(c.last_ack_ns) if c.last_ack_ns else UNSET,
            ),
            num_ack_pending=acks.num_ack_pending(st),
            num_redelivered=acks.num_redelivered(st),
            num_waiting=len(c.waiting),
            num_pending=c.num_pending,
            push_bound=True if c.is_push and c.push_bound() else UNSET,
            paused=True if paused else UNSET,
            pause_remaining=c.paused_until_ns - now if paused else UNSET,
            ts=timefmt.format_ns(now),
        )

    # ---- traffic -------------------------------------------------------------------------------------------

    def pull_request(self, stream_name: str, name: str, reply: str, body: bytes) -> bool:
        """MSG.NEXT; False when there is no such consumer (the caller answers 503, as no responders would)."""
        group = self.by_stream.get(stream_name)
        c = group.get(name) if group else None
        if c is None or c.deleted:
            return False
        c.request_next(reply, body, time.time_ns())
        return True

    def pull_request_or_503(self, stream_name: str, name: str, reply: str, body: bytes) -> None:
        """MSG.NEXT from the raw path; an unknown consumer gets the 503 status no responders would give."""
        if not self.pull_request(stream_name, name, reply, body):
            self.leaf.send(reply, None, NO_RESPONDERS, b"")
        self.leaf.write_now()

    def on_ack(self, subject: bytes, reply: bytes, data: bytes, _hdrs: bytes | None) -> None:
        """Raw handler for `$JS.ACK.>`: acks are applied right after the current socket read is parsed.

        A client acks a batch and then asks for the next one on the same connection; deferring the acks lets
        that pull request be served first instead of waiting behind a hundred acks.
        """
        self._acks_in.append((subject, reply, data))
        if len(self._acks_in) == 1:
            asyncio.get_running_loop().call_soon(self._apply_acks)

    def _apply_acks(self) -> None:
        batch, self._acks_in = self._acks_in, []
        for subject, reply, data in batch:
            try:
                self._apply_ack(subject, reply, data)
            except Exception:
                logger.exception("ack on %r failed", subject[:200])

    def _apply_ack(self, subject: bytes, reply: bytes, data: bytes) -> None:
        """One ack (never raises on foreign input)."""
        info = ack_protocol.parse_delivered_ack_subject(subject) or ack_protocol.parse_ack_subject(
            subject.decode(errors="replace")
        )
        if info is None:
            return
        c = self.by_stream.get(info.stream, {}).get(info.consumer)
        if c is None or c.deleted:
            return
        ack = ack_protocol.parse_ack(bytes(data))
        if ack.kind is ack_protocol.AckKind.UNKNOWN:
            return
        done = c.on_ack(info, ack, time.time_ns())
        if done and c.stream.config.retention != Retention.LIMITS:
            self._queue_retention(c, done)
        if ack.kind is ack_protocol.AckKind.NEXT and reply:
            c.request_next(reply.decode(), ack.next_request, time.time_ns())
        elif reply:
            self._confirms.append((reply, b""))
            self._flush.set()

    def on_flow_control(self, subject: bytes, _reply: bytes, _data: bytes, _hdrs: bytes | None) -> None:
        parts = subject.decode(errors="replace").split(".")
        if len(parts) >= 5:
            c = self.by_stream.get(parts[2], {}).get(parts[3])
            if c is not None:
                c.on_fc_reply(subject.decode())

    def _queue_retention(self, c: Consumer, seqs: list[int]) -> None:
        stream = c.stream
        if stream.config.retention == Retention.WORKQUEUE:
            self._retire.extend((stream, s) for s in seqs)
        else:
            idx = self.index.get(stream.name) or StreamIndex()
            with self.store.read() as txn:
                for seq in seqs:
                    found = reads.load(txn, stream, seq)
                    if found is None:
                        continue
                    subject = found.subject.decode(errors="replace")
                    if all(_acked(o, seq) for o in idx.matching(subject)):
                        self._retire.append((stream, seq))
        self._flush_soon()

    def on_commit(self, batch: streams.Batch) -> None:
        """From the writer, on the loop, after a commit: keep pending counts right and wake consumers.

        O(messages * depth + consumers that can take one now): a store bumps its matching filter groups, a
        removal touches the consumers that select it, and only `hungry` consumers are woken."""
        stored: dict[str, set[FilterGroup]] = {}
        for stream, seq, subject in batch.stored:
            idx = self.index.get(stream.name)
            if idx is None:
                continue
            touched = stored.setdefault(stream.name, set())
            for g in idx.matching_groups(subject.decode(errors="replace")):
                g.added += 1
                touched.add(g)
                for c in list(g.ahead):
                    c.on_stored_ahead(seq)
        for stream, seq, subject in batch.removed:
            idx = self.index.get(stream.name)
            if idx is not None:
                for c in list(idx.matching(subject.decode(errors="replace"))):
                    c.on_removed(seq)
        woken: set[Consumer] = set()
        for stream in batch.purged:
            for c in self.by_stream.get(stream.name, {}).values():
                c.on_purged()
                woken.add(c)
        for name, groups in stored.items():
            self._wake_hungry(self.index[name], groups, woken)
        for c in woken:
            c.wake.set()

    @staticmethod
    def _wake_hungry(idx: StreamIndex, groups: set[FilterGroup], woken: set[Consumer]) -> None:
        for c in list(idx.hungry):
            if c.deleted or not (c.is_push or c.waiting):
                idx.hungry.discard(c)  # nothing waiting any more: no wakeups until its next request
            elif c.group in groups:
                woken.add(c)

    def _on_interest(self, subject: str, _queue: str | None, present: bool) -> None:
        for c in list(self._by_deliver.get(subject, ())):
            if present:
                c.inactive_since_ns = time.time_ns()
            c.on_interest_change()
        if not present:
            return
        for idx in self.index.values():  # a pull request may have been waiting for its inbox to show up
            for c in list(idx.hungry):
                if not c.is_push and c.waiting:
                    c.on_interest_change()

    # ---- persistence ---------------------------------------------------------------------------------------

    def mark_dirty(self, c: Consumer) -> None:
        """State changed; it is persisted within LAZY_FLUSH (an ack with a reply flushes at once)."""
        self._dirty.add(c)
        self._flush_soon(LAZY_FLUSH * max(1, len(c.state.pending) // BIG_STATE))

    def _flush_soon(self, delay: float = LAZY_FLUSH) -> None:
        if self._lazy is None and not self._flush.is_set():
            self._lazy = asyncio.get_running_loop().call_later(delay, self._flush.set)

    def schedule_flush(self) -> None:
        self._flush.set()

    async def _flush_loop(self) -> None:
        while True:
            await self._flush.wait()
            self._flush.clear()
            if self._lazy is not None:
                self._lazy.cancel()
                self._lazy = None
            try:
                await self._persist()
            except Exception:
                logger.exception("persisting consumer state failed; will retry")
                await asyncio.sleep(0.5)
                self._flush.set()

    async def _persist(self) -> None:
        dirty = [c for c in self._dirty if not c.deleted]
        self._dirty.clear()
        confirms, self._confirms = self._confirms, []
        retire, self._retire = self._retire, []
        advisories, self._advisories = self._advisories, []
        states = [(c.stream.id, c.name, acks.encode_state(c.state)) for c in dirty]
        if states or retire:

            def save(b: streams.Batch) -> None:
                for stream_id, name, state in states:
                    b.store.put_consumer_state(b.txn, stream_id, name, state)
                for stream, seq in retire:
                    if not stream.deleted:
                        streams.delete_seq(b, stream, seq)

            try:
                await self.writer.call(save)
            except BaseException:
                self._dirty.update(dirty)
                self._confirms[:0] = confirms
                self._retire[:0] = retire
                raise
        if confirms:
            await self.conn.publish_many(confirms)
        for subject, body in advisories:
            with contextlib.suppress(Exception):
                await self.conn.publish(subject, body)

    # ---- clean-up of inactive consumers --------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            now = time.time_ns()
            for c in list(self._expiring):  # only consumers with an inactive threshold: durables cost nothing
                if not c.deleted and self._inactive(c, now):
                    logger.info("consumer '%s > %s' inactive; deleting it", c.stream.name, c.name)
                    try:
                        await self._remove(c)
                    except Exception:
                        logger.exception("removing inactive consumer failed")

    def _inactive(self, c: Consumer, now: int) -> bool:
        threshold = c.config.inactive_threshold
        if not isinstance(threshold, int) or threshold <= 0:
            return False
        if c.is_push:
            if c.push_bound():
                c.inactive_since_ns = now
                return False
            return now - c.inactive_since_ns > threshold
        if c.waiting:
            c.last_active_ns = now
            return False
        return now - c.last_active_ns > threshold

    # ---- advisories ----------------------------------------------------------------------------------------

    def _advise(self, kind: str, c: Consumer, body: dict[str, Any]) -> None:
        body = {
            "id": f"{time.time_ns():x}",
            "timestamp": timefmt.format_ns(time.time_ns()),
            "stream": c.stream.name,
            "consumer": c.name,
            **body,
        }
        self._advisories.append((f"{_ADVISORY}{kind}.{c.stream.name}.{c.name}", _ENC.encode(body)))
        self._flush.set()

    def _advise_action(self, c: Consumer, kind: str, action: str) -> None:
        self._advise(kind, c, {"type": "io.nats.jetstream.advisory.v1.consumer_action", "action": action})

    def advise_nak(self, c: Consumer, info: ack_protocol.AckInfo) -> None:
        self._advise(
            "MSG_NAKED",
            c,
            {
                "type": "io.nats.jetstream.advisory.v1.nak",
                "consumer_seq": info.consumer_seq,
                "stream_seq": info.stream_seq,
                "deliveries": info.num_delivered,
            },
        )

    def advise_term(self, c: Consumer, info: ack_protocol.AckInfo, reason: str) -> None:
        body: dict[str, Any] = {
            "type": "io.nats.jetstream.advisory.v1.terminated",
            "consumer_seq": info.consumer_seq,
            "stream_seq": info.stream_seq,
            "deliveries": info.num_delivered,
        }
        if reason:
            body["reason"] = reason
        self._advise("MSG_TERMINATED", c, body)

    def advise_max_deliveries(self, c: Consumer, event: acks.MaxDeliveriesEvent) -> None:
        self._advise(
            "MAX_DELIVERIES",
            c,
            {
                "type": "io.nats.jetstream.advisory.v1.max_deliver",
                "stream_seq": event.stream_seq,
                "deliveries": event.deliveries,
            },
        )


def _same(a: ConsumerConfig, b: ConsumerConfig) -> bool:
    return msgspec.structs.asdict(a) == msgspec.structs.asdict(b)


def _acked(c: Consumer, seq: int) -> bool:
    """Has this consumer finished with stream seq `seq` (acked, termed, or never going to get it)?"""
    st = c.state
    return seq <= st.ack_floor.stream_seq or (seq <= st.delivered.stream_seq and seq not in st.pending)
