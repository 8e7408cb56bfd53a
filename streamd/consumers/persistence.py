"""Persisting consumer state: what changed is written in batches, with the messages retention may now remove.

Consumer state changes on the event loop (deliveries, acks) and is persisted by `run` through the writer: every
consumer that changed since the last flush is written in one transaction, together with the messages that
workqueue and interest retention may now remove. An ack that came with a reply (``ack_sync``) is confirmed, and an
advisory published, only after the transaction that holds it committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec

from streamd.consumers import acks
from streamd.consumers.consumer import Consumer
from streamd.store import stream as streams
from streamd.store.writer import Writer
from streamd.transport.connection import Connection
from streamd.wire.models import ConsumerConfig

logger = logging.getLogger(__name__)
# Deliveries and acks without a reply change state constantly under load; persisting them at most every
# LAZY_FLUSH turns one commit (and fsync) per fetch into a few per second. After a crash the last fraction of a
# second of such acks may be redelivered (at least once, as JetStream); acks with a reply are never lost.
LAZY_FLUSH = 0.1
# A consumer state with many pending messages is large (100k pending: ~2.5 MB to encode and write): such a
# state is persisted lazily at most every LAZY_FLUSH per BIG_STATE pending, so a burst of deliveries does not
# turn into megabytes of writes ten times a second. Acks with a reply still flush at once.
BIG_STATE = 10_000


class ConsumerRecord(msgspec.Struct, array_like=True):
    """A consumer's stored definition (its state is stored apart: it changes on every ack)."""

    config: ConsumerConfig
    created_ns: int
    last_per_subject: list[int] = []


def encode_record(c: Consumer, cfg: ConsumerConfig) -> bytes:
    return msgspec.msgpack.encode(ConsumerRecord(cfg, c.created_ns, list(c.lps)))


class Persistence:
    """Dirty consumers, acked messages to remove, confirmations and advisories, flushed together."""

    def __init__(self, writer: Writer, conn: Connection) -> None:
        self.writer = writer
        self.conn = conn
        self._dirty: set[Consumer] = set()
        self._confirms: list[tuple[bytes, bytes]] = []
        self._retire: list[tuple[streams.Stream, int]] = []
        self._advisories: list[tuple[str, bytes]] = []
        self._flush = asyncio.Event()
        self._lazy: asyncio.TimerHandle | None = None

    def mark_dirty(self, c: Consumer) -> None:
        """State changed; it is persisted within LAZY_FLUSH (an ack with a reply flushes at once)."""
        self._dirty.add(c)
        if self._lazy is None and not self._flush.is_set():  # called per delivery: the common case is one check
            self._flush_soon(LAZY_FLUSH * max(1, len(c.state.pending) // BIG_STATE))

    def forget(self, c: Consumer) -> None:
        """The consumer is gone: do not write its state again."""
        self._dirty.discard(c)

    def confirm(self, reply: bytes) -> None:
        """Answer `reply` (an ack with a reply) once what it changed is committed."""
        self._confirms.append((reply, b""))
        self._flush.set()

    def retire(self, stream: streams.Stream, seqs: list[int]) -> None:
        """Remove these messages of `stream` (retention) with the next flush."""
        self._retire.extend((stream, s) for s in seqs)
        self._flush_soon()

    def advise(self, subject: str, body: bytes) -> None:
        """Publish an advisory after the next flush."""
        self._advisories.append((subject, body))
        self._flush.set()

    def _flush_soon(self, delay: float = LAZY_FLUSH) -> None:
        if self._lazy is None and not self._flush.is_set():
            self._lazy = asyncio.get_running_loop().call_later(delay, self._flush.set)

    async def run(self) -> None:
        while True:
            await self._flush.wait()
            self._flush.clear()
            if self._lazy is not None:
                self._lazy.cancel()
                self._lazy = None
            try:
                await self.persist()
            except Exception:
                logger.exception("persisting consumer state failed; will retry")
                await asyncio.sleep(0.5)
                self._flush.set()

    async def persist(self) -> None:
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
