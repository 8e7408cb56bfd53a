"""Pull requests (nats-server `waitingRequest`): reading and checking them, the waiting queue, serving it, and
the timeouts and heartbeats of requests that wait.

Requests come in as MSG.NEXT or `+NXT` acks; the consumer core queues what `admit` lets through and calls
`serve` whenever messages may be available."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import msgspec

from streamd.consumers import priority
from streamd.consumers.delivery import BACKLOG, SLICE, Source, TooBig, heartbeat, status
from streamd.wire import durations, gojson
from streamd.wire.models import ConsumerConfig, PullRequest

INTEREST_GRACE = 2_000_000_000  # how long a pull request may wait for the hub to report its inbox
DEFAULT_MAX_WAITING = 512
NO_PRIORITY = 2**31 - 1  # where a request without priority fields queues on a prioritized consumer


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
    # Priority group fields (see `priority`); a request without a JSON body has no group and queues last.
    group: str = ""
    min_pending: int = 0
    min_ack_pending: int = 0
    pin_id: str = ""
    priority: int = NO_PRIORITY


class PullSource(Source, Protocol):
    waiting: deque[PullWaiter]
    pin: priority.Pin | None
    priority_policy: str  # priority.NONE unless the consumer has priority groups

    @property
    def num_pending(self) -> int: ...

    def set_pin(self, pin: priority.Pin, group: str) -> None:
        """Pin the client that sent a request of `group` (and tell the world, as the server's advisory does)."""


def parse(body: bytes) -> PullRequest:
    """A request body: empty (one message), a batch size, or the JSON request; ValueError says what is wrong."""
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
    return req


def refusal(cfg: ConsumerConfig, req: PullRequest) -> str:
    """Why the consumer's limits refuse `req` (a 409 text), or ""."""
    if isinstance(cfg.max_batch, int) and cfg.max_batch and req.batch > cfg.max_batch:
        return f"Exceeded MaxRequestBatch of {cfg.max_batch}"
    if isinstance(cfg.max_expires, int) and cfg.max_expires and req.expires > cfg.max_expires:
        return f"Exceeded MaxRequestExpires of {durations.format(cfg.max_expires)}"
    if isinstance(cfg.max_bytes, int) and cfg.max_bytes and req.max_bytes > cfg.max_bytes:
        return f"Exceeded MaxRequestMaxBytes of {cfg.max_bytes}"
    return ""


def admit(c: PullSource, reply: str, body: bytes, now: int) -> PullWaiter | None:
    """Check a request against the consumer; None when it was answered with a status instead. May drop the
    oldest waiting request to make room (a request with heartbeats replaces it, as the server does)."""
    if c.config.deliver_subject:
        status(c.leaf, reply, 409, "Consumer is push based")
        return None
    try:
        req = parse(body)
    except ValueError as exc:
        status(c.leaf, reply, 400, f"Bad Request - {exc}")
        return None
    refused = refusal(c.config, req)
    if refused:
        status(c.leaf, reply, 409, refused)
        return None
    if req.idle_heartbeat and (not req.expires or req.idle_heartbeat * 2 > req.expires):
        status(c.leaf, reply, 400, "Bad Request - heartbeat value too large")
        return None
    has_fields = body.lstrip().startswith(b"{")  # the server reads priority fields from a JSON request only
    if has_fields and _refused_by_priority(c, reply, req, now):
        return None
    max_waiting = c.config.max_waiting if isinstance(c.config.max_waiting, int) else DEFAULT_MAX_WAITING
    if len(c.waiting) >= max_waiting:
        if not req.idle_heartbeat:
            status(c.leaf, reply, 409, "Exceeded MaxWaiting")
            return None
        c.waiting.popleft()
    return PullWaiter(
        reply=reply,
        batch=max(req.batch, 1),
        max_bytes=req.max_bytes,
        expires_ns=now + req.expires if req.expires > 0 else 0,
        no_wait=req.no_wait,
        heartbeat_ns=req.idle_heartbeat,
        last_sent_ns=now,
        created_ns=now,
        group=req.group,
        min_pending=req.min_pending,
        min_ack_pending=req.min_ack_pending,
        pin_id=req.id,
        priority=req.priority if has_fields else NO_PRIORITY,
    )


def _refused_by_priority(c: PullSource, reply: str, req: PullRequest, now: int) -> bool:
    """Check a request's priority fields (answering a refusal); a request from the pinned client keeps its pin."""
    groups = c.config.priority_groups if isinstance(c.config.priority_groups, list) else []
    refused = priority.refusal(c.priority_policy, groups, req, c.pin)
    if refused is not None:
        status(c.leaf, reply, *refused)
        return True
    if c.pin is not None and req.id == c.pin.id:
        c.pin.deadline_ns = now + pinned_ttl(c.config)
    return False


def pinned_ttl(cfg: ConsumerConfig) -> int:
    ttl = cfg.priority_timeout
    return ttl if isinstance(ttl, int) and ttl > 0 else priority.DEFAULT_PINNED_TTL


def enqueue(c: PullSource, w: PullWaiter) -> None:
    """Queue an admitted request: by priority on a prioritized consumer, else last."""
    if c.priority_policy == priority.PRIORITIZED:
        c.waiting.insert(priority.insert_at(c.waiting, w.priority), w)
    else:
        c.waiting.append(w)


def available(c: PullSource) -> int:
    """Messages a new request could get now, after the requests already waiting."""
    ready = c.num_pending + len(c.state.redeliver_queue)
    return ready - sum(w.batch - w.sent for w in c.waiting)


def pending_headers(w: PullWaiter) -> dict[str, str]:
    left_bytes = max(0, w.max_bytes - w.bytes_sent) if w.max_bytes else 0
    return {"Nats-Pending-Messages": str(w.batch - w.sent), "Nats-Pending-Bytes": str(left_bytes)}


def wakeups(waiting: deque[PullWaiter]) -> Iterator[int]:
    """When waiting requests need attention: their expiry and their next heartbeat."""
    for w in waiting:
        if w.expires_ns:
            yield w.expires_ns
        if w.heartbeat_ns:
            yield w.last_sent_ns + w.heartbeat_ns


def expire(c: PullSource, now: int) -> None:
    """Time out expired requests (408), drop those whose requester went away, and send due heartbeats."""
    keep: deque[PullWaiter] = deque()
    for w in c.waiting:
        if w.expires_ns and w.expires_ns <= now:
            status(c.leaf, w.reply, 408, "Request Timeout", pending_headers(w))
            continue
        if not c.leaf.has_interest(w.reply) and now - w.created_ns > INTEREST_GRACE:
            continue  # the requester went away (LS-): drop silently
        if w.heartbeat_ns and now - w.last_sent_ns >= w.heartbeat_ns:
            heartbeat(c, w.reply)
            w.last_sent_ns = now
        keep.append(w)
    c.waiting = keep


def no_messages(c: PullSource, which: Callable[[PullWaiter], bool]) -> None:
    """Answer `404 No Messages` to the no_wait requests `which` selects, and forget them."""
    keep: deque[PullWaiter] = deque()
    for w in c.waiting:
        if w.no_wait and which(w):
            status(c.leaf, w.reply, 404, "No Messages")
        else:
            keep.append(w)
    c.waiting = keep


async def serve_all(c: PullSource, now: int) -> None:
    while serve(c, now):
        await c.leaf.wait_writable()
        await asyncio.sleep(0)  # one slice sent: let requests, publishes and other consumers in


def serve(c: PullSource, now: int) -> bool:
    """Serve waiting pull requests with what is available; True when stopped by leaf back-pressure or
    after a slice of SLICE messages (the caller yields and calls again)."""
    sent = 0
    waiting, leaf = c.waiting, c.leaf
    plain = c.priority_policy == priority.NONE
    while waiting:
        if not leaf.connected:
            return False
        choice = _FIRST if plain else _choose(c)
        if choice is None:
            return False
        i = choice.index
        w = waiting[i]
        if not leaf.has_interest(w.reply):
            # The request can come in on the client connection before the hub has told the leaf about the
            # requester's inbox: wait for its LS+ (the manager wakes us) rather than send into the void.
            if now - w.created_ns <= INTEREST_GRACE:
                return False
            del waiting[i]
            continue
        pin_id = priority.new_pin_id() if choice.pin else c.pin.id if c.pin is not None else ""
        try:
            item = c.take(now, w.max_bytes - w.bytes_sent if w.max_bytes else 0, pin_id)
        except TooBig:
            status(leaf, w.reply, 409, "Message Size Exceeds MaxBytes", pending_headers(w))
            del waiting[i]
            continue
        if item is None:
            if w.no_wait and (w.sent or not w.expires_ns):
                status(leaf, w.reply, 404, "No Messages")
                del waiting[i]
                continue
            return False
        if choice.pin:
            w.pin_id = pin_id
            c.set_pin(priority.Pin(pin_id, now, now + pinned_ttl(c.config), w.group), w.group)
        c.send(w.reply, item)
        _count(c, i, w, item[1], now)
        sent += 1
        if sent >= SLICE or leaf.pending_bytes > BACKLOG:
            return True
    return False


_FIRST = priority.Choice(0)


def _count(c: PullSource, i: int, w: PullWaiter, size: int, now: int) -> None:
    """Book one delivery to waiting request `i`; a request that got all it asked for leaves the queue."""
    w.sent += 1
    w.bytes_sent += size
    w.last_sent_ns = now
    if w.sent >= w.batch:
        del c.waiting[i]
        if w.max_bytes and w.bytes_sent < w.max_bytes:
            status(c.leaf, w.reply, 409, "Batch Completed", pending_headers(w))
    elif w.max_bytes and w.bytes_sent >= w.max_bytes:
        del c.waiting[i]  # the byte budget is spent exactly: the request is over


def _choose(c: PullSource) -> priority.Choice | None:
    """The waiting request the priority policy gives the next message to. Requests holding a stale pin id are
    answered `423` on the way, only once there is a message to deliver (as the server does)."""
    st = c.state
    pending = c.num_pending + (1 if st.redeliver_queue else 0)  # nats-server's npc+1
    skip = 0
    while True:
        choice = priority.choose(c.priority_policy, c.waiting, c.pin, pending, len(st.pending), skip)
        if choice is None or not choice.reject:
            return choice
        if c.num_pending + len(st.redeliver_queue) <= 0:
            return None
        w = c.waiting[choice.index]
        status(c.leaf, w.reply, *priority.WRONG_PIN, pending_headers(w))
        del c.waiting[choice.index]
        skip = choice.index
