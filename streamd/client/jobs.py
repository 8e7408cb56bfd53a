"""Durable job queues on JetStream streams, hiding acks and sequence numbers (issue #6).

Built only on nats-py's JetStream client, so it works against streamd and a real JetStream server alike.

Naming, for a queue `name` (letters, digits, `-` and `_`):

- stream `JOBS_<name>` (workqueue retention) on subjects `jobs.<name>.>`; jobs are published to `jobs.<name>.run`;
- durable pull consumer `JOBS_<name>_workers` (explicit ack, `ack_wait`, `max_deliver = max_attempts + 3`; the
  worker itself dead-letters after `max_attempts`, the slack covers crashed workers and deferred delayed jobs);
- dead letters: stream `JOBS_<name>_DLQ` (limits retention) on `jobsdlq.<name>.>`, published to
  `jobsdlq.<name>.dead`.

Headers: `Nats-Msg-Id` (and `Jobs-Id`) carry the job id for deduplication within the stream's `duplicate_window`;
`Jobs-Run-At` (an ISO 8601 UTC time) delays a job. Where the server serves message schedules (JetStream API
level 2+: nats-server 2.12+, streamd), the queue stream allows them and a delayed job is published as a schedule
on `jobs.<name>.sched.<token>` (`Nats-Schedule: @at <run-at>`, target `jobs.<name>.run`): the server stores it
there when due, so workers never see it early. Otherwise, or with `Queue.open(..., schedules=False)`, a worker
that fetches a job before its run-at time naks it with the remaining delay, so the consumer's redelivery timer
does the waiting (that path also covers a schedule fired a little early by a skewed clock). Dead letters keep
the original payload and headers plus `Jobs-Error`, `Jobs-Attempts`, `Jobs-Queue-Seq` and `Jobs-Failed-At`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, PubAck, RetentionPolicy, StreamConfig

from streamd.client.replay import Event, replay

__all__ = [
    "Backoff",
    "DeadLetter",
    "Fail",
    "Job",
    "Queue",
    "Reject",
    "Retry",
    "Worker",
]

log = logging.getLogger(__name__)

H_ID = "Jobs-Id"
H_RUN_AT = "Jobs-Run-At"
H_ERROR = "Jobs-Error"
H_ATTEMPTS = "Jobs-Attempts"
H_QUEUE_SEQ = "Jobs-Queue-Seq"
H_FAILED_AT = "Jobs-Failed-At"
_MSG_ID = "Nats-Msg-Id"
_SCHEDULE = "Nats-Schedule"
_SCHEDULE_TARGET = "Nats-Schedule-Target"
_SCHEDULES_LEVEL = 2  # the JetStream API level that brought message schedules (nats-server 2.12)
_DLQ_HEADERS = (H_ERROR, H_ATTEMPTS, H_QUEUE_SEQ, H_FAILED_AT)
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
# A job fetched this close to its run-at time runs instead of being deferred once more.
_RUN_AT_SLACK = 0.05

T = TypeVar("T")


class Retry(Exception):
    """Raise from a handler to retry the job after `after` seconds (still counts as an attempt)."""

    def __init__(self, after: float, reason: str = "") -> None:
        super().__init__(reason or f"retry after {after}s")
        self.after = after


class Reject(Exception):
    """Raise from a handler to drop the job for good (`+TERM`), without retries or a dead letter."""


Fail = Reject


@dataclass(frozen=True, slots=True)
class Backoff:
    """Retry delay for attempt n (1-based): `min(cap, base * factor**(n-1))`, times a random factor in
    `[1 - jitter, 1 + jitter]`."""

    base: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    jitter: float = 0.1

    def delay(self, attempt: int) -> float:
        raw = min(self.cap, self.base * self.factor ** max(0, attempt - 1))
        if self.jitter:
            raw *= random.uniform(1 - self.jitter, 1 + self.jitter)
        return max(0.0, raw)


@dataclass(frozen=True, slots=True)
class Job:
    """A job as a handler sees it. `attempt` is 1 on the first run."""

    id: str | None
    data: bytes
    headers: dict[str, str]
    attempt: int
    enqueued_at: dt.datetime
    sequence: int

    def decode(self, type: type[T]) -> T:
        """The payload decoded as JSON into `type` (for jobs enqueued from msgspec-encodable values)."""
        return msgspec.json.decode(self.data, type=type)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A job that failed `attempts` times, last with `error`; `sequence` is its sequence in the DLQ stream."""

    sequence: int
    id: str | None
    data: bytes
    error: str
    attempts: int
    failed_at: dt.datetime
    headers: dict[str, str]


