"""The consumers of all streams: recovery, create/update/delete/pause/info, and the services a consumer's
runtime gets from its host (``host.ConsumerHost``).

The work is done by parts: ``registry`` (the consumers and their indexes), ``intake`` (acks and pull requests),
``persistence`` (state writes), ``retention`` (message removal, inactive consumers) and ``advisories``. Every
task runs in the service's TaskGroup, handed to `start`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from streamd.consumers import acks, advisories, positions, retention
from streamd.consumers import rules as consumer_rules
from streamd.consumers.consumer import Consumer
from streamd.consumers.intake import Intake
from streamd.consumers.persistence import ConsumerRecord, Persistence, encode_record
from streamd.consumers.registry import Registry
from streamd.store import stream as streams
from streamd.store.env import Store
from streamd.store.writer import Writer
from streamd.streams.manager import StreamManager
from streamd.transport.connection import Connection
from streamd.transport.leaf import LeafConnection
from streamd.wire import ack_protocol, errors, timefmt
from streamd.wire.models import ConsumerConfig, ConsumerInfo, PriorityGroupState, Retention, SequenceInfo

logger = logging.getLogger(__name__)


class ConsumerManager:
    def __init__(
        self, store: Store, writer: Writer, streams_: StreamManager, leaf: LeafConnection, conn: Connection
    ) -> None:
        self.store, self.writer, self.streams, self.leaf = store, writer, streams_, leaf
        self.registry = Registry()
        self.by_stream = self.registry.by_stream
        self.index = self.registry.index
        self.persistence = Persistence(writer, conn)
        self.retention = retention.Retention(store, self.index, self.persistence, self.registry.copying)
        self.intake = Intake(self.by_stream, leaf, self.retention, self.persistence)
        # Hot paths, bound once: the raw handlers the service subscribes and the host services every delivery
        # and ack calls go straight to the part that does the work.
        self.on_ack = self.intake.on_ack
        self.on_flow_control = self.intake.on_flow_control
        self.pull_request = self.intake.pull_request
        self.pull_request_or_503 = self.intake.pull_request_or_503
        self.mark_dirty = self.persistence.mark_dirty
        self.want_messages = self.registry.want_messages
        self.get = self.registry.get
        self.count = self.registry.count
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    # ---- lifecycle -----------------------------------------------------------------------------------------

    def recover(self) -> None:
        """Load every consumer and count what it has pending (the only scan at start: O(its backlog))."""
        for stream in list(self.streams.streams.values()):
            self.load_stream(stream)

    def load_stream(self, stream: streams.Stream) -> list[Consumer]:
        """Load a stream's stored consumers (at recovery, or after a restore made the stream exist)."""
        dec = msgspec.msgpack.Decoder(ConsumerRecord)
        self.registry.hook(stream)
        loaded: list[Consumer] = []
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
                    "consumer '%s > %s' is not served: its stored config is refused (%s)", stream.name, name, problem
                )
                continue
            filters = consumer_rules.filters(rec.config)
            c = Consumer(self, stream, name, rec.config, filters, rec.created_ns, state)
            c.lps.extend(s for s in rec.last_per_subject if s > state.delivered.stream_seq)
            c.num_pending = positions.pending(self.store, stream, filters, c.delivered_seq, c.lps)
            self.by_stream.setdefault(stream.name, {})[name] = c
            self.registry.track(c)
            loaded.append(c)
        return loaded

    def exported(self, stream_name: str) -> list[tuple[str, bytes, bytes]]:
        """Every consumer of a stream as (name, stored record, stored state), as of now (for a snapshot)."""
        group = self.by_stream.get(stream_name, {})
        return [(c.name, encode_record(c, c.config), acks.encode_state(c.state)) for c in group.values()]

    def start(self, tg: asyncio.TaskGroup) -> None:
        """Start serving: every task (consumers', flushing, sweeping) runs in `tg`."""
        self._tg = tg
        for group in self.by_stream.values():
            for c in group.values():
                c.wake.set()  # runs one step (which may end the task at once if there is nothing to do)
        self.spawn(self.persistence.run(), "streamd-consumer-flush")
        self.spawn(retention.sweep(self.registry.expiring, self._remove), "streamd-consumer-sweep")
        self.leaf.on_interest(self.registry.on_interest)
        self.writer.on_commit = self.registry.on_commit

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None] | None:
        """A task in the service's TaskGroup (None, and `coro` is dropped, before start or once stopping)."""
        task: asyncio.Task[None] | None = None
        if self._tg is not None and not self._stopping:
            with contextlib.suppress(RuntimeError):  # the group is shutting down
                task = self._tg.create_task(coro, name=name)
        if task is None:
            coro.close()
            return None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def stop(self) -> None:
        """Stop delivering, persist what changed (bounded), cancel the tasks."""
        self._stopping = True
        for group in self.by_stream.values():
            for c in group.values():
                c.close(reason_status=False)
        try:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(10):
                    await self.persistence.persist()
        finally:  # even when the caller gives up on the persist: tasks left running would hold the TaskGroup open
            for task in list(self._tasks):
                task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    # ---- create / update / delete --------------------------------------------------------------------------

    async def add(self, stream_name: str, requested: ConsumerConfig, action: str, name: str) -> Consumer:
        stream = self.streams.get(stream_name)
        self.registry.hook(stream)
        group = self.by_stream.setdefault(stream_name, {})
        cfg, filters = consumer_rules.normalize(requested, stream.config, name)
        existing = group.get(name)
        if existing is not None:
            if action == "create" and not _same(existing.config, cfg):
                raise errors.CONSUMER_EXISTS()
            return await self._update(existing, cfg, filters)
        if action == "update":
            raise errors.CONSUMER_DOES_NOT_EXIST()
        if 0 < stream.config.max_consumers <= len(group):
            raise errors.MAX_CONSUMERS()
        if cfg.direct is not True:  # a mirror's or source's consumer is exempt, as in nats-server
            self._check_workqueue(stream, filters, group)
        state = acks.ConsumerState()
        start = positions.initial_position(self.store, stream, cfg, filters)
        acks.skip_before(state, start.first_seq)
        c = Consumer(self, stream, name, cfg, filters, time.time_ns(), state)
        c.lps.extend(start.lps)
        c.num_pending = start.pending
        record = encode_record(c, cfg)
        encoded = acks.encode_state(state)

        def save(b: streams.Batch) -> None:
            b.store.put_consumer(b.txn, stream.id, name, record)
            b.store.put_consumer_state(b.txn, stream.id, name, encoded)

        await self.writer.call(save)
        group[name] = c
        self.registry.track(c)
        c.wake.set()
        logger.info("consumer '%s > %s' created (%s)", stream_name, name, "push" if c.is_push else "pull")
        self.persistence.advise(*advisories.action(stream_name, name, "CREATED", "create"))
        return c

    def _check_workqueue(self, stream: streams.Stream, mine: list[str], group: dict[str, Consumer]) -> None:
        """A workqueue's consumers partition it: at most one unfiltered, no two filters overlapping. Copying
        (`direct`) consumers take no part, on either side (nats-server's numLimitableConsumers, partitionUnique)."""
        if stream.config.retention != Retention.WORKQUEUE:
            return
        if not any(c.config.direct is not True for c in group.values()):
            return
        if not mine:
            raise errors.WQ_MULTIPLE_UNFILTERED()
        idx = self.index.get(stream.config.name)
        if idx is None:
            return
        groups = [idx.groups[()]] if () in idx.groups else []
        for f in mine:  # O(filters * depth), not pairwise
            groups.extend(idx.tree.colliding(f))
        if any(c.config.direct is not True for g in groups for c in g.members):
            raise errors.WQ_NOT_UNIQUE()

    async def _update(self, c: Consumer, cfg: ConsumerConfig, filters: list[str]) -> Consumer:
        if _same(c.config, cfg):
            return c
        consumer_rules.check_update(c.config, cfg)
        record = encode_record(c, cfg)
        await self.writer.call(lambda b: b.store.put_consumer(b.txn, c.stream.id, c.name, record))
        self.registry.untrack(c)
        c.configure(cfg, filters)
        self.registry.track(c)
        c.wake.set()
        logger.info("consumer '%s > %s' updated", c.stream.name, c.name)
        return c

    async def delete(self, stream_name: str, name: str) -> None:
        self.streams.get(stream_name)
        await self._remove(self.get(stream_name, name))

    async def _remove(self, c: Consumer, persist: bool = True) -> None:
        c.close()
        self.by_stream.get(c.stream.name, {}).pop(c.name, None)
        self.registry.untrack(c)
        self.persistence.forget(c)
        if persist:
            stream, name = c.stream, c.name
            # (a workqueue's copying consumer leaving may free what the queue's workers already acked)
            interest = stream.config.retention == Retention.INTEREST or c.consumes

            def delete(b: streams.Batch) -> None:
                b.store.delete_consumer(b.txn, stream.id, name)
                if interest:
                    self.retention.retire_unneeded(b, stream)

            await self.writer.call(delete)
        logger.info("consumer '%s > %s' deleted", c.stream.name, c.name)
        self.persistence.advise(*advisories.action(c.stream.name, c.name, "DELETED", "delete"))

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
        record = encode_record(c, cfg)
        await self.writer.call(lambda b: b.store.put_consumer(b.txn, c.stream.id, c.name, record))
        c.configure(cfg, c.filters)
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
            priority_groups=_priority_groups(c),
            ts=timefmt.format_ns(now),
        )

    def unpin(self, stream_name: str, name: str, group: str) -> None:
        """CONSUMER.UNPIN: release the pin of `group` (400/10160 when the consumer has no such group)."""
        c = self.get(stream_name, name)
        groups = c.config.priority_groups
        if not isinstance(groups, list) or group not in groups:
            raise errors.INVALID_PRIORITY_GROUP()
        c.unpin(group, "admin")

    # ---- advisories (host services) ------------------------------------------------------------------------

    def consumed(self, c: Consumer, seq: int) -> None:
        self.retention.on_acked(c, [seq])

    def advise_nak(self, c: Consumer, info: ack_protocol.AckInfo) -> None:
        self.persistence.advise(*advisories.nak(c.stream.name, c.name, info))

    def advise_term(self, c: Consumer, info: ack_protocol.AckInfo, reason: str) -> None:
        self.persistence.advise(*advisories.term(c.stream.name, c.name, info, reason))

    def advise_max_deliveries(self, c: Consumer, event: acks.MaxDeliveriesEvent) -> None:
        self.persistence.advise(*advisories.max_deliveries(c.stream.name, c.name, event))

    def advise_pinned(self, c: Consumer, group: str, pin_id: str) -> None:
        self.persistence.advise(*advisories.pinned(c.stream.name, c.name, group, pin_id))

    def advise_unpinned(self, c: Consumer, group: str, reason: str) -> None:
        self.persistence.advise(*advisories.unpinned(c.stream.name, c.name, group, reason))


def check_imported(record: bytes, state: bytes | None) -> str:
    """Why a consumer record and state from a snapshot cannot be restored ("" when they can)."""
    try:
        rec = msgspec.msgpack.decode(record, type=ConsumerRecord)
        if state is not None:
            acks.decode_state(state)
    except (msgspec.DecodeError, ValueError) as exc:
        return f"consumer record is corrupt ({exc})"
    return consumer_rules.stored_problem(rec.config)


def _priority_groups(c: Consumer) -> list[PriorityGroupState] | UnsetType:
    """The state of the consumer's (first) priority group, as the server reports it: one group only."""
    groups = c.config.priority_groups
    if not isinstance(groups, list) or not groups:
        return UNSET
    pin = c.pin
    if pin is None:
        return [PriorityGroupState(group=groups[0])]
    return [PriorityGroupState(group=groups[0], pinned_client_id=pin.id, pinned_ts=timefmt.format_ns(pin.pinned_ns))]


def _same(a: ConsumerConfig, b: ConsumerConfig) -> bool:
    return msgspec.structs.asdict(a) == msgspec.structs.asdict(b)
