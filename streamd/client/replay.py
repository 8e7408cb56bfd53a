"""Replay a stream's history as plain events, without acks or consumer bookkeeping (issue #6).

Built only on nats-py's JetStream client, so it works against streamd and a real JetStream server alike.

- `replay(js, stream, ...)`: an async iterator over events from the start, a sequence, a time or "last per subject",
  optionally filtered by subjects, in stream order; with `follow=True` it keeps tailing new events. It reads through
  an ephemeral pull consumer with `ack_policy=none`, deleted when the iteration ends (exhausted, `break` inside
  `async with`, or `aclose()`); `inactive_threshold` removes it should the client vanish.
- `CheckpointedReader`: the same over a *durable* consumer whose ack is the checkpoint: an event is acked (and the
  ack confirmed) only once the caller asks for the next one, so a reader stopped and restarted resumes after the
  last event it finished, without gaps or repeats.
- `Projection`: rebuild a read model from the whole history with `apply(state, event) -> state`, then keep it
  current in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

__all__ = ["CheckpointedReader", "Event", "Projection", "Replay", "replay"]

_FETCH_TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class Event:
    """One stored message: its subject, payload, headers, stream sequence and stream timestamp (UTC)."""

    subject: str
    data: bytes
    headers: dict[str, str]
    sequence: int
    time: dt.datetime


def _event(msg: Msg) -> Event:
    md = msg.metadata
    return Event(
        subject=msg.subject,
        data=msg.data,
        headers=dict(msg.headers or {}),
        sequence=md.sequence.stream,
        time=md.timestamp,
    )


def _start_config(
    *,
    subjects: Sequence[str] | None,
    start_seq: int | None,
    start_time: dt.datetime | None,
    last_per_subject: bool,
) -> ConsumerConfig:
    chosen = sum(x is not None and x is not False for x in (start_seq, start_time, last_per_subject))
    if chosen > 1:
        raise ValueError("choose at most one of start_seq, start_time, last_per_subject")
    config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    if start_seq is not None:
        config.deliver_policy, config.opt_start_seq = DeliverPolicy.BY_START_SEQUENCE, max(1, start_seq)
    elif start_time is not None:
        if start_time.tzinfo is None:
            raise ValueError("start_time must be timezone-aware")
        config.deliver_policy, config.opt_start_time = DeliverPolicy.BY_START_TIME, start_time.astimezone(dt.UTC)
    elif last_per_subject:
        config.deliver_policy = DeliverPolicy.LAST_PER_SUBJECT
    subs = list(subjects or [])
    if last_per_subject and not subs:
        subs = [">"]  # JetStream wants a filter with last-per-subject
    if len(subs) == 1:
        config.filter_subject = subs[0]
    elif subs:
        config.filter_subjects = subs
    return config


class _Reader:
    """Shared fetch loop: one pull consumer, end detection by `num_pending`, or tailing with `follow`."""

    def __init__(self, js: JetStreamContext, stream: str, config: ConsumerConfig, follow: bool, batch: int) -> None:
        self._js = js
        self._stream = stream
        self._config = config
        self._follow = follow
        self._batch = batch
        self._sub: JetStreamContext.PullSubscription | None = None
        self._buffer: list[Msg] = []
        self._done = False
        self._started = False
        self.consumer_name: str | None = None

    async def _open(self) -> None:
        info = await self._js.add_consumer(self._stream, config=self._config)
        self.consumer_name = info.name
        self._sub = await self._js.pull_subscribe_bind(consumer=info.name, stream=self._stream)
        self._started = True
        if not self._follow and not info.num_pending and not info.num_ack_pending:
            self._done = True

    async def _next_msg(self) -> Msg | None:
        """The next message, or None when the stream is exhausted (never, with follow)."""
        if not self._started:
            await self._open()
        while not self._buffer:
            if self._done:
                return None
            assert self._sub is not None
            try:
                self._buffer = await self._sub.fetch(self._batch, timeout=_FETCH_TIMEOUT)
            except TimeoutError:  # nats-py raises its own subclass or, near the deadline, the plain one
                if not self._follow and await self._caught_up():
                    self._done = True
        msg = self._buffer.pop(0)
        if not self._follow and msg.metadata.num_pending == 0 and not self._buffer:
            self._done = True
        return msg

    async def _caught_up(self) -> bool:
        assert self.consumer_name is not None
        info = await self._js.consumer_info(self._stream, self.consumer_name)
        return not info.num_pending and not info.num_ack_pending


class Replay(_Reader):
    """Async iterator of `Event`s over an ephemeral consumer; use `async with` (or `aclose()`) to clean up early."""

    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        config: ConsumerConfig,
        follow: bool,
        batch: int,
        inactive_threshold: float,
    ) -> None:
        config.ack_policy = AckPolicy.NONE
        config.inactive_threshold = inactive_threshold
        super().__init__(js, stream, config, follow, batch)
        self._closed = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        if self._closed:
            raise StopAsyncIteration
        msg = await self._next_msg()
        if msg is None:
            await self.aclose()
            raise StopAsyncIteration
        return _event(msg)

    async def aclose(self) -> None:
        """Unsubscribe and delete the ephemeral consumer (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        if self.consumer_name is not None:
            with contextlib.suppress(nats.js.errors.NotFoundError, nats.errors.Error):
                await self._js.delete_consumer(self._stream, self.consumer_name)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def replay(
    js: JetStreamContext,
    stream: str,
    *,
    subjects: Sequence[str] | None = None,
    start_seq: int | None = None,
    start_time: dt.datetime | None = None,
    last_per_subject: bool = False,
    follow: bool = False,
    batch: int = 256,
    inactive_threshold: float = 60.0,
) -> Replay:
    """Events of `stream` in order, from the start (default), `start_seq`, `start_time` or the last per subject.

    Without `follow` the iteration ends once it has returned every event stored when it caught up; with `follow`
    it keeps waiting for new ones until closed.
    """
    config = _start_config(
        subjects=subjects, start_seq=start_seq, start_time=start_time, last_per_subject=last_per_subject
    )
    return Replay(js, stream, config, follow, batch, inactive_threshold)


class CheckpointedReader(_Reader):
    """Events of `stream` through the durable consumer `durable`, resuming where the last reader left off.

    An event counts as processed when the loop asks for the next one (or on `close()` after a fully processed
    event): only then is it acked, with the ack confirmed, so the durable consumer's ack floor is the checkpoint.
    `max_ack_pending=1` keeps delivery strictly in order. Used as `async with reader: async for event in reader:`,
    leaving the block normally (or by `break`) counts the last event as processed, leaving it by an exception does
    not: that event is nak'ed and comes first next time (as with `close()` without `processed=True`).

    The start options apply only when the durable is first created. Without `follow` iteration stops when the
    reader has caught up.
    """

    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        durable: str,
        *,
        subjects: Sequence[str] | None = None,
        start_seq: int | None = None,
        start_time: dt.datetime | None = None,
        last_per_subject: bool = False,
        follow: bool = False,
        ack_wait: float = 30.0,
    ) -> None:
        config = _start_config(
            subjects=subjects, start_seq=start_seq, start_time=start_time, last_per_subject=last_per_subject
        )
        config.durable_name = config.name = durable
        config.ack_policy = AckPolicy.EXPLICIT
        config.max_ack_pending = 1
        config.ack_wait = ack_wait
        super().__init__(js, stream, config, follow, 1)
        self._current: Msg | None = None
        self._closed = False

    async def _open(self) -> None:
        try:
            info = await self._js.consumer_info(self._stream, str(self._config.durable_name))
        except nats.js.errors.NotFoundError:
            info = await self._js.add_consumer(self._stream, config=self._config)
        self.consumer_name = info.name
        self._sub = await self._js.pull_subscribe_bind(durable=info.name, stream=self._stream)
        self._started = True
        if not self._follow and not info.num_pending and not info.num_ack_pending:
            self._done = True

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        await self.commit()
        if self._closed:
            raise StopAsyncIteration
        msg = await self._next_msg()
        if msg is None:
            raise StopAsyncIteration
        self._current = msg
        return _event(msg)

    async def commit(self) -> None:
        """Record the event last returned as processed (done automatically when the next one is requested)."""
        if self._current is not None:
            msg, self._current = self._current, None
            await msg.ack_sync(timeout=5)

    async def close(self, *, processed: bool = False) -> None:
        """Stop reading. The event last returned is acked if `processed`, otherwise nak'ed for the next reader."""
        if self._closed:
            return
        self._closed = True
        if self._current is not None:
            if processed:
                await self.commit()
            else:
                msg, self._current = self._current, None
                with contextlib.suppress(Exception):
                    await msg.nak()
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # leaving the block normally (also by `break`) means the last event was processed; an exception means not
        await self.close(processed=exc_type is None)