def _encode(payload: Any) -> bytes:
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload)
    return msgspec.json.encode(payload)


def _utc(when: dt.datetime) -> dt.datetime:
    if when.tzinfo is None:
        raise ValueError("run_at must be timezone-aware")
    return when.astimezone(dt.UTC)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def _serves_schedules(js: JetStreamContext) -> bool:
    """Whether the server's JetStream API level has message schedules (`$JS.API.INFO`'s `api.level`)."""
    info = await js.account_info()
    return (info.api.level or 0) >= _SCHEDULES_LEVEL


@dataclass
class Queue:
    """A named job queue. `await Queue.open(js, name, ...)` creates (or opens, idempotently) its streams and
    consumer; `enqueue` adds jobs; `Worker(queue, handler)` runs them."""

    js: JetStreamContext
    name: str
    ack_wait: float = 30.0
    max_attempts: int = 5
    duplicate_window: float = 120.0
    schedules: bool = False  # delayed jobs are message schedules (set by `open` when the server serves them)

    # the names of the queue's streams, subject and consumer: derived from `name`, never stored
    @property
    def stream(self) -> str:
        return f"JOBS_{self.name}"

    @property
    def subject(self) -> str:
        return f"jobs.{self.name}.run"

    @property
    def consumer(self) -> str:
        return f"JOBS_{self.name}_workers"

    @property
    def dlq_stream(self) -> str:
        return f"JOBS_{self.name}_DLQ"

    @property
    def dlq_subject(self) -> str:
        return f"jobsdlq.{self.name}.dead"

    @classmethod
    async def open(
        cls,
        js: JetStreamContext,
        name: str,
        *,
        ack_wait: float = 30.0,
        max_attempts: int = 5,
        duplicate_window: float = 120.0,
        schedules: bool = True,
    ) -> Queue:
        """`schedules=False` keeps delayed jobs on the nak path even where the server could schedule them."""
        if not _NAME.match(name):
            raise ValueError(f"invalid queue name {name!r}: use letters, digits, '-' and '_'")
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        queue = cls(js, name, ack_wait=ack_wait, max_attempts=max_attempts, duplicate_window=duplicate_window)
        queue.schedules = schedules and await _serves_schedules(js)
        await queue._ensure()
        return queue

    async def _ensure(self) -> None:
        streams = [  # the queue (each job taken once) and its dead letters (kept until purged)
            (self.stream, f"jobs.{self.name}.>", RetentionPolicy.WORK_QUEUE),
            (self.dlq_stream, f"jobsdlq.{self.name}.>", RetentionPolicy.LIMITS),
        ]
        for stream, subjects, retention in streams:
            await self._ensure_stream(
                StreamConfig(
                    name=stream,
                    subjects=[subjects],
                    retention=retention,
                    duplicate_window=self.duplicate_window,
                    allow_msg_schedules=True if self.schedules and stream == self.stream else None,
                )
            )
        config = ConsumerConfig(
            name=self.consumer,
            durable_name=self.consumer,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_deliver=self.max_attempts + 3,
            filter_subject=self.subject,
        )
        try:
            info = await self.js.consumer_info(self.stream, self.consumer)
        except nats.js.errors.NotFoundError:
            await self.js.add_consumer(self.stream, config=config)
            return
        current = info.config
        if (current.ack_wait, current.max_deliver) != (config.ack_wait, config.max_deliver):
            await self.js.add_consumer(self.stream, config=config)  # CONSUMER.CREATE with a changed config updates

    async def _ensure_stream(self, config: StreamConfig) -> None:
        try:
            info = await self.js.stream_info(str(config.name))
        except nats.js.errors.NotFoundError:
            await self.js.add_stream(config=config)
            return
        if config.allow_msg_schedules and not info.config.allow_msg_schedules:
            try:  # a queue made before schedules were served (or by an older streamd.jobs): turn them on
                await self.js.update_stream(config=info.config.evolve(allow_msg_schedules=True))
            except nats.js.errors.APIError as exc:
                log.warning("jobs: %s keeps delaying jobs by nak: schedules not enabled (%s)", self.name, exc)
                self.schedules = False

    def _headers(
        self,
        id: str | None,
        delay: float | None,
        run_at: dt.datetime | None,
        headers: Mapping[str, str] | None,
    ) -> dict[str, str] | None:
        if delay is not None and run_at is not None:
            raise ValueError("pass delay or run_at, not both")
        out = dict(headers or {})
        if id is not None:
            out[_MSG_ID] = out[H_ID] = id
        if delay is not None and delay > 0:
            run_at = _now() + dt.timedelta(seconds=delay)
        if run_at is not None:
            out[H_RUN_AT] = _utc(run_at).isoformat()
        return out or None

    def _subject(self, headers: dict[str, str] | None) -> str:
        """Where to publish a job: a delayed one, where schedules are on, as a schedule of its own (a subject holds
        one schedule) that the server fires onto the queue subject at its run-at time."""
        run_at = headers.get(H_RUN_AT) if headers else None
        if not (self.schedules and headers and run_at):
            return self.subject
        when = dt.datetime.fromisoformat(run_at)
        if when <= _now():
            return self.subject
        headers[_SCHEDULE] = "@at " + when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        headers[_SCHEDULE_TARGET] = self.subject
        return f"jobs.{self.name}.sched.{uuid.uuid4().hex}"

    async def enqueue(
        self,
        payload: Any = b"",
        *,
        id: str | None = None,
        delay: float | None = None,
        run_at: dt.datetime | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> int:
        """Add a job; returns its queue sequence (a job delayed by a schedule: the schedule's; the job gets its own
        when it comes due). A repeated `id` within the duplicate window is not added again
        (the sequence of the first is returned). `payload` is bytes or anything msgspec encodes as JSON."""
        hdrs = self._headers(id, delay, run_at, headers)
        ack: PubAck = await self.js.publish(self._subject(hdrs), _encode(payload), stream=self.stream, headers=hdrs)
        return int(ack.seq)

    async def enqueue_many(
        self,
        payloads: Iterable[Any],
        *,
        ids: Iterable[str | None] | None = None,
        delay: float | None = None,
        run_at: dt.datetime | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> list[int]:
        """Add many jobs with pipelined publishes; returns their sequences once every PubAck arrived."""
        items = list(payloads)
        id_list = list(ids) if ids is not None else [None] * len(items)
        if len(id_list) != len(items):
            raise ValueError("ids must match payloads")
        futures = []
        for p, i in zip(items, id_list, strict=True):
            hdrs = self._headers(i, delay, run_at, headers)
            futures.append(
                await self.js.publish_async(self._subject(hdrs), _encode(p), stream=self.stream, headers=hdrs)
            )
        acks = await asyncio.gather(*futures)
        return [int(a.seq) for a in acks]

    async def pending(self) -> int:
        """Jobs waiting or running."""
        info = await self.js.stream_info(self.stream)
        return int(info.state.messages)

    # Dead letters -----------------------------------------------------------------------------------------------

    async def dead_letter_count(self) -> int:
        info = await self.js.stream_info(self.dlq_stream)
        return int(info.state.messages)

    async def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        """Dead letters, oldest first."""
        out: list[DeadLetter] = []
        if limit == 0 or not await self.dead_letter_count():
            return out
        async with replay(self.js, self.dlq_stream) as events:
            async for event in events:
                out.append(_dead_letter(event))
                if limit is not None and len(out) >= limit:
                    break
        return out

    async def requeue_dead_letters(self, sequences: Iterable[int] | None = None) -> int:
        """Publish dead letters (all, or those with the given DLQ sequences) to the queue again, as new jobs with
        fresh attempts, and delete them from the DLQ. Returns how many were requeued."""
        wanted = set(sequences) if sequences is not None else None
        count = 0
        for dead in await self.dead_letters():
            if wanted is not None and dead.sequence not in wanted:
                continue
            headers = {k: v for k, v in dead.headers.items() if k not in _DLQ_HEADERS and k != _MSG_ID}
            await self.js.publish(self.subject, dead.data, stream=self.stream, headers=headers or None)
            await self.js.delete_msg(self.dlq_stream, dead.sequence)
            count += 1
        return count

    async def purge_dead_letters(self) -> None:
        await self.js.purge_stream(self.dlq_stream)

    async def delete(self) -> None:
        """Delete the queue's streams (and so its consumer)."""
        for stream in (self.stream, self.dlq_stream):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await self.js.delete_stream(stream)

    async def _dead_letter(self, msg: Msg, attempts: int, error: str) -> None:
        md = msg.metadata
        headers = {k: v for k, v in (msg.headers or {}).items() if k != _MSG_ID}
        headers.update(
            {
                H_ERROR: error[:4000],
                H_ATTEMPTS: str(attempts),
                H_QUEUE_SEQ: str(md.sequence.stream),
                H_FAILED_AT: _now().isoformat(),
                # one dead letter per queued job, even if the worker dies between this publish and the term
                _MSG_ID: f"{self.stream}:{md.sequence.stream}",
            }
        )
        await self.js.publish(self.dlq_subject, msg.data, stream=self.dlq_stream, headers=headers)


def _dead_letter(event: Event) -> DeadLetter:
    h = event.headers
    failed = h.get(H_FAILED_AT)
    return DeadLetter(
        sequence=event.sequence,
        id=h.get(H_ID),
        data=event.data,
        error=h.get(H_ERROR, ""),
        attempts=int(h.get(H_ATTEMPTS, "0")),
        failed_at=dt.datetime.fromisoformat(failed) if failed else event.time,
        headers=h,
    )


Handler = Callable[[Job], Awaitable[Any]]


@dataclass
class Worker:
    """Runs `handler(job)` for the queue's jobs, at most `concurrency` at a time.

    Handler returns: the job is acked (done). Raises `Retry(after)`: retried after that delay. Raises `Reject`
    (`Fail`): dropped (`+TERM`). Raises anything else: retried after `backoff.delay(attempt)`. A job that failed its
    `queue.max_attempts`-th attempt goes to the dead-letter stream and is termed. While a handler runs, the worker
    sends in-progress acks every `ack_wait / 2`, so long jobs are not redelivered to another worker.
    """

    queue: Queue
    handler: Handler
    concurrency: int = 1
    backoff: Backoff = field(default_factory=Backoff)
    fetch_timeout: float = 1.0
    _sub: JetStreamContext.PullSubscription | None = field(default=None, init=False, repr=False)
    _loop_task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _running: dict[asyncio.Task[None], Msg] = field(default_factory=dict, init=False, repr=False)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)
    _slots: asyncio.Semaphore | None = field(default=None, init=False, repr=False)

    async def start(self) -> None:
        if self._loop_task is not None:
            raise RuntimeError("worker already started")
        self._slots = asyncio.Semaphore(self.concurrency)
        q = self.queue
        self._sub = await q.js.pull_subscribe_bind(durable=q.consumer, stream=q.stream)
        self._loop_task = asyncio.create_task(self._fetch_loop(), name=f"jobs-worker-{q.name}")

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def running(self) -> int:
        return len(self._running)

    async def _fetch_loop(self) -> None:
        assert self._slots is not None and self._sub is not None
        while not self._stopping.is_set():
            if not await self._acquire_slot():
                break
            free = 1
            while free < self.concurrency and not self._slots.locked():
                await self._slots.acquire()
                free += 1
            msgs: list[Msg] = []
            try:
                if not self._stopping.is_set():
                    msgs = await self._sub.fetch(free, timeout=self.fetch_timeout)
            except TimeoutError:  # nats-py raises its own subclass or, near the deadline, the plain one
                pass
            except Exception:
                log.exception("jobs: fetch from %s failed", self.queue.stream)
                await asyncio.sleep(self.fetch_timeout)
            for _ in range(free - len(msgs)):
                self._slots.release()
            for msg in msgs:
                if self._stopping.is_set():
                    self._slots.release()
                    with contextlib.suppress(Exception):
                        await msg.nak()
                    continue
                task = asyncio.create_task(self._run(msg))
                self._running[task] = msg
                task.add_done_callback(self._done)

    async def _acquire_slot(self) -> bool:
        """Wait for a free handler slot; False (holding none) once the worker is stopping."""
        assert self._slots is not None
        acquire = asyncio.ensure_future(self._slots.acquire())
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({acquire, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if acquire.done() and not self._stopping.is_set():
            return True
        acquire.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await acquire
        if not acquire.cancelled():
            self._slots.release()
        return False

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)
        assert self._slots is not None
        self._slots.release()

    async def _run(self, msg: Msg) -> None:
        try:
            await self._process(msg)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("jobs: settling job %s of %s failed", msg.metadata.sequence.stream, self.queue.name)

    async def _process(self, msg: Msg) -> None:
        md = msg.metadata
        headers = dict(msg.headers or {})
        run_at_text = headers.get(H_RUN_AT)
        run_at = dt.datetime.fromisoformat(run_at_text) if run_at_text else None
        deferred = 0
        if run_at is not None:
            remaining = (run_at - _now()).total_seconds()
            if remaining > _RUN_AT_SLACK:
                await msg.nak(delay=remaining)
                return
            # it was enqueued before its run-at time, so (unless no worker was up then) one delivery was a deferral
            if (run_at - md.timestamp).total_seconds() > _RUN_AT_SLACK:
                deferred = 1
        attempt = max(1, md.num_delivered - deferred)
        max_attempts = self.queue.max_attempts
        if attempt > max_attempts:
            await self.queue._dead_letter(msg, attempt - 1, "attempts exhausted (worker lost during last attempt)")
            await msg.term()
            return
        job = Job(
            id=headers.get(H_ID),
            data=msg.data,
            headers=headers,
            attempt=attempt,
            enqueued_at=md.timestamp,
            sequence=md.sequence.stream,
        )
        keepalive = asyncio.create_task(self._keepalive(msg))
        try:
            await self.handler(job)
        except Reject:
            await msg.term()
            return
        except Retry as exc:
            await self._retry_or_bury(msg, attempt, exc.after, f"Retry: {exc}")
            return
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            await self._retry_or_bury(msg, attempt, self.backoff.delay(attempt), error)
            return
        finally:
            keepalive.cancel()
        await msg.ack()

    async def _retry_or_bury(self, msg: Msg, attempt: int, delay: float, error: str) -> None:
        if attempt >= self.queue.max_attempts:
            await self.queue._dead_letter(msg, attempt, error)
            await msg.term()
        else:
            await msg.nak(delay=delay)

    async def _keepalive(self, msg: Msg) -> None:
        interval = max(0.05, self.queue.ack_wait / 2)
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(Exception):
                await msg.in_progress()

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop fetching, give running handlers up to `timeout` seconds, then cancel the rest and nak their jobs
        (they are redelivered at once to other workers)."""
        self._stopping.set()
        if self._loop_task is not None:
            await self._loop_task
        running = dict(self._running)
        if running:
            _, late = await asyncio.wait(running, timeout=timeout)
            for task in late:
                task.cancel()
            for task in late:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                with contextlib.suppress(Exception):
                    await running[task].nak()
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
