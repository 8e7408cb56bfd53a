"""What pull and push delivery share: the consumer core they draw messages from (`Source`), the status messages
they send, and how much they send before yielding.

Pull (``pull``) and push (``push``) serve the same core differently; they see it through `Source` so neither
imports the runtime that uses them."""

from __future__ import annotations

from typing import Protocol

from streamd.consumers import acks
from streamd.store import reads
from streamd.store.stream import Stream
from streamd.transport.leaf import LeafConnection
from streamd.wire import headers
from streamd.wire.models import ConsumerConfig

# The most messages one delivery step sends before it yields: a burst of redeliveries (100k coming due at once)
# goes out in slices, so API requests and publishes are served in between. A slice is also one socket write
# (the leaf writer sends what a step queued): 256 x ~250 B deliveries, where 64 made writes of ~14 KB.
SLICE = 256
# Bytes queued on the leaf connection past which a delivery step waits for the socket to drain.
BACKLOG = 4 << 20

# One delivery taken from the core: (message, wire size, delivery record, ack reply, headers, payload).
Taken = tuple[reads.Found, int, acks.Delivery, str, bytes | None, bytes]


class TooBig(Exception):
    """The next message is larger than what is left of a pull request's max_bytes."""


class Source(Protocol):
    """The consumer core as delivery sees it."""

    name: str
    stream: Stream

    @property
    def config(self) -> ConsumerConfig: ...

    @property
    def state(self) -> acks.ConsumerState: ...

    @property
    def leaf(self) -> LeafConnection: ...

    def take(self, now: int, room: int = 0, pin_id: str = "") -> Taken | None:
        """The next message, recorded as delivered (None: nothing to send); raises TooBig past `room` bytes;
        `pin_id` goes out in a `Nats-Pin-Id` header."""

    def send(self, to: str, taken: Taken, queues: list[str] | None = None) -> None: ...


def status(leaf: LeafConnection, to: str, code: int, text: str, extra: dict[str, str] | None = None) -> None:
    """A status message (no payload) to a requester; nothing when there is no one to answer."""
    if to:
        leaf.send(to, None, headers.status(code, text, extra), b"")


def heartbeat(c: Source, to: str, stalled: str = "") -> None:
    """An idle heartbeat carrying the last delivered sequences (and the stalled flow control subject)."""
    extra = {
        "Nats-Last-Consumer": str(c.state.delivered.consumer_seq),
        "Nats-Last-Stream": str(c.state.delivered.stream_seq),
    }
    if stalled:
        extra["Nats-Consumer-Stalled"] = stalled
    queues = c.leaf.queue_groups(to) or None
    c.leaf.send(to, None, headers.status(100, "Idle Heartbeat", extra), b"", queues)
