"""The consumer delivery/ack state machine as pure functions: no I/O, no clock reads, no asyncio.

The consumer runtime owns one `ConsumerState` per consumer, calls these functions with the current time as a
parameter, sends what they decide and persists the state (`encode_state`), so every rule here is testable without a
server and replayable after a restart. The record mirrors nats-server's `ConsumerState` (store.go).

A runtime's delivery loop::

    for event in expire(state, settings, now_ns):            # ack waits that ran out; max_deliver drops
        publish MAX_DELIVERIES advisory for event             # each message is reported exactly once
    seq = next_to_redeliver(state, settings)                  # redeliveries go before new messages
    if seq is None and can_deliver_new(state, settings):
        seq = next matching stream seq after state.delivered.stream_seq
    delivery = on_deliver(state, settings, seq, now_ns)       # -> num_delivered, consumer_seq for the ack subject
    wake up again at next_deadline(state)

Time: deadlines are persisted, so pass wall-clock nanoseconds (`time.time_ns()`), as nats-server stores Unix
nanoseconds in `Pending.Timestamp`; monotonic time restarts at boot and would make stored deadlines meaningless.

Ack floor rule (`ack_floor`, nats-server `adflr`/`asflr`). It moves only when a message leaves pending (ack, term,
drop, max_deliver), on `skip_before`, and for AckNone on every delivery (floor = delivered):

- nothing pending → the floor is `delivered`;
- the message that left was the lowest outstanding delivery (`consumer_seq == floor.consumer_seq + 1`) or the lowest
  outstanding stream seq (`stream_seq == floor.stream_seq + 1`) → the floor becomes (lowest pending consumer seq − 1,
  lowest pending stream seq − 1);
- otherwise it stays.

For explicit acks without redeliveries this is exactly nats-server's `moveAckFloor` (consumer.go), including its
laziness: a filtered consumer whose first pending message is stream seq 5 keeps a floor of 0 until something is acked.
With redeliveries nats-server pairs the floor consumer seq with the lowest pending *stream* seq, which can claim a
pending delivery as acked or stall the floor; here each half is the minimum in its own sequence space, so nothing at or
below either half is ever pending and neither half decreases. A superseded delivery (one that was redelivered) counts
as expired. AckAll acks by stream seq as nats-server does (everything pending at or below the acked stream seq, even
messages redelivered after it); nats-server then sets the floor to the acked pair, which this rule matches unless a
filtered consumer has a gap above the acked seq (then the stream half here is higher, still never past pending).

Memory: `pending`, `redelivered` and `redeliver_queue` only hold messages that are pending, and `on_deliver` refuses a
new message while `can_deliver_new` is false, so all three are bounded by `max_ack_pending` (unbounded only when it is
unlimited). Floor moves and `expire` scan pending, i.e. cost O(max_ack_pending).
"""

from __future__ import annotations

import enum
from typing import Final

import msgspec

__all__ = [
    "DEFAULT_ACK_WAIT_NS",
    "AckPolicy",
    "AckSettings",
    "ConsumerState",
    "Delivery",
    "MaxDeliveriesEvent",
    "Pending",
    "SequencePair",
    "ack_wait_for",
    "can_deliver_new",
    "decode_state",
    "drop",
    "encode_state",
    "expire",
    "next_deadline",
    "next_to_redeliver",
    "num_ack_pending",
    "num_delivered",
    "num_redelivered",
    "on_ack",
    "on_acks",
    "on_deliver",
    "on_nak",
    "on_progress",
    "on_term",
    "skip_before",
]

DEFAULT_ACK_WAIT_NS: Final = 30_000_000_000


class AckPolicy(enum.StrEnum):
    NONE = "none"
    ALL = "all"
    EXPLICIT = "explicit"


class AckSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The consumer config fields that drive acking, already normalised by the runtime (server defaults applied).

    `ack_wait_ns <= 0` without backoff means deliveries never time out. `max_deliver` and `max_ack_pending` of 0 or
    less mean unlimited.
    """

    ack_policy: AckPolicy = AckPolicy.EXPLICIT
    ack_wait_ns: int = DEFAULT_ACK_WAIT_NS
    backoff_ns: list[int] = msgspec.field(default_factory=list)
    max_deliver: int = -1
    max_ack_pending: int = -1


# The members as plain module constants for the per-message paths: on Python 3.11 `AckPolicy.NONE` is a
# descriptor lookup that costs about three attribute reads (measured), once per delivery and per ack.
_NONE: Final = AckPolicy.NONE
_ALL: Final = AckPolicy.ALL
_EXPLICIT: Final = AckPolicy.EXPLICIT


class SequencePair(msgspec.Struct, frozen=True):
    consumer_seq: int = 0
    stream_seq: int = 0


class Pending(msgspec.Struct, array_like=True, gc=False):
    """An unacknowledged delivery (nats-server `Pending`); `deadline_ns == 0` means no timer (never, or queued)."""

    consumer_seq: int
    delivered_ns: int
    deadline_ns: int


class ConsumerState(msgspec.Struct, kw_only=True):
    """Everything the runtime persists for a consumer (nats-server store.go `ConsumerState` plus the redeliver queue).

    `delivered.consumer_seq` is the last delivery sequence handed out (every redelivery gets a new one);
    `delivered.stream_seq` the highest stream seq handed out or skipped. `pending` maps stream seq → its current
    delivery; `redelivered` maps stream seq → deliveries so far, only for pending messages delivered more than once
    (nats-server `rdc`); `redeliver_queue` lists pending stream seqs due for redelivery now, in order (`rdq`).
    """

    delivered: SequencePair = SequencePair()
    ack_floor: SequencePair = SequencePair()
    pending: dict[int, Pending] = msgspec.field(default_factory=dict)
    redelivered: dict[int, int] = msgspec.field(default_factory=dict)
    redeliver_queue: list[int] = msgspec.field(default_factory=list)


class Delivery(msgspec.Struct, frozen=True):
    """What `on_deliver` decided: the numbers for the ack subject (`num_delivered` > 1 means a redelivery)."""

    stream_seq: int
    consumer_seq: int
    num_delivered: int


class MaxDeliveriesEvent(msgspec.Struct, frozen=True):
    """A message dropped because it reached max_deliver: publish `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES`."""

    stream_seq: int
    consumer_seq: int
    deliveries: int


_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder(ConsumerState)


def encode_state(state: ConsumerState) -> bytes:
    return _ENCODER.encode(state)


def decode_state(data: bytes) -> ConsumerState:
    """Inverse of `encode_state`; raises `msgspec.DecodeError` on a corrupt record."""
    return _DECODER.decode(data)


# ---- derived values ---------------------------------------------------------------------------------------------


def num_ack_pending(state: ConsumerState) -> int:
    return len(state.pending)


def num_redelivered(state: ConsumerState) -> int:
    """Pending messages delivered more than once (ConsumerInfo `num_redelivered`)."""
    return sum(1 for seq in state.redelivered if seq in state.pending)


def num_delivered(state: ConsumerState, stream_seq: int) -> int:
    """How often a pending message has been delivered; 0 if it is not pending."""
    if stream_seq not in state.pending:
        return 0
    return state.redelivered.get(stream_seq, 1)


def ack_wait_for(settings: AckSettings, num_delivered: int) -> int:
    """The ack wait for the `num_delivered`-th delivery: `backoff[min(n-1, len-1)]` if backoff is set."""
    if settings.backoff_ns:
        return settings.backoff_ns[min(max(num_delivered, 1) - 1, len(settings.backoff_ns) - 1)]
    return settings.ack_wait_ns


def can_deliver_new(state: ConsumerState, settings: AckSettings) -> bool:
    """False while max_ack_pending messages are unacknowledged; redeliveries are not limited by it."""
    if settings.ack_policy is _NONE or settings.max_ack_pending <= 0:
        return True
    return len(state.pending) < settings.max_ack_pending


def next_to_redeliver(state: ConsumerState, settings: AckSettings) -> int | None:
    """The stream seq to redeliver next, without removing it (`on_deliver` does, `drop` if it left the stream).

    Only the queue is consulted: call `expire` first so ack waits that ran out are queued and max_deliver drops are
    reported. Entries over a max_deliver lowered by a config update are skipped until `expire` reports them.
    """
    limit = settings.max_deliver
    for seq in state.redeliver_queue:
        if limit <= 0 or num_delivered(state, seq) < limit:
            return seq
    return None


def next_deadline(state: ConsumerState) -> int | None:
    """The earliest time at which `expire` has work to do, or None; the runtime's ack-wait timer."""
    deadlines = [p.deadline_ns for p in state.pending.values() if p.deadline_ns > 0]
    return min(deadlines) if deadlines else None


# ---- transitions ------------------------------------------------------------------------------------------------