S = TypeVar("S")


@dataclass
class Projection(Generic[S]):
    """A read model kept by folding events: `state = apply(state, event)` for every event of `stream`.

    `await start()` rebuilds the state from the whole history (returns once caught up), then keeps applying new
    events in a background task until `await stop()`. `last_sequence` is the sequence of the last event applied.
    """

    js: JetStreamContext
    stream: str
    apply: Callable[[S, Event], S]
    state: S
    subjects: Sequence[str] | None = None
    last_sequence: int = 0
    _task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _changed: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)

    async def rebuild(self) -> S:
        """Apply every stored event (from `last_sequence + 1`) once, and return the state."""
        async with replay(self.js, self.stream, subjects=self.subjects, start_seq=self.last_sequence + 1) as events:
            async for event in events:
                self._apply(event)
        return self.state

    def _apply(self, event: Event) -> None:
        self.state = self.apply(self.state, event)
        self.last_sequence = event.sequence
        self._changed.set()

    async def start(self) -> S:
        """Rebuild, then follow new events in the background."""
        await self.rebuild()
        follower = replay(self.js, self.stream, subjects=self.subjects, start_seq=self.last_sequence + 1, follow=True)
        self._task = asyncio.create_task(self._follow(follower))
        return self.state

    async def _follow(self, follower: Replay) -> None:
        async with follower:
            async for event in follower:
                self._apply(event)

    async def wait_until(self, predicate: Callable[[S], Any], timeout: float = 10.0) -> S:
        """Wait until `predicate(state)` holds (checked after every applied event)."""
        async with asyncio.timeout(timeout):
            while not predicate(self.state):
                self._changed.clear()
                await self._changed.wait()
        return self.state

    async def stop(self) -> None:
        """Stop following (the ephemeral consumer is deleted)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
