"""One consumer's runtime: choosing the next message, applying acks, redelivery timers, and the delivery task.

All decisions about acks and redelivery are in ``acks`` (pure functions); this module applies them, reads
messages (``reader``) and hands them to pull requests (``pull``) or the deliver subject (``push``), which send
them over the leaf connection so receivers see the original subject and a ``$JS.ACK`` reply. A consumer with
something to do has one task (``run``) that wakes on new messages, acks, pull requests, interest changes and its
own timers; an idle one (no timer due, nothing waiting) has none (see ``wake``). State changes mark the consumer
dirty; its host persists them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field

from streamd.consumers import acks, priority, pull, push
from streamd.consumers import rules as consumer_rules
from streamd.consumers.delivery import Taken, TooBig, status
from streamd.consumers.host import ConsumerHost
from streamd.consumers.index import FilterGroup
from streamd.consumers.pull import PullWaiter
from streamd.consumers.push import FlowControl
from streamd.consumers.reader import Reader
from streamd.consumers.wake import Wake
from streamd.store import reads
from streamd.store.stream import Stream
from streamd.transport.leaf import LeafConnection
from streamd.wire import ack_protocol, headers, timefmt
from streamd.wire.models import ConsumerConfig, Retention

logger = logging.getLogger(__name__)

NEVER = 2**63 - 1
# Expire passes scan every pending message: deadlines that come due one after another (a burst of 100k
# deliveries) are handled in batches, at most one pass per EXPIRE_EVERY (or a quarter of the ack wait if
# shorter), rather than one O(pending) scan per message. A redelivery may thus go out up to that much late.
EXPIRE_EVERY = 100_000_000


@dataclass(eq=False, slots=True)
class Consumer:
    host: ConsumerHost[Consumer]
    stream: Stream
    name: str
    config: ConsumerConfig
    filters: list[str]  # computed once, by the config rules (consumers.rules.filters)
    created_ns: int
    state: acks.ConsumerState
    settings: acks.AckSettings = field(init=False)
    reader: Reader = field(init=False)
    group: FilterGroup[Consumer] | None = None  # set while the consumer is in its stream's index
    _np: int = 0
    _base: int = 0
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
    replay_base: tuple[int, int] | None = None  # push, replay original: (stored ns, wall ns) of the first message
    # Earliest ack deadline, or NEVER; 0 = unknown. Scanning pending (up to max_ack_pending entries) on every wake
    # would cost O(pending) per ack; deadlines are only added by deliveries, naks and +WPI, which lower this hint.
    _deadline_hint: int = 0
    _last_expire_ns: int = 0
    _sleep_until_ns: int = NEVER  # when the task's wait ends by itself (NEVER: no timer, or no task)
    _stepping: bool = False
    _ack_prefix: str = ""  # ack_protocol.ack_prefix for this consumer, built once
    # A mirror's or source's ack-none (`direct`) consumer of a workqueue: each delivery takes the message off the
    # queue, as in nats-server (set by configure; a stream's retention never changes to or from workqueue).
    consumes: bool = False
    priority_policy: str = priority.NONE
    pin: priority.Pin | None = None  # pinned_client: the pinned requester (in memory only, as on the server)

    def __post_init__(self) -> None:
        self.wake = Wake(self._ensure_task)
        self.reader = Reader(self.state.delivered.stream_seq + 1)
        self._ack_prefix = ack_protocol.ack_prefix(self.stream.name, self.name)
        self.configure(self.config, self.filters)
        now = time.time_ns()
        self.last_active_ns = now
        self.inactive_since_ns = now

    def configure(self, cfg: ConsumerConfig, filters: list[str]) -> None:
        """Take a (normalised) config; `filters` are its filters, computed once by whoever normalised it."""
        self.config = cfg
        self.settings = consumer_rules.ack_settings(cfg)
        self.filters = filters
        self.reader.set_filters(filters)
        self.paused_until_ns = timefmt.parse(cfg.pause_until) if isinstance(cfg.pause_until, str) else 0
        self.consumes = (
            self.stream.config.retention == Retention.WORKQUEUE and self.settings.ack_policy is acks.AckPolicy.NONE
        )
        policy = cfg.priority_policy
        self.priority_policy = policy if isinstance(policy, str) and policy in priority.POLICIES else priority.NONE
        if self.priority_policy != priority.PINNED:
            self.pin = None

    # ---- properties ----------------------------------------------------------------------------------------

    @property
    def lps(self) -> deque[int]:
        """Last-per-subject seqs still to deliver first."""
        return self.reader.lps

    @property
    def num_pending(self) -> int:
        """Messages still to deliver: own count plus the matching messages the group stored since (O(1))."""
        group = self.group
        return self._np + (group.added - self._base if group is not None else 0)

    @num_pending.setter
    def num_pending(self, value: int) -> None:
        self._np = value
        self._base = self.group.added if self.group is not None else 0

    def regroup(self, group: FilterGroup[Consumer] | None) -> None:
        pending = self.num_pending
        self.group = group
        self.num_pending = pending  # from now on counted against this group's `added`

    @property
    def delivered_seq(self) -> int:
        return self.state.delivered.stream_seq

    @property
    def wants_messages(self) -> bool:
        return self.is_push or bool(self.waiting)

    @property
    def is_push(self) -> bool:
        return bool(self.config.deliver_subject)

    @property
    def leaf(self) -> LeafConnection:
        return self.host.leaf

    def push_bound(self) -> bool:
        return self.is_push and self.leaf.has_interest(str(self.config.deliver_subject))

    def paused(self, now_ns: int) -> bool:
        return self.paused_until_ns > now_ns

    def touch(self) -> None:
        self.host.mark_dirty(self)

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
        lps = self.reader.lps
        if seq > self.state.delivered.stream_seq and seq not in lps:
            self.num_pending = max(0, self.num_pending - 1)
        if seq in lps:
            lps.remove(seq)
            self.num_pending = max(0, self.num_pending - 1)
        if acks.drop(self.state, seq):
            self.touch()
        self.reader.forget(seq, self.state.delivered.stream_seq)

    def on_purged(self) -> None:
        self.num_pending = 0
        self.reader.lps.clear()
        first = self.stream.committed.first_seq
        if acks.skip_before(self.state, first) or first - 1 > self.state.delivered.stream_seq:
            self.touch()
        self.reader.restart(self.state.delivered.stream_seq)

    def request_next(self, reply: str, body: bytes, now_ns: int) -> None:
        """A pull request (MSG.NEXT or +NXT): check it, queue it, or answer with a status at once."""
        w = pull.admit(self, reply, body, now_ns)
        if w is None:
            return
        self.last_active_ns = now_ns
        if w.no_wait and not self._stepping:
            self._expire_if_due(now_ns)  # its answer depends on redeliveries that are due, task or no task
        if w.no_wait and not w.expires_ns and (self.paused(now_ns) or pull.available(self) <= 0):
            status(self.leaf, reply, 404, "No Messages")  # nothing for it now: a no_wait request never queues
            return
        pull.enqueue(self, w)
        self.host.want_messages(self)
        if self._stepping or self.paused(now_ns) or self._deadline_hint <= now_ns:
            self.wake.set()  # the task has work to do first (or is doing it)
        elif pull.serve(self, now_ns) or self.waiting or self._timer_needed():
            # Served at once without a trip through the task; the task takes over what is left (back-pressure,
            # or a request still open: it must arm the timers for its expiry and heartbeats), and keeps the ack
            # wait timer of what was just delivered (an idle task has ended; see Wake).
            self.wake.set()

    def _timer_needed(self) -> bool:
        """A deadline earlier than the task's own wake-up, or any deadline when no task waits on a timer (an idle
        task has ended; see Wake). A task in its step recomputes its timer afterwards."""
        return self._deadline_hint < self._sleep_until_ns and not self._stepping

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
                self.host.advise_nak(self, info)
                self._lower_hint(seq)
        elif ack.kind is ack_protocol.AckKind.PROGRESS:
            if acks.on_progress(st, s, seq, now_ns):
                self._lower_hint(seq)
        elif ack.kind is ack_protocol.AckKind.TERM:
            if acks.on_term(st, seq):
                done = [seq]
                self.host.advise_term(self, info, ack.reason)
        self.touch()
        if self.waiting or self.is_push:  # freed capacity or a redelivery: only useful to someone waiting
            self.wake.set()
        return done

    def on_acks(self, seqs: list[int], now_ns: int) -> list[int]:
        """Plain `+ACK`s of one socket read, applied as one batch; -> the stream seqs acknowledged."""
        self.last_active_ns = self.last_ack_ns = now_ns
        done = acks.on_acks(self.state, self.settings, seqs)
        self.touch()
        if self.waiting or self.is_push:
            self.wake.set()
        return done

    def _lower_hint(self, seq: int) -> None:
        """A message got a new deadline: the hint stays a lower bound without an O(pending) rescan (a hint
        that is too early only costs one expire pass that finds nothing)."""
        entry = self.state.pending.get(seq)
        if entry is not None and entry.deadline_ns and self._deadline_hint and entry.deadline_ns < self._deadline_hint:
            self._deadline_hint = entry.deadline_ns

    def set_pin(self, pin: priority.Pin, group: str) -> None:
        self.pin = pin
        self.host.advise_pinned(self, group, pin.id)

    def unpin(self, group: str, reason: str) -> None:
        """Release the pin (CONSUMER.UNPIN: "admin"; the pinned client stopped asking: "timeout"). The server
        advises it even when nobody was pinned."""
        self.pin = None
        self.host.advise_unpinned(self, group, reason)
        self.wake.set()  # the next request without an id gets the pin

    def on_fc_reply(self, subject: str) -> None:
        if self.fc.answered(subject):
            self.wake.set()

    def on_interest_change(self) -> None:
        self.wake.set()

    def close(self, reason_status: bool = True) -> None:
        """Stop the task; waiting pulls get `409 Consumer Deleted`."""
        self.deleted = True
        if reason_status:
            for w in self.waiting:
                status(self.leaf, w.reply, 409, "Consumer Deleted")
        self.waiting.clear()
        self.wake.set()

    # ---- the delivery task ---------------------------------------------------------------------------------

    def _ensure_task(self) -> None:
        if not self.deleted and (self.task is None or self.task.done()):
            self.task = self.host.spawn(self.run(), f"streamd-consumer-{self.stream.name}-{self.name}")

    async def run(self) -> None:
        """The delivery task. It runs in the host's TaskGroup, so a failure ends this task (the next wake starts
        another), never the group."""
        try:
            while not self.deleted:
                timeout = self._next_wakeup()
                if timeout is None and not self.wake.is_set():
                    return  # idle: no timer and nothing to do; the next wake.set() starts a new task
                if timeout is None or timeout > 0:
                    await self._wait(timeout)
                self.wake.clear()
                if self.deleted:
                    break
                self._stepping = True
                try:
                    await self._step(time.time_ns())
                except Exception:
                    logger.exception("consumer '%s > %s' delivery step failed", self.stream.name, self.name)
                    await asyncio.sleep(0.1)
                finally:
                    self._stepping = False
        except Exception:
            logger.exception("consumer '%s > %s' delivery task failed", self.stream.name, self.name)

    async def _wait(self, timeout: float | None) -> None:
        """Until woken, or `timeout` seconds (None: no timer)."""
        self._sleep_until_ns = NEVER if timeout is None else time.time_ns() + int(timeout * 1e9)
        try:
            async with asyncio.timeout(timeout):
                await self.wake.wait()
        except TimeoutError:
            pass
        finally:
            self._sleep_until_ns = NEVER

    def _next_wakeup(self) -> float | None:
        now = time.time_ns()
        times = list(pull.wakeups(self.waiting))
        if not self._deadline_hint:
            self._deadline_hint = acks.next_deadline(self.state) or NEVER
        if self._deadline_hint != NEVER:
            times.append(self._expire_due_at())
        hb = push.heartbeat_ns(self)
        if self.is_push and hb:
            times.append(self.last_sent_ns + hb)
        if self.paused_until_ns > now:
            times.append(self.paused_until_ns)
        if self.pin is not None:
            times.append(self.pin.deadline_ns)
        if not times:
            return None
        return max(0.0, (min(times) - now) / 1e9)

    async def _step(self, now: int) -> None:
        self._expire_if_due(now)
        if self.pin is not None and self.pin.deadline_ns <= now:
            self.unpin(self.pin.group, "timeout")
        pull.expire(self, now)
        if self.is_push:
            push.idle_heartbeat(self, now)
        if self.paused(now):
            if not self.is_push:
                pull.no_messages(self, lambda w: bool(w.sent or not w.expires_ns))
            return
        if self.is_push:
            await push.deliver(self, now)
        else:
            await pull.serve_all(self, now)

    def _expire_if_due(self, now: int) -> None:
        """Move deliveries whose ack wait ran out to the redeliver queue (at most one pass per EXPIRE_EVERY)."""
        if not self._deadline_hint:
            self._deadline_hint = acks.next_deadline(self.state) or NEVER
        if self._deadline_hint != NEVER and now >= self._expire_due_at():
            for event in acks.expire(self.state, self.settings, now):
                self.host.advise_max_deliveries(self, event)
                self.touch()
            self._last_expire_ns = now
            self._deadline_hint = acks.next_deadline(self.state) or NEVER

    def _expire_due_at(self) -> int:
        """When the next expire pass may run: the earliest deadline, but not sooner than EXPIRE_EVERY after the
        last pass (see EXPIRE_EVERY)."""
        gap = min(EXPIRE_EVERY, max(1_000_000, self.settings.ack_wait_ns // 4))
        return max(self._deadline_hint, self._last_expire_ns + gap)

    # ---- choosing and recording one delivery ---------------------------------------------------------------

    def take(self, now: int, room: int = 0, pin_id: str = "") -> Taken | None:
        """The next message to send (redeliveries first), recorded as delivered; None when there is none.

        `room` (bytes, 0 = unlimited) is a pull request's remaining max_bytes: a message that does not fit raises
        `TooBig` and stays undelivered, as if it had not been looked at. `pin_id` goes out as `Nats-Pin-Id` (not
        counted against `room`, as on the server).
        """
        st = self.state
        found = self._next_redelivery() if st.redeliver_queue else None
        is_new = found is None
        if found is None:
            if not acks.can_deliver_new(st, self.settings):
                return None
            found = self.reader.next_new(self.host.store, self.stream, st.delivered.stream_seq)
            if found is None:
                return None
            count = 1
            pending = max(0, self.num_pending - 1)
        else:
            count = acks.num_delivered(st, found.seq) + 1
            pending = self.num_pending
        subject = found.subject.decode()
        ack = f"{self._ack_prefix}{count}.{found.seq}.{st.delivered.consumer_seq + 1}.{found.ts_ns}.{pending}"
        hdrs: bytes | None = found.hdrs or None
        data = found.data
        if self.config.headers_only is True:
            hdrs = headers.build([("Nats-Msg-Size", str(len(data)))], hdrs)
            data = b""
        size = len(subject) + len(ack) + (len(hdrs) if hdrs else 0) + len(data)
        if room and size > room:
            if is_new:
                self.reader.unread(found)
            raise TooBig
        if pin_id:
            hdrs = headers.build([("Nats-Pin-Id", pin_id)], hdrs)
            size = len(subject) + len(ack) + len(hdrs) + len(data)
        if is_new:
            self.num_pending = pending
        delivery = acks.on_deliver(st, self.settings, found.seq, now)
        if self.consumes:
            self.host.consumed(self, found.seq)
        entry = st.pending.get(found.seq)
        if entry is not None and entry.deadline_ns and entry.deadline_ns < self._deadline_hint:
            self._deadline_hint = entry.deadline_ns
        self.last_delivered_ns = self.last_active_ns = now
        self.touch()
        return found, size, delivery, f"{ack}@{subject}", hdrs, data

    def send(self, to: str, taken: Taken, queues: list[str] | None = None) -> None:
        _found, _size, d, reply, hdrs, data = taken
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
            with self.host.store.read() as txn:
                found = reads.load(txn, self.stream, seq)
            if found is not None:
                return found
            acks.drop(self.state, seq)
            self.touch()
