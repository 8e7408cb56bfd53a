"""The scenarios, each a loop over one connection, run in child processes by `worker_main`.

Every loop turn is: recv() whatever arrived, handle all of it, append the answers to `conn.out`, flush once.
The per-message work is kept to slicing and counting: a stream sequence is recorded as `counts[seq] += 1` in a
bytearray the size of the stream, and the driver adds the workers' arrays to check "every sequence exactly once".

A worker connects and subscribes before it says it is ready, then waits for the driver's `go`, so connection
setup is never timed. Consumers stop when the driver sees the workers' progress add up to the stream's size and
sets `stop`; their end time is when they handled their last message, not when they noticed `stop`.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

from loadgen.protocol import Conn, Msg, header_value, status_code

SEQ_IN_PUBACK = re.compile(rb'"seq":\s*(\d+)')
ACK_PREFIX = b"$JS.ACK."
NO_RECV_TIMEOUT = 0.05  # seconds a recv() may block before the loop looks at `stop` again
MAX_ERRORS = 5  # kept per worker; the count of all of them is reported too
STALL = 0.010  # a read gap this long (seconds) is counted as a stall


@dataclass(frozen=True)
class Job:
    """What one worker process does. Picklable: it crosses the process boundary."""

    scenario: str  # "pub" (window 1 = one at a time), "consume", "fetch", "ordered", "get"
    url: str
    stream: str
    subject: str
    index: int  # this worker's slot in the progress array
    count: int  # messages to publish / gets to do (per worker); consumers: the stream's size
    seq_space: int  # sequences 1..seq_space are counted; higher ones are "out of range"
    size: int = 128
    window: int = 500  # outstanding PubAcks
    batch: int = 500  # messages per pull request
    consumer: str = ""
    expires_ns: int = 30_000_000_000
    first: int = 1  # first sequence to get


@dataclass
class Tally:
    """What a worker reports back: its own timing and CPU, and every sequence it saw."""

    index: int
    count: int = 0
    start: float = 0.0
    end: float = 0.0
    cpu: float = 0.0
    cpu_sys: float = 0.0  # the kernel's part of cpu (socket reads and writes)
    counts: bytes = b""
    errors: list[str] = field(default_factory=list)
    error_count: int = 0
    out_of_range: int = 0
    reads: int = 0  # recv() calls that returned data: count / reads = messages per loop turn
    control: int = 0  # flow-control requests answered, heartbeats, pull statuses
    max_gap: float = 0.0  # longest time with nothing to read: a server's stall shows here
    stalls: int = 0  # read gaps longer than STALL
    latencies: list[float] = field(default_factory=list)  # one-at-a-time scenarios: seconds per round trip


class Ctx:
    """A running worker: its connection, job, sequence counts and the driver's stop/progress handles."""

    def __init__(self, conn: Conn, job: Job, stop: Event, progress: Any) -> None:
        self.conn, self.job, self.stop, self.progress = conn, job, stop, progress
        self.inbox = b"_INBOX.lg%d.%d" % (os.getpid(), job.index)
        self.api_inbox = self.inbox + b".api"
        self.counts = bytearray(job.seq_space + 1)
        self.tally = Tally(job.index)
        self.last = 0.0  # perf_counter() after the last message handled
        self.arrived = 0.0  # perf_counter() when the last read returned data

    def error(self, text: str) -> None:
        self.tally.error_count += 1
        if len(self.tally.errors) < MAX_ERRORS:
            self.tally.errors.append(text)

    def count_seq(self, seq: int) -> None:
        if 0 < seq < len(self.counts):
            self.counts[seq] += 1
        else:
            self.tally.out_of_range += 1

    def receive(self) -> list[Msg]:
        """Flush what the last turn queued, then read. The one place a worker writes."""
        self.conn.flush()
        msgs = self.conn.recv()
        if msgs:
            now = time.perf_counter()
            self.tally.reads += 1
            if (gap := now - self.arrived) > STALL:
                self.tally.stalls += 1
                self.tally.max_gap = max(self.tally.max_gap, gap)
            self.arrived = now
        return msgs


