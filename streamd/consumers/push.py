"""Push delivery: sending to the deliver subject (and its queue group), flow control, idle heartbeats, the
rate limit and replay at the original pace.

Flow control follows consumer.go: past half a window of unanswered bytes a FlowControl Request goes out, and
each answer doubles the window up to FC_LIMIT."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from typing import Protocol

from streamd.consumers.delivery import BACKLOG, SLICE, Source, heartbeat
from streamd.wire import headers
from streamd.wire.models import ReplayPolicy

FC_LIMIT = 32 << 20  # the most bytes a push consumer keeps unacknowledged by flow control


@dataclass(slots=True)
class FlowControl:
    """Push flow control, as consumer.go: a window that doubles on every answered FlowControl Request."""

    window: int = FC_LIMIT // 16
    outstanding: int = 0
    pending_subject: str = ""
    bytes_at_request: int = 0

    def answered(self, subject: str) -> bool:
        """A reply to a FlowControl Request came in; True when it answers the open one (the window grew)."""
        if subject != self.pending_subject:
            return False  # an answer to an older request
        self.outstanding = max(0, self.outstanding - self.bytes_at_request)
        self.pending_subject = ""
        self.window = min(self.window * 2, FC_LIMIT)
        return True


class PushSource(Source, Protocol):
    fc: FlowControl
    last_sent_ns: int  # anything sent to the deliver subject (for idle heartbeats)
    replay_base: tuple[int, int] | None  # (stored ns, wall ns) of the first replayed message

    def push_bound(self) -> bool: ...


async def deliver(c: PushSource, now: int) -> None:
    """Send what there is until flow control, the rate limit or back-pressure says wait."""
    if not c.push_bound() or not c.leaf.connected:
        return
    cfg = c.config
    to = str(cfg.deliver_subject)
    group = cfg.deliver_group
    queues = c.leaf.queue_groups(to) if group else None
    if group and isinstance(group, str) and queues is not None and group not in queues:
        queues.append(group)
    fc_on = cfg.flow_control is True
    original = cfg.replay_policy == ReplayPolicy.ORIGINAL  # once, not per message (an enum lookup)
    sent = 0
    while True:
        if fc_on and c.fc.outstanding > c.fc.window:
            return
        item = c.take(now)
        if item is None:
            return
        found, size, delivery = item[0], item[1], item[2]
        if original and delivery.num_delivered == 1:
            await _pace(c, found.ts_ns)
        c.send(to, item, queues)
        c.last_sent_ns = time.time_ns()
        sent += 1
        if fc_on:
            c.fc.outstanding += size
            if not c.fc.pending_subject and c.fc.outstanding > c.fc.window // 2:
                _flow_control_request(c, to, queues)
        rate = c.config.rate_limit_bps  # read again: an update may change it while this loop sleeps
        if isinstance(rate, int) and rate > 0:
            await asyncio.sleep(size * 8 / rate)
        elif sent % SLICE == 0 or c.leaf.pending_bytes > BACKLOG:
            await c.leaf.wait_writable()
            await asyncio.sleep(0)  # let acks and other consumers in


async def _pace(c: PushSource, ts_ns: int) -> None:
    """Replay original: keep the gaps between the stored times of first deliveries."""
    now = time.time_ns()
    if c.replay_base is None:
        c.replay_base = (ts_ns, now)
        return
    due = c.replay_base[1] + (ts_ns - c.replay_base[0])
    if due > now:
        await asyncio.sleep((due - now) / 1e9)


def _flow_control_request(c: PushSource, to: str, queues: list[str] | None) -> None:
    subject = f"$JS.FC.{c.stream.name}.{c.name}.{secrets.token_hex(2)}"
    c.fc.pending_subject = subject
    c.fc.bytes_at_request = c.fc.outstanding
    c.leaf.send(to, subject, headers.status(100, "FlowControl Request"), b"", queues)


def heartbeat_ns(c: PushSource) -> int:
    """The configured idle heartbeat interval (0: none)."""
    hb = c.config.idle_heartbeat
    return hb if isinstance(hb, int) else 0


def idle_heartbeat(c: PushSource, now: int) -> None:
    """Nothing went to the deliver subject for a heartbeat interval: say so (with a stalled flow control)."""
    hb = heartbeat_ns(c)
    if not hb or now - c.last_sent_ns < hb:
        return
    if c.push_bound():
        heartbeat(c, str(c.config.deliver_subject), stalled=c.fc.pending_subject)
    c.last_sent_ns = now
