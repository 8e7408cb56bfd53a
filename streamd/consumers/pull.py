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

from streamd.consumers.delivery import BACKLOG, SLICE, Source, TooBig, heartbeat, status
from streamd.wire import durations, gojson
from streamd.wire.models import ConsumerConfig, PullRequest

INTEREST_GRACE = 2_000_000_000  # how long a pull request may wait for the hub to report its inbox
DEFAULT_MAX_WAITING = 512


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


class PullSource(Source, Protocol):
    waiting: deque[PullWaiter]

    @property
    def num_pending(self) -> int: ...


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
    if req.group or req.min_pending or req.min_ack_pending or req.priority:
        raise ValueError("priority groups are not supported by this consumer")
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
    )


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
    while waiting:
        w = waiting[0]
        if not leaf.connected:
            return False
        if not leaf.has_interest(w.reply):
            # The request can come in on the client connection before the hub has told the leaf about the
            # requester's inbox: wait for its LS+ (the manager wakes us) rather than send into the void.
            if now - w.created_ns <= INTEREST_GRACE:
                return False
            waiting.popleft()
            continue
        try:
            item = c.take(now, w.max_bytes - w.bytes_sent if w.max_bytes else 0)
        except TooBig:
            status(leaf, w.reply, 409, "Message Size Exceeds MaxBytes", pending_headers(w))
            waiting.popleft()
            continue
        if item is None:
            if w.no_wait and (w.sent or not w.expires_ns):
                status(leaf, w.reply, 404, "No Messages")
                waiting.popleft()
                continue
            return False
        c.send(w.reply, item)
        w.sent += 1
        w.bytes_sent += item[1]
        w.last_sent_ns = now
        if w.sent >= w.batch:
            waiting.popleft()
            if w.max_bytes and w.bytes_sent < w.max_bytes:
                status(leaf, w.reply, 409, "Batch Completed", pending_headers(w))
        elif w.max_bytes and w.bytes_sent >= w.max_bytes:
            waiting.popleft()  # the byte budget is spent exactly: the request is over
        sent += 1
        if sent >= SLICE or leaf.pending_bytes > BACKLOG:
            return True
    return False
