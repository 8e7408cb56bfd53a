"""One consumer's runtime: choosing messages, pull requests, push delivery, heartbeats and flow control.

All decisions about acks and redelivery are in ``acks`` (pure functions); this module applies them, reads
messages, and sends deliveries and status messages over the leaf connection so receivers see the original subject
and a ``$JS.ACK`` reply. A consumer with something to do has one task (``run``) that wakes on new messages, acks,
pull requests, interest changes and its own timers; an idle one (no timer due, nothing waiting) has none: its task
ends, and the next ``wake.set()`` starts a new one, so 100k idle consumers cost memory only.
State changes mark the consumer dirty; ``ConsumerManager`` persists them.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgspec

from streamd.consumers import acks
from streamd.consumers import rules as consumer_rules
from streamd.store import reads
from streamd.store.stream import Stream
from streamd.transport.leaf import LeafConnection
from streamd.wire import ack_protocol, durations, gojson, headers, timefmt
from streamd.wire.models import ConsumerConfig, DeliverPolicy, PullRequest, ReplayPolicy
from streamd.wire.subject_tree import SubjectTree

if TYPE_CHECKING:
    from streamd.consumers.index import FilterGroup
    from streamd.consumers.manager import ConsumerManager

logger = logging.getLogger(__name__)

NEVER = 2**63 - 1
INTEREST_GRACE = 2_000_000_000  # how long a pull request may wait for the hub to report its inbox
FC_LIMIT = 32 << 20  # the most bytes a push consumer keeps unacknowledged by flow control
_PREFETCH = 128
# The most messages one delivery step sends before it yields: a burst of redeliveries (100k coming due at once)
# goes out in slices, so API requests and publishes are served in between.
SLICE = 64
# Expire passes scan every pending message: deadlines that come due one after another (a burst of 100k
# deliveries) are handled in batches, at most one pass per EXPIRE_EVERY (or a quarter of the ack wait if
# shorter), rather than one O(pending) scan per message. A redelivery may thus go out up to that much late.
EXPIRE_EVERY = 100_000_000
# Consumers with more filters than this match a subject through a subject tree instead of a scan of the filters.
TREE_FILTERS = 8


def settings_for(cfg: ConsumerConfig) -> acks.AckSettings:
    return acks.AckSettings(
        ack_policy=acks.AckPolicy(cfg.ack_policy.value),
        ack_wait_ns=cfg.ack_wait if isinstance(cfg.ack_wait, int) else acks.DEFAULT_ACK_WAIT_NS,
        backoff_ns=list(cfg.backoff) if isinstance(cfg.backoff, list) else [],
        max_deliver=cfg.max_deliver,
        max_ack_pending=cfg.max_ack_pending if isinstance(cfg.max_ack_pending, int) else -1,
    )


def status(code: int, text: str, extra: dict[str, str] | None = None) -> bytes:
    return headers.status(code, text, extra)


@dataclass(slots=True)
class PullWaiter:
    """An open pull request (nats-server `waitingRequest`)."""

    reply: str
    batch: int
    max_bytes: int
    expires_ns: int  # wall-clock deadline; 0 = none
    no_wait: bool
    heartbeat_ns: int
    last_sent_ns: int
    created_ns: int = 0
    sent: int = 0
    bytes_sent: int = 0


@dataclass(slots=True)
class FlowControl:
    """Push flow control, as consumer.go: a window that doubles on every answered FlowControl Request."""

    window: int = FC_LIMIT // 16
    outstanding: int = 0
    pending_subject: str = ""
    bytes_at_request: int = 0


class Wake:
    """An event whose `set` also (re)starts the consumer's task when it had ended (idle consumers).

    One waiter only (the consumer's task), so a single future replaces asyncio.Event's deque of waiters: with
    100k consumers that deque alone would be ~75 MB."""

    __slots__ = ("_flag", "_future", "_start")

    def __init__(self, start: Callable[[], None]) -> None:
        self._flag = False
        self._future: asyncio.Future[None] | None = None
        self._start = start

    def set(self) -> None:
        self._flag = True
        if self._future is not None and not self._future.done():
            self._future.set_result(None)
        self._start()

    def clear(self) -> None:
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    async def wait(self) -> None:
        if self._flag:
            return
        self._future = asyncio.get_running_loop().create_future()
        try:
            await self._future
        finally:
            self._future = None


@dataclass(eq=False, slots=True)
class Consumer:
    manager: ConsumerManager
    stream: Stream
    name: str
    config: ConsumerConfig
    created_ns: int
    state: acks.ConsumerState
    settings: acks.AckSettings = field(init=False)
    filters: list[str] = field(init=False)
    group: FilterGroup | None = None  # set while the consumer is in its stream's index (see consumer_index)
    _np: int = 0
    _base: int = 0
    _filter_tree: SubjectTree[str] | None = None
    lps: deque[int] = field(default_factory=deque)  # last_per_subject seqs still to deliver first
    waiting: deque[PullWaiter] = field(default_factory=deque)
    wake: Wake = field(init=False)
    task: asyncio.Task[None] | None = None
    deleted: bool = False
    last_active_ns: int = 0
    last_delivered_ns: int = 0
    last_ack_ns: int = 0
    last_sent_ns: int = 0  # push: anything sent to the deliver subject (for idle heartbeats)
    paused_until_ns: int = 0
    inactive_since_ns: int = 0
    fc: FlowControl = field(default_factory=FlowControl)
    _buffer: deque[reads.Found] = field(default_factory=deque)
    _resume_seq: int = 0
    _replay_base: tuple[int, int] | None = None  # (stored ns, wall ns) of the first replayed message
    # Earliest ack deadline, or NEVER; 0 = unknown. Scanning pending (up to max_ack_pending entries) on every wake
    # would cost O(pending) per ack; deadlines are only added by deliveries, naks and +WPI, which lower this hint.
    _deadline_hint: int = 0
    _last_expire_ns: int = 0
    _sleep_until_ns: int = NEVER  # when the task's wait ends by itself (NEVER: no timer, or no task)
    _from_lps: bool = False
    _stepping: bool = False

    def __post_init__(self) -> None:
        self.wake = Wake(self._ensure_task)
        self.configure(self.config)
        self._resume_seq = self.state.delivered.stream_seq + 1
        now = time.time_ns()
        self.last_active_ns = now
        self.inactive_since_ns = now

    def configure(self, cfg: ConsumerConfig) -> None:
        self.config = cfg
        self.settings = settings_for(cfg)
        self.filters = consumer_rules.filters(cfg)
        self._filter_tree = None
        if len(self.filters) > TREE_FILTERS:
            self._filter_tree = SubjectTree()
            for f in self.filters:
                self._filter_tree.insert(f, f)
        self.paused_until_ns = timefmt.parse(cfg.pause_until) if isinstance(cfg.pause_until, str) else 0

    # ---- properties ----------------------------------------------------------------------------------------

    @property
    def num_pending(self) -> int:
        """Messages still to deliver: own count plus the matching messages the group stored since (O(1))."""
        group = self.group
        return self._np + (group.added - self._base if group is not None else 0)

    @num_pending.setter
    def num_pending(self, value: int) -> None:
        self._np = value
        self._base = self.group.added if self.group is not None else 0

    @property
    def is_push(self) -> bool:
        return bool(self.config.deliver_subject)

    @property
    def durable(self) -> bool:
        return bool(self.config.durable_name)

    @property
    def leaf(self) -> LeafConnection:
        return self.manager.leaf

    def push_bound(self) -> bool:
        return self.is_push and self.leaf.has_interest(str(self.config.deliver_subject))

    def paused(self, now_ns: int) -> bool:
        return self.paused_until_ns > now_ns

    def matches(self, subject: str) -> bool:
        if self._filter_tree is not None:
            return next(self._filter_tree.match(subject), None) is not None
        return reads.matches_any(self.filters, subject)

    def touch(self) -> None:
        self.manager.mark_dirty(self)

    # ---- events from the outside ---------------------------------------------------------------------------

    def on_stored_ahead(self, seq: int) -> None:
        """A matching message was stored while this consumer starts beyond the stream's end (group.ahead)."""
        delivered = self.state.delivered.stream_seq
        if seq <= delivered:
            self._np -= 1  # the group counted it, but it is not pending for this consumer
        if seq >= delivered and self.group is not None:
            self.group.ahead.discard(self)

    def on_removed(self, seq: int) -> None:
        """A message this consumer's filters select left the stream (the caller matched the subject)."""
        if seq > self.state.delivered.stream_seq and seq not in self.lps:
            self.num_pending = max(0, self.num_pending - 1)
        if seq in self.lps:
            self.lps.remove(seq)
            self.num_pending = max(0, self.num_pending - 1)
        if acks.drop(self.state, seq):
            self.touch()
        if self._buffer and seq >= self._buffer[0].seq:  # a prefetched message is gone: read again
            self._buffer.clear()
            self._resume_seq = self.state.delivered.stream_seq + 1

    def on_purged(self) -> None:
        self.num_pending = 0
        self.lps.clear()
        self._buffer.clear()
        first = self.stream.committed.first_seq
        if acks.skip_before(self.state, first) or first - 1 > self.state.delivered.stream_seq:
            self.touch()
        self._resume_seq = self.state.delivered.stream_seq + 1

    def request_next(self, reply: str, body: bytes, now_ns: int) -> None:
        """A pull request (MSG.NEXT or +NXT): check it, queue it, or answer with a status at once."""
        if self.is_push:
            self._status(reply, 409, "Consumer is push based")
            return
        try:
            req = _parse_pull(body)
        except ValueError as exc:
            self._status(reply, 400, f"Bad Request - {exc}")
            return
        refusal = self._check_pull(req)
        if refusal:
            self._status(reply, 409, refusal)
            return
        if req.idle_heartbeat and (not req.expires or req.idle_heartbeat * 2 > req.expires):
            self._status(reply, 400, "Bad Request - heartbeat value too large")
            return
        max_waiting = self.config.max_waiting if isinstance(self.config.max_waiting, int) else 512
        if len(self.waiting) >= max_waiting:
            if req.idle_heartbeat:
                self.waiting.popleft()
            else:
                self._status(reply, 409, "Exceeded MaxWaiting")
                return
        self.last_active_ns = now_ns
        if req.no_wait and not self._stepping:
            self._expire_if_due(now_ns)  # its answer depends on redeliveries that are due, task or no task
        if req.no_wait and not req.expires and (self.paused(now_ns) or self._available() <= 0):
            self._status(reply, 404, "No Messages")  # nothing for it now: a no_wait request never queues
            return
        self.waiting.append(
            PullWaiter(
                reply=reply,
                batch=max(req.batch, 1),
                max_bytes=req.max_bytes,
                expires_ns=now_ns + req.expires if req.expires > 0 else 0,
                no_wait=req.no_wait,
                heartbeat_ns=req.idle_heartbeat,
                last_sent_ns=now_ns,
                created_ns=now_ns,
            )
        )
        self.manager.want_messages(self)
        if self._stepping or self.paused(now_ns) or self._deadline_hint <= now_ns:
            self.wake.set()  # the task has work to do first (or is doing it)
        elif self._deliver_pull_now(now_ns) or self.waiting or self._timer_needed():
            # Served at once without a trip through the task; the task takes over what is left (back-pressure,
            # or a request still open: it must arm the timers for its expiry and heartbeats), and keeps the ack
            # wait timer of what was just delivered (an idle task has ended; see Wake).
            self.wake.set()

    def _timer_needed(self) -> bool:
        """A deadline earlier than the task's own wake-up, or any deadline when no task waits on a timer (an idle
        task has ended; see Wake). A task in its step recomputes its timer afterwards."""
        return self._deadline_hint < self._sleep_until_ns and not self._stepping

    def _check_pull(self, req: PullRequest) -> str:
        cfg = self.config
        if isinstance(cfg.max_batch, int) and cfg.max_batch and req.batch > cfg.max_batch:
            return f"Exceeded MaxRequestBatch of {cfg.max_batch}"
        if isinstance(cfg.max_expires, int) and cfg.max_expires and req.expires > cfg.max_expires:
            return f"Exceeded MaxRequestExpires of {durations.format(cfg.max_expires)}"
        if isinstance(cfg.max_bytes, int) and cfg.max_bytes and req.max_bytes > cfg.max_bytes:
            return f"Exceeded MaxRequestMaxBytes of {cfg.max_bytes}"
        return ""

    def on_ack(self, info: ack_protocol.AckInfo, ack: ack_protocol.Ack, now_ns: int) -> list[int]:
        """Apply one ack; -> the stream seqs it acknowledged (for retention)."""
        st, s = self.state, self.settings
        seq = info.stream_seq
        self.last_active_ns = self.last_ack_ns = now_ns
        done: list[int] = []
        if ack.kind in (ack_protocol.AckKind.ACK, ack_protocol.AckKind.NEXT):
            done = acks.on_ack(st, s, seq)
        elif ack.kind is ack_protocol.AckKind.NAK:
            if acks.on_nak(st, s, seq, now_ns, ack.delay_ns):
                self.manager.advise_nak(self, info)
                self._lower_hint(seq)
        elif ack.kind is ack_protocol.AckKind.PROGRESS:
            if acks.on_progress(st, s, seq, now_ns):
                self._lower_hint(seq)
        elif ack.kind is ack_protocol.AckKind.TERM:
            if acks.on_term(st, seq):
                done = [seq]
                self.manager.advise_term(self, info, ack.reason)
        self.touch()
        if self.waiting or self.is_push:  # freed capacity or a redelivery: only useful to someone waiting
            self.wake.set()
        return done

    def _lower_hint(self, seq: int) -> None:
        """A message got a new deadline: the hint stays a lower bound without an O(pending) rescan (a hint
        that is too early only costs one expire pass that finds nothing)."""
        entry = self.state.pending.get(seq)
        if entry is not None and entry.deadline_ns and self._deadline_hint and entry.deadline_ns < self._deadline_hint:
            self._deadline_hint = entry.deadline_ns

    def on_fc_reply(self, subject: str) -> None:
        fc = self.fc
        if subject != fc.pending_subject:
            return  # an answer to an older request
        fc.outstanding = max(0, fc.outstanding - fc.bytes_at_request)
        fc.pending_subject = ""
        fc.window = min(fc.window * 2, FC_LIMIT)
        self.wake.set()

    def on_interest_change(self) -> None:
        self.wake.set()

    def close(self, reason_status: bool = True) -> None:
        """Stop the task; waiting pulls get `409 Consumer Deleted`."""
        self.deleted = True
        if reason_status:
            for w in self.waiting:
                self._status(w.reply, 409, "Consumer Deleted")
        self.waiting.clear()
        self.wake.set()

    # ---- the delivery task ---------------------------------------------------------------------------------

    def _ensure_task(self) -> None:
        if not self.deleted and (self.task is None or self.task.done()):
            self.manager.start_task(self)

    async def run(self) -> None:
        while not self.deleted:
            timeout = self._next_wakeup()
            if timeout is None and not self.wake.is_set():
                return  # idle: no timer and nothing to do; the next wake.set() starts a new task
            if timeout is None or timeout > 0:
                self._sleep_until_ns = NEVER if timeout is None else time.time_ns() + int(timeout * 1e9)
                try:
                    async with asyncio.timeout(timeout):
                        await self.wake.wait()
                except TimeoutError:
                    pass
                finally:
                    self._sleep_until_ns = NEVER
            self.wake.clear()
            if self.deleted:
                break
            self._stepping = True
            try:
                await self._step(time.time_ns())
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("consumer '%s > %s' delivery step failed", self.stream.name, self.name)
                await asyncio.sleep(0.1)
            finally:
                self._stepping = False

    def _next_wakeup(self) -> float | None:
        now = time.time_ns()
        times: list[int] = []
        if not self._deadline_hint:
            self._deadline_hint = acks.next_deadline(self.state) or NEVER
        if self._deadline_hint != NEVER:
            times.append(self._expire_due_at())
        for w in self.waiting:
            if w.expires_ns:
                times.append(w.expires_ns)
            if w.heartbeat_ns:
                times.append(w.last_sent_ns + w.heartbeat_ns)
        hb = self.config.idle_heartbeat
        if self.is_push and isinstance(hb, int) and hb:
            times.append(self.last_sent_ns + hb)
        if self.paused_until_ns > now:
            times.append(self.paused_until_ns)
        if not times:
            return None
        return max(0.0, (min(times) - now) / 1e9)

    async def _step(self, now: int) -> None:
        self._expire_if_due(now)
        self._expire_waiters(now)
        if self.is_push:
            self._push_heartbeat(now)
        if self.paused(now):
            if not self.is_push:
                self._no_messages(lambda w: bool(w.sent or not w.expires_ns))
            return
        if self.is_push:
            await self._deliver_push(now)
        else:
            await self._deliver_pull(now)

    def _expire_if_due(self, now: int) -> None:
        """Move deliveries whose ack wait ran out to the redeliver queue (at most one pass per EXPIRE_EVERY)."""
        if not self._deadline_hint:
            self._deadline_hint = acks.next_deadline(self.state) or NEVER
        if self._deadline_hint != NEVER and now >= self._expire_due_at():
            for event in acks.expire(self.state, self.settings, now):
                self.manager.advise_max_deliveries(self, event)
                self.touch()
            self._last_expire_ns = now
            self._deadline_hint = acks.next_deadline(self.state) or NEVER

    def _expire_due_at(self) -> int:
        """When the next expire pass may run: the earliest deadline, but not sooner than EXPIRE_EVERY after the
        last pass (see EXPIRE_EVERY)."""
        gap = min(EXPIRE_EVERY, max(1_000_000, self.settings.ack_wait_ns // 4))
        return max(self._deadline_hint, self._last_expire_ns + gap)

    def _expire_waiters(self, now: int) -> None:
        keep: deque[PullWaiter] = deque()
        for w in self.waiting:
            if w.expires_ns and w.expires_ns <= now:
                self._status(w.reply, 408, "Request Timeout", self._pending_headers(w))
                continue
            if not self.leaf.has_interest(w.reply) and now - w.created_ns > INTEREST_GRACE:
                continue  # the requester went away (LS-): drop silently
            if w.heartbeat_ns and now - w.last_sent_ns >= w.heartbeat_ns:
                self._heartbeat(w.reply)
                w.last_sent_ns = now
            keep.append(w)
        self.waiting = keep

    def _no_messages(self, which: Callable[[PullWaiter], bool]) -> None:
        """Answer `404 No Messages` to the no_wait requests `which` selects, and forget them."""
        keep: deque[PullWaiter] = deque()
        for w in self.waiting:
            if w.no_wait and which(w):
                self._status(w.reply, 404, "No Messages")
            else:
                keep.append(w)
        self.waiting = keep

    def _available(self) -> int:
        """Messages a new request could get now, after the requests already waiting."""
        ready = self.num_pending + len(self.state.redeliver_queue)
        return ready - sum(w.batch - w.sent for w in self.waiting)

    def _pending_headers(self, w: PullWaiter) -> dict[str, str]:
        left_bytes = max(0, w.max_bytes - w.bytes_sent) if w.max_bytes else 0
        return {"Nats-Pending-Messages": str(w.batch - w.sent), "Nats-Pending-Bytes": str(left_bytes)}

    async def _deliver_pull(self, now: int) -> None:
        while self._deliver_pull_now(now):
            await self.leaf.wait_writable()
            await asyncio.sleep(0)  # one slice sent: let requests, publishes and other consumers in

    def _deliver_pull_now(self, now: int) -> bool:
        """Serve waiting pull requests with what is available; True when stopped by leaf back-pressure or
        after a slice of SLICE messages (the caller yields and calls again)."""
        sent = 0
        while self.waiting:
            w = self.waiting[0]
            if not self.leaf.connected:
                return False
            if not self.leaf.has_interest(w.reply):
                # The request can come in on the client connection before the hub has told the leaf about the
                # requester's inbox: wait for its LS+ (the manager wakes us) rather than send into the void.
                if now - w.created_ns <= INTEREST_GRACE:
                    return False
                self.waiting.popleft()
                continue
            try:
                item = self._take(now, w.max_bytes - w.bytes_sent if w.max_bytes else 0)
            except _TooBig:
                self._status(w.reply, 409, "Message Size Exceeds MaxBytes", self._pending_headers(w))
                self.waiting.popleft()
                continue
            if item is None:
                if w.no_wait and (w.sent or not w.expires_ns):
                    self._status(w.reply, 404, "No Messages")
                    self.waiting.popleft()
                    continue
                return False
            found, size, delivery, reply, hdrs, data = item
            self._send(w.reply, reply, hdrs, data, None, delivery)
            w.sent += 1
            w.bytes_sent += size
            w.last_sent_ns = now
            if w.sent >= w.batch:
                self.waiting.popleft()
                if w.max_bytes and w.bytes_sent < w.max_bytes:
                    self._status(w.reply, 409, "Batch Completed", self._pending_headers(w))
            elif w.max_bytes and w.bytes_sent >= w.max_bytes:
                self.waiting.popleft()  # the byte budget is spent exactly: the request is over
            sent += 1
            if sent >= SLICE or self.leaf.pending_bytes > 4 << 20:
                return True
        return False

    async def _deliver_push(self, now: int) -> None:
        if not self.push_bound() or not self.leaf.connected:
            return
        deliver = str(self.config.deliver_subject)
        group = self.config.deliver_group
        queues = self.leaf.queue_groups(deliver) if group else None
        if group and isinstance(group, str) and queues is not None and group not in queues:
            queues.append(group)
        fc_on = self.config.flow_control is True
        sent = 0
        while True:
            if fc_on and self.fc.outstanding > self.fc.window:
                return
            item = self._take(now)
            if item is None:
                return
            found, size, delivery, reply, hdrs, data = item
            if self.config.replay_policy == ReplayPolicy.ORIGINAL and delivery.num_delivered == 1:
                await self._pace(found.ts_ns)
            self._send(deliver, reply, hdrs, data, queues, delivery)
            self.last_sent_ns = time.time_ns()
            sent += 1
            if fc_on:
                self.fc.outstanding += size
                if not self.fc.pending_subject and self.fc.outstanding > self.fc.window // 2:
                    self._flow_control_request(deliver, queues)
            rate = self.config.rate_limit_bps
            if isinstance(rate, int) and rate > 0:
                await asyncio.sleep(size * 8 / rate)
            elif sent % SLICE == 0 or self.leaf.pending_bytes > 4 << 20:
                await self.leaf.wait_writable()
                await asyncio.sleep(0)  # let acks and other consumers in

    async def _pace(self, ts_ns: int) -> None:
        now = time.time_ns()
        if self._replay_base is None:
            self._replay_base = (ts_ns, now)
            return
        due = self._replay_base[1] + (ts_ns - self._replay_base[0])
        if due > now:
            await asyncio.sleep((due - now) / 1e9)

    def _flow_control_request(self, deliver: str, queues: list[str] | None) -> None:
        subject = f"$JS.FC.{self.stream.name}.{self.name}.{secrets.token_hex(2)}"
        self.fc.pending_subject = subject
        self.fc.bytes_at_request = self.fc.outstanding
        self.leaf.send(deliver, subject, status(100, "FlowControl Request"), b"", queues)

    def _push_heartbeat(self, now: int) -> None:
        hb = self.config.idle_heartbeat
        if not isinstance(hb, int) or not hb or now - self.last_sent_ns < hb:
            return
        if self.push_bound():
            self._heartbeat(str(self.config.deliver_subject), stalled=self.fc.pending_subject)
        self.last_sent_ns = now

    def _heartbeat(self, to: str, stalled: str = "") -> None:
        extra = {
            "Nats-Last-Consumer": str(self.state.delivered.consumer_seq),
            "Nats-Last-Stream": str(self.state.delivered.stream_seq),
        }
        if stalled:
            extra["Nats-Consumer-Stalled"] = stalled
        queues = self.leaf.queue_groups(to) or None
        self.leaf.send(to, None, status(100, "Idle Heartbeat", extra), b"", queues)

    def _status(self, to: str, code: int, text: str, extra: dict[str, str] | None = None) -> None:
        if to:
            self.leaf.send(to, None, status(code, text, extra), b"")

    # ---- choosing and recording one delivery ---------------------------------------------------------------

    def _take(self, now: int, room: int = 0) -> tuple[reads.Found, int, acks.Delivery, str, bytes | None, bytes] | None:
        """The next message to send (redeliveries first), recorded as delivered; None when there is none.

        `room` (bytes, 0 = unlimited) is a pull request's remaining max_bytes: a message that does not fit raises
        `_TooBig` and stays undelivered, as if it had not been looked at.
        """
        found = self._next_redelivery()
        is_new = found is None
        if found is None:
            if not acks.can_deliver_new(self.state, self.settings):
                return None
            found = self._next_new()
            if found is None:
                return None
        st = self.state
        count = acks.num_delivered(st, found.seq) + 1
        pending = max(0, self.num_pending - 1) if is_new else self.num_pending
        subject = found.subject.decode()
        ack = ack_protocol.ack_subject(
            self.stream.name, self.name, count, found.seq, st.delivered.consumer_seq + 1, found.ts_ns, pending
        )
        hdrs: bytes | None = found.hdrs or None
        data = found.data
        if self.config.headers_only is True:
            hdrs = headers.build([("Nats-Msg-Size", str(len(data)))], hdrs)
            data = b""
        size = len(subject) + len(ack) + (len(hdrs) if hdrs else 0) + len(data)
        if room and size > room:
            if is_new:
                self._unread(found)
            raise _TooBig
        if is_new:
            self.num_pending = pending
        delivery = acks.on_deliver(st, self.settings, found.seq, now)
        entry = st.pending.get(found.seq)
        if entry is not None and entry.deadline_ns and entry.deadline_ns < self._deadline_hint:
            self._deadline_hint = entry.deadline_ns
        self.last_delivered_ns = now
        self.last_active_ns = now
        self.touch()
        return found, size, delivery, f"{ack}@{subject}", hdrs, data

    def _unread(self, found: reads.Found) -> None:
        if self._from_lps:
            self.lps.appendleft(found.seq)
        else:
            self._buffer.appendleft(found)

    def _send(
        self, to: str, reply: str, hdrs: bytes | None, data: bytes, queues: list[str] | None, d: acks.Delivery
    ) -> None:
        try:
            self.leaf.send(to, reply, hdrs, data, queues)
        except ValueError:
            logger.error(
                "consumer '%s > %s': message %d is larger than the server's max_payload; terminated",
                self.stream.name,
                self.name,
                d.stream_seq,
            )
            acks.on_term(self.state, d.stream_seq)

    def _next_redelivery(self) -> reads.Found | None:
        while True:
            seq = acks.next_to_redeliver(self.state, self.settings)
            if seq is None:
                return None
            with self.manager.store.read() as txn:
                found = reads.load(txn, self.stream, seq)
            if found is not None:
                return found
            acks.drop(self.state, seq)
            self.touch()

    def _next_new(self) -> reads.Found | None:
        self._from_lps = bool(self.lps)
        while self.lps:
            seq = self.lps.popleft()
            with self.manager.store.read() as txn:
                found = reads.load(txn, self.stream, seq)
            if found is not None and seq > self.state.delivered.stream_seq:
                if not self.lps:
                    self._after_last_per_subject()
                return found
        if not self._buffer:
            start = max(self._resume_seq, self.state.delivered.stream_seq + 1)
            if start > self.stream.committed.last_seq:
                return None
            with self.manager.store.read() as txn:
                match = self.matches if self._filter_tree is not None else None
                got, self._resume_seq = reads.next_matching(
                    txn, self.stream, self.filters, start, _PREFETCH, match=match
                )
            self._buffer.extend(got)
            if not got:
                return None
        return self._buffer.popleft()

    def _after_last_per_subject(self) -> None:
        """The last-per-subject snapshot is done: continue with what was stored after it was taken."""
        self._resume_seq = max(self._resume_seq, self.state.delivered.stream_seq + 1)


class _TooBig(Exception):
    """The next message is larger than what is left of a pull request's max_bytes."""


def _parse_pull(body: bytes) -> PullRequest:
    text = body.strip()
    if not text:
        return PullRequest(batch=1)
    if text.isdigit():
        if len(text) > 18:  # past int64's digits: the server cannot read it either
            raise ValueError(f"batch {text.decode()} is out of range")
        return PullRequest(batch=int(text))
    try:
        req = gojson.decode(text, PullRequest, "")  # out-of-range numbers raise GoJsonError, a ValueError
    except msgspec.DecodeError as exc:
        raise ValueError(str(exc)) from None
    if req.batch < 0 or req.expires < 0 or req.max_bytes < 0 or req.idle_heartbeat < 0:
        raise ValueError("negative values are not allowed")
    if req.group or req.min_pending or req.min_ack_pending or req.priority:
        raise ValueError("priority groups are not supported by this consumer")
    return req


def initial_position(cfg: ConsumerConfig, stream: Stream, txn: object, filters: list[str]) -> tuple[int, list[int]]:
    """Where a new consumer starts: -> (first stream seq to consider, last-per-subject seqs to deliver first)."""
    import lmdb  # noqa: F401  (txn is an lmdb.Transaction)

    c = stream.committed
    policy = cfg.deliver_policy
    if policy == DeliverPolicy.ALL:
        return max(c.first_seq, 1), []
    if policy == DeliverPolicy.NEW:
        return c.last_seq + 1, []
    if policy == DeliverPolicy.BY_START_SEQUENCE:
        return int(cfg.opt_start_seq) if isinstance(cfg.opt_start_seq, int) else 1, []
    if policy == DeliverPolicy.BY_START_TIME:
        ts = timefmt.parse(str(cfg.opt_start_time))
        return reads.first_seq_at_or_after(txn, stream, ts), []  # type: ignore[arg-type]
    if policy == DeliverPolicy.LAST:
        if filters and not reads.covers_all(stream, filters):
            last = max((reads.last_by_subject(txn, stream, f) for f in filters), key=_seq, default=None)  # type: ignore[arg-type]
            return (last.seq if last is not None else c.last_seq + 1), []
        return max(c.last_seq, 1), []
    seqs = reads.last_per_subject(txn, stream, filters)  # type: ignore[arg-type]
    return (seqs[0] if seqs else c.last_seq + 1), seqs


def _seq(found: reads.Found | None) -> int:
    return found.seq if found is not None else 0