def publish(ctx: Ctx) -> int:
    """Keep `window` publishes without a PubAck in flight (window 1: publish, wait, publish). Every frame is the
    same bytes, so a turn's publishes are one multiplication; all PubAcks go to one inbox."""
    job, conn, counts = ctx.job, ctx.conn, ctx.counts
    payload = os.urandom(job.size)
    frame = b"PUB %s %s %d\r\n%s\r\n" % (job.subject.encode(), ctx.inbox, job.size, payload)
    sent = answered = good = 0
    find_seq, space = SEQ_IN_PUBACK.search, len(counts)
    one_at_a_time, latencies, sent_at = job.window == 1, ctx.tally.latencies, 0.0
    while answered < job.count:
        room = min(job.window - (sent - answered), job.count - sent)
        if room > 0:
            conn.out += frame * room
            sent += room
            sent_at = time.perf_counter()
        msgs = ctx.receive()
        if not msgs:
            if ctx.stop.is_set():
                break
            continue
        for _subject, _reply, header, data in msgs:
            answered += 1
            m = find_seq(data)
            if m is None or header is not None:
                ctx.error(f"PubAck: {header or b''!r} {data[:200]!r}")
                continue
            seq = int(m[1])
            if seq < space:
                counts[seq] += 1
                good += 1
            else:
                ctx.tally.out_of_range += 1
        ctx.last = time.perf_counter()
        if one_at_a_time:
            latencies.append(ctx.last - sent_at)
        ctx.progress[job.index] = answered
    return good


def pull_request(ctx: Ctx, batch: int) -> bytes:
    job = ctx.job
    body = json.dumps({"batch": batch, "expires": job.expires_ns}).encode()
    subject = f"$JS.API.CONSUMER.MSG.NEXT.{job.stream}.{job.consumer}".encode()
    return b"PUB %s %s %d\r\n%s\r\n" % (subject, ctx.inbox, len(body), body)


def count_delivery(ctx: Ctx, reply: bytes) -> None:
    """Count one delivery by the stream sequence in its ack subject (v1: token 5, v2 with domain: token 7)."""
    tokens = reply.split(b".")
    seq = int(tokens[5] if len(tokens) == 9 else tokens[7])
    if seq < len(ctx.counts):
        ctx.counts[seq] += 1
    else:
        ctx.tally.out_of_range += 1


def handle_deliveries(ctx: Ctx, msgs: list[Msg], acks: list[bytes]) -> int:
    """Count each delivery's stream sequence and queue its reply subject for an ack. Returns how many requested
    messages will not come because a status (408 expired, 409, 404) closed their pull request: the closed
    request's Nats-Pending-Messages, or the whole batch when the server does not say."""
    closed = 0
    for _subject, reply, header, _data in msgs:
        if reply[:8] == ACK_PREFIX:
            count_delivery(ctx, reply)
            acks.append(reply)
        elif header is not None and (code := status_code(header)) != 100:  # 100 = heartbeat: nothing to do
            ctx.tally.control += 1
            if code not in (404, 408):
                ctx.error(f"pull status {header[:120]!r}")
            pending = header_value(header, b"Nats-Pending-Messages")
            closed += ctx.job.batch if pending is None else int(pending)
    return closed


def queue_acks(ctx: Ctx, acks: list[bytes]) -> None:
    """`PUB <reply> 0` with an empty payload is +ACK; all of a turn's acks become one join."""
    if acks:
        ctx.conn.out += b"PUB " + b" 0\r\n\r\nPUB ".join(acks) + b" 0\r\n\r\n"


def consume(ctx: Ctx) -> int:
    """Like the Go client's Consume(): pull requests for `batch` messages kept outstanding, a new one sent as soon
    as half of what was asked for has arrived; every message acked to its reply subject, no ack reply awaited."""
    conn, batch = ctx.conn, ctx.job.batch
    request = pull_request(ctx, batch)
    conn.out += request
    outstanding, got = batch, 0
    while not ctx.stop.is_set():
        msgs = ctx.receive()
        if not msgs:
            continue
        acks: list[bytes] = []
        outstanding -= handle_deliveries(ctx, msgs, acks)
        outstanding -= len(acks)
        queue_acks(ctx, acks)
        while outstanding <= batch // 2:
            conn.out += request
            outstanding += batch
        if acks:
            got += len(acks)
            ctx.last = time.perf_counter()
            ctx.progress[ctx.job.index] = got
    return got


def fetch(ctx: Ctx) -> int:
    """Like the Go client's Fetch(batch) in a loop: one pull request with `expires`, wait for its messages (or
    the status that ends it), ack them; the acks and the next request leave in the same write."""
    conn, batch = ctx.conn, ctx.job.batch
    request = pull_request(ctx, batch)
    got = 0
    while not ctx.stop.is_set():
        conn.out += request
        remaining = batch
        while remaining > 0 and not ctx.stop.is_set():
            msgs = ctx.receive()
            if not msgs:
                continue
            acks: list[bytes] = []
            closed = handle_deliveries(ctx, msgs, acks)
            remaining = 0 if closed else remaining - len(acks)
            queue_acks(ctx, acks)
            if acks:
                got += len(acks)
                ctx.last = time.perf_counter()
                ctx.progress[ctx.job.index] = got
    return got


