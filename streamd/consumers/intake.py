"""Traffic into consumers from the raw client path: acks (`$JS.ACK.>`), pull requests (MSG.NEXT) and flow
control replies (`$JS.FC.>`). This is the hot path: one dict lookup and the consumer's own work per message."""

from __future__ import annotations

import asyncio
import logging
import time

from streamd.consumers.consumer import Consumer
from streamd.consumers.persistence import Persistence
from streamd.consumers.retention import Retention
from streamd.transport.leaf import LeafConnection
from streamd.wire import ack_protocol
from streamd.wire.headers import NO_RESPONDERS
from streamd.wire.models import Retention as Policy

logger = logging.getLogger(__name__)


class Intake:
    def __init__(
        self,
        by_stream: dict[str, dict[str, Consumer]],
        leaf: LeafConnection,
        retention: Retention,
        persistence: Persistence,
    ) -> None:
        self._by_stream = by_stream
        self._leaf = leaf
        self._retention = retention
        self._persistence = persistence
        self._acks_in: list[tuple[bytes, bytes, bytes]] = []

    def pull_request(self, stream_name: str, name: str, reply: str, body: bytes) -> bool:
        """MSG.NEXT; False when there is no such consumer (the caller answers 503, as no responders would)."""
        group = self._by_stream.get(stream_name)
        c = group.get(name) if group else None
        if c is None or c.deleted:
            return False
        c.request_next(reply, body, time.time_ns())
        return True

    def pull_request_or_503(self, stream_name: str, name: str, reply: str, body: bytes) -> None:
        """MSG.NEXT from the raw path; an unknown consumer gets the 503 status no responders would give."""
        if not self.pull_request(stream_name, name, reply, body):
            self._leaf.send(reply, None, NO_RESPONDERS, b"")
        self._leaf.write_now()

    def on_ack(self, subject: bytes, reply: bytes, data: bytes, _hdrs: bytes | None) -> None:
        """Raw handler for `$JS.ACK.>`: acks are applied right after the current socket read is parsed.

        A client acks a batch and then asks for the next one on the same connection; deferring the acks lets
        that pull request be served first instead of waiting behind a hundred acks.
        """
        self._acks_in.append((subject, reply, data))
        if len(self._acks_in) == 1:
            asyncio.get_running_loop().call_soon(self._apply_acks)

    def _apply_acks(self) -> None:
        """Apply the acks of one socket read. Plain `+ACK`s are gathered per consumer and applied as one batch
        (one state update, one persist mark, one wake-up); any other ack first applies what was gathered, so
        every consumer sees its acks in the order they came."""
        batch, self._acks_in = self._acks_in, []
        gathered: dict[Consumer, list[int]] = {}
        names: dict[tuple[bytes, bytes], Consumer | None] = {}  # this batch's lookups: one decode per consumer
        replies: list[bytes] = []
        for subject, reply, data in batch:
            try:
                if not data or data == b"+ACK":
                    p = subject.split(b".")
                    if len(p) == 9 and p[1] == b"ACK" and b"".join(p[4:9]).isdigit():
                        key = (p[2], p[3])
                        c = names[key] if key in names else names.setdefault(key, self._consumer(*key))
                        if c is not None:
                            gathered.setdefault(c, []).append(int(p[5]))
                            if reply:
                                replies.append(reply)
                        continue
                if gathered:
                    self._ack_gathered(gathered, replies)
                self._apply_ack(subject, reply, data)
            except Exception:
                logger.exception("ack on %r failed", subject[:200])
        if gathered:
            self._ack_gathered(gathered, replies)

    def _consumer(self, stream: bytes, name: bytes) -> Consumer | None:
        group = self._by_stream.get(stream.decode(errors="replace"))
        c = group.get(name.decode(errors="replace")) if group else None
        return None if c is None or c.deleted else c

    def _ack_gathered(self, gathered: dict[Consumer, list[int]], replies: list[bytes]) -> None:
        now = time.time_ns()
        for c, seqs in gathered.items():
            if c.deleted:
                continue
            done = c.on_acks(seqs, now)
            if done and c.stream.config.retention != Policy.LIMITS:
                self._retention.on_acked(c, done)
        for reply in replies:
            self._persistence.confirm(reply)
        gathered.clear()
        replies.clear()

    def _apply_ack(self, subject: bytes, reply: bytes, data: bytes) -> None:
        """One ack (never raises on foreign input)."""
        info = ack_protocol.parse_delivered_ack_subject(subject) or ack_protocol.parse_ack_subject(
            subject.decode(errors="replace")
        )
        if info is None:
            return
        c = self._by_stream.get(info.stream, {}).get(info.consumer)
        if c is None or c.deleted:
            return
        ack = ack_protocol.parse_ack(bytes(data))
        if ack.kind is ack_protocol.AckKind.UNKNOWN:
            return
        done = c.on_ack(info, ack, time.time_ns())
        if done and c.stream.config.retention != Policy.LIMITS:
            self._retention.on_acked(c, done)
        if ack.kind is ack_protocol.AckKind.NEXT and reply:
            c.request_next(reply.decode(), ack.next_request, time.time_ns())
        elif reply:
            self._persistence.confirm(reply)

    def on_flow_control(self, subject: bytes, _reply: bytes, _data: bytes, _hdrs: bytes | None) -> None:
        """Raw handler for `$JS.FC.<stream>.<consumer>.<id>`: a push subscriber answered flow control."""
        parts = subject.decode(errors="replace").split(".")
        if len(parts) >= 5:
            c = self._by_stream.get(parts[2], {}).get(parts[3])
            if c is not None:
                c.on_fc_reply(subject.decode())