def on_deliver(state: ConsumerState, settings: AckSettings, stream_seq: int, now_ns: int) -> Delivery:
    """Record that `stream_seq` is being sent now, as a first delivery or (if pending) a redelivery.

    Each delivery gets the next consumer seq and a fresh deadline from `ack_wait_for`. Raises ValueError for
    deliveries the rules forbid (a stream seq already handed out and no longer pending, a new message while
    `can_deliver_new` is false, a redelivery beyond max_deliver): those are runtime bugs, not client input.
    """
    if stream_seq <= 0:
        raise ValueError(f"invalid stream sequence {stream_seq}")
    current = state.pending.get(stream_seq)
    if current is None:
        if stream_seq <= state.delivered.stream_seq:
            raise ValueError(f"stream sequence {stream_seq} was already delivered and is not pending")
        if not can_deliver_new(state, settings):
            raise ValueError("max ack pending reached")
        count = 1
    else:
        count = num_delivered(state, stream_seq) + 1
        if 0 < settings.max_deliver < count:
            raise ValueError(f"stream sequence {stream_seq} already reached max deliver")
        _unqueue(state, stream_seq, current)
    consumer_seq = state.delivered.consumer_seq + 1
    state.delivered = SequencePair(consumer_seq, max(state.delivered.stream_seq, stream_seq))
    if settings.ack_policy is _NONE:
        state.ack_floor = state.delivered
        return Delivery(stream_seq, consumer_seq, 1)
    if count > 1:
        state.redelivered[stream_seq] = count
    state.pending[stream_seq] = Pending(consumer_seq, now_ns, _deadline(settings, count, now_ns))
    return Delivery(stream_seq, consumer_seq, count)


def on_ack(state: ConsumerState, settings: AckSettings, stream_seq: int) -> list[int]:
    """Apply an ack and return the stream seqs it acknowledged, ascending (empty: ignored, nothing changed).

    Explicit: just that message, if pending. All (nats-server AckAll): every pending message with a stream seq at or
    below it, provided it lies above the floor and was handed out. None: acks mean nothing. The list tells the
    runtime which messages interest/workqueue retention may now remove.
    """
    if settings.ack_policy is _EXPLICIT:
        return [stream_seq] if _remove(state, [stream_seq]) else []
    if settings.ack_policy is _ALL:
        if not state.ack_floor.stream_seq < stream_seq <= state.delivered.stream_seq:
            return []
        acked = sorted(seq for seq in state.pending if seq <= stream_seq)
        _remove(state, acked)
        return acked
    return []


def on_acks(state: ConsumerState, settings: AckSettings, stream_seqs: list[int]) -> list[int]:
    """Apply a batch of `+ACK`s at once; the same state and acknowledged seqs as `on_ack` one after the other.

    A socket read brings a hundred acks for one consumer: with explicit acks the floor is recomputed once for
    the batch instead of once per ack (after its first move the floor is always lowest pending - 1, whatever
    the order of removals, so one pass gives the same result). Other policies go one by one.
    """
    if settings.ack_policy is _EXPLICIT:
        pending = state.pending
        acked = list(dict.fromkeys(seq for seq in stream_seqs if seq in pending))
        _remove(state, acked)
        return acked
    done: list[int] = []
    for seq in stream_seqs:
        done.extend(on_ack(state, settings, seq))
    return done


def on_nak(
    state: ConsumerState, settings: AckSettings, stream_seq: int, now_ns: int, delay_ns: int | None = None
) -> bool:
    """Ask for a redelivery: now (queued) or, with a positive delay, once `now_ns + delay_ns` has passed.

    Returns whether the message was pending (only then is a NAK advisory due). A message that already reached
    max_deliver is not queued; it is made due now, so the next `expire` drops and reports it.
    """
    pending = state.pending.get(stream_seq)
    if pending is None:
        return False
    if delay_ns is not None and delay_ns > 0:
        _unqueue(state, stream_seq, pending)
        pending.deadline_ns = now_ns + delay_ns
    elif 0 < settings.max_deliver <= num_delivered(state, stream_seq):
        _unqueue(state, stream_seq, pending)
        pending.deadline_ns = max(now_ns, 1)
    elif not _queued(state, stream_seq, pending):
        state.redeliver_queue.append(stream_seq)
        pending.deadline_ns = 0
    return True


def on_progress(state: ConsumerState, settings: AckSettings, stream_seq: int, now_ns: int) -> bool:
    """`+WPI`: restart the ack timer of the current delivery (and take it off the redeliver queue)."""
    pending = state.pending.get(stream_seq)
    if pending is None:
        return False
    _unqueue(state, stream_seq, pending)
    pending.deadline_ns = _deadline(settings, num_delivered(state, stream_seq), now_ns)
    return True


def on_term(state: ConsumerState, stream_seq: int) -> bool:
    """`+TERM`: never redeliver; counts as acked for the floor. Returns whether it was pending (advisory due)."""
    return _remove(state, [stream_seq])


def drop(state: ConsumerState, stream_seq: int) -> bool:
    """The message left the stream (delete, limits, purge) while pending: forget it. Returns whether it was."""
    return _remove(state, [stream_seq])