def ordered(ctx: Ctx) -> int:
    """An ordered consumer as the Go client makes one: an ephemeral push consumer, ack none, flow control and
    idle heartbeats. Flow-control requests are answered at once; a stalled heartbeat's subject too."""
    job, conn = ctx.job, ctx.conn
    config = {"deliver_policy": "all", "ack_policy": "none", "max_deliver": 1, "flow_control": True,
              "idle_heartbeat": 5_000_000_000, "deliver_subject": ctx.inbox.decode(), "mem_storage": True,
              "num_replicas": 1, "replay_policy": "instant", "inactive_threshold": 5_000_000_000}
    body = json.dumps({"stream_name": job.stream, "config": config}).encode()
    conn.pub(f"$JS.API.CONSUMER.CREATE.{job.stream}".encode(), ctx.api_inbox, body)
    got = 0
    while got < job.count and not ctx.stop.is_set():
        msgs = ctx.receive()
        for subject, reply, header, data in msgs:
            if reply[:8] == ACK_PREFIX:
                count_delivery(ctx, reply)
                got += 1
            elif subject == ctx.api_inbox:
                if b'"error"' in data:
                    ctx.error(f"consumer create: {data[:300]!r}")
                    return got
            elif header is not None:
                ctx.tally.control += 1
                stalled = header_value(header, b"Nats-Consumer-Stalled")
                if reply or stalled:  # a FlowControl Request, or a heartbeat saying flow control is stuck
                    conn.out += b"PUB %s 0\r\n\r\n" % (reply or stalled or b"")
        if msgs:
            ctx.last = time.perf_counter()
            ctx.progress[job.index] = got
    return got


def direct_get(ctx: Ctx) -> int:
    """DIRECT.GET one sequence at a time (request, wait for the answer, next); each answer must carry that
    sequence in Nats-Sequence and a payload of the published size."""
    job, conn = ctx.job, ctx.conn
    prefix = b"PUB $JS.API.DIRECT.GET.%s %s " % (job.stream.encode(), ctx.inbox)
    good = 0
    for seq in range(job.first, job.first + job.count):
        body = b'{"seq":%d}' % seq
        conn.out += prefix + b"%d\r\n%s\r\n" % (len(body), body)
        sent_at = time.perf_counter()
        msgs = ctx.receive()
        while not msgs:
            if ctx.stop.is_set():
                return good
            msgs = ctx.receive()
        _subject, _reply, header, data = msgs[0]
        if header is None or header_value(header, b"Nats-Sequence") != b"%d" % seq or len(data) != job.size:
            ctx.error(f"get {seq}: {header!r} {len(data)} bytes")
        else:
            ctx.count_seq(seq)
            good += 1
        if len(msgs) > 1:
            ctx.error(f"get {seq}: {len(msgs) - 1} extra answers")
        ctx.last = time.perf_counter()
        ctx.tally.latencies.append(ctx.last - sent_at)
        ctx.progress[job.index] = good
    return good


SCENARIOS: dict[str, Callable[[Ctx], int]] = {
    "pub": publish, "consume": consume, "fetch": fetch, "ordered": ordered, "get": direct_get,
}


def worker_main(job: Job, ready: Queue[tuple[int, str]], results: Queue[Tally], go: Event, stop: Event,
                progress: Any) -> None:
    """A child process: connect and subscribe, say ready, wait for go, run the scenario, send back a Tally.
    Ctrl-C reaches the whole process group; the driver stops workers itself (stop event, then kill)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tally = Tally(job.index)
    try:
        conn = Conn(job.url, f"loadgen-{job.scenario}-{job.index}")
        ctx = Ctx(conn, job, stop, progress)
        tally = ctx.tally
        conn.sub(ctx.inbox, 1)
        conn.sub(ctx.api_inbox, 2)
        conn.ping()
        conn.sock.settimeout(NO_RECV_TIMEOUT)
    except Exception as exc:
        ready.put((job.index, f"{type(exc).__name__}: {exc}"))
        results.put(tally)
        return
    ready.put((job.index, ""))
    try:
        if not go.wait(120):
            raise RuntimeError("no go from the driver within 120 s")
        usage0, tally.start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        ctx.last = ctx.arrived = tally.start
        tally.count = SCENARIOS[job.scenario](ctx)
        usage1 = resource.getrusage(resource.RUSAGE_SELF)  # microseconds, where os.times() has 10 ms ticks
        tally.end, tally.cpu_sys = ctx.last, usage1.ru_stime - usage0.ru_stime
        tally.cpu = usage1.ru_utime - usage0.ru_utime + tally.cpu_sys
        conn.close()  # sends the last turn's acks
    except Exception as exc:
        ctx.error(f"{type(exc).__name__}: {exc}")
        tally.end = tally.end or ctx.last
    tally.counts = bytes(ctx.counts)
    results.put(tally)