def skip_before(state: ConsumerState, first_seq: int) -> list[int]:
    """Stream seqs below `first_seq` are gone or not for this consumer: drop them and never deliver them.

    Used for a purge (first_seq = the stream's new first seq) and for a start position (deliver_policy by start
    sequence/time/new/last: first_seq = the first candidate), like nats-server's `purge`/`selectStartingSeqNo`.
    Returns the dropped pending seqs.
    """
    dropped = sorted(seq for seq in state.pending if seq < first_seq)
    if first_seq - 1 > state.delivered.stream_seq:
        state.delivered = SequencePair(state.delivered.consumer_seq, first_seq - 1)
    _remove(state, dropped)
    if not state.pending:
        state.ack_floor = state.delivered
    elif state.ack_floor.stream_seq < first_seq - 1:
        state.ack_floor = SequencePair(state.ack_floor.consumer_seq, first_seq - 1)
    return dropped


def expire(state: ConsumerState, settings: AckSettings, now_ns: int) -> list[MaxDeliveriesEvent]:
    """Queue every pending message whose deadline has passed, in stream order, for redelivery.

    A message that has reached max_deliver is dropped from pending instead (the floor may move) and returned once,
    so the runtime can publish the MAX_DELIVERIES advisory. Queued messages over a lowered max_deliver go the same way.
    """
    limit = settings.max_deliver
    expired = sorted(seq for seq, p in state.pending.items() if 0 < p.deadline_ns <= now_ns)
    over: list[int] = []
    if limit > 0:
        candidates = dict.fromkeys([*state.redeliver_queue, *expired])
        over = sorted(seq for seq in candidates if num_delivered(state, seq) >= limit)
    events = [MaxDeliveriesEvent(seq, state.pending[seq].consumer_seq, num_delivered(state, seq)) for seq in over]
    _remove(state, over)
    for seq in expired:
        pending = state.pending.get(seq)
        if pending is not None:
            pending.deadline_ns = 0
            state.redeliver_queue.append(seq)
    return events


def _deadline(settings: AckSettings, count: int, now_ns: int) -> int:
    wait = ack_wait_for(settings, count)
    return now_ns + wait if wait > 0 else 0


def _queued(state: ConsumerState, stream_seq: int, pending: Pending) -> bool:
    """Is this pending message in the redeliver queue? Queued entries have no deadline, so a message with one
    is answered without scanning the queue (an ack must not cost O(queue) while 100k messages wait in it)."""
    return pending.deadline_ns == 0 and stream_seq in state.redeliver_queue


def _unqueue(state: ConsumerState, stream_seq: int, pending: Pending) -> None:
    queue = state.redeliver_queue
    if not queue:  # the common case (once per delivery and per ack): no call to _queued
        return
    if queue[0] == stream_seq:  # redeliveries go out in queue order: the head, no search
        del queue[0]
    elif _queued(state, stream_seq, pending):
        queue.remove(stream_seq)


def _remove(state: ConsumerState, seqs: list[int]) -> bool:
    """Take messages out of pending and move the ack floor by the rule in the module docstring."""
    floor = state.ack_floor
    moved = removed = False
    for seq in seqs:
        pending = state.pending.pop(seq, None)
        if pending is None:
            continue
        removed = True
        if state.redelivered:
            state.redelivered.pop(seq, None)
        if state.redeliver_queue:
            _unqueue(state, seq, pending)
        if pending.consumer_seq == floor.consumer_seq + 1 or seq == floor.stream_seq + 1:
            moved = True
    if removed and not state.pending:
        state.ack_floor = state.delivered
    elif moved:
        lowest_stream = _lowest_pending(state, floor.stream_seq, len(seqs))
        if state.redelivered:
            lowest_consumer = min(p.consumer_seq for p in state.pending.values())
        else:  # first deliveries get consumer seqs in stream order
            lowest_consumer = state.pending[lowest_stream].consumer_seq
        state.ack_floor = SequencePair(lowest_consumer - 1, lowest_stream - 1)
    return removed


def _lowest_pending(state: ConsumerState, floor_stream_seq: int, removed: int) -> int:
    """The lowest pending stream seq, cheaply in the common case of in-order acks.

    Nothing at or below the floor is pending, so after in-order acks (`removed` messages just left) probing
    upwards from the floor finds the minimum after a few dict lookups. Otherwise: pending is keyed in
    first-delivery order, which is stream order (new deliveries only go up; a redelivery updates its entry in
    place), so its first key is the lowest (CPython skips deleted slots while iterating, which is why the probe
    comes first).
    """
    pending = state.pending
    for candidate in range(floor_stream_seq + 1, floor_stream_seq + removed + 33):
        if candidate in pending:
            return candidate
    return next(iter(pending))
