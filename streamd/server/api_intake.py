"""API requests in: the `$JS.API` subscriptions with their queues and workers, and the consumer raw paths (acks,
flow-control replies, CONSUMER.MSG.NEXT pull requests).

Every task here (one worker per API subscription, and a task per large request) belongs to the serving
TaskGroup handed to `subscribe_api`; `stop_api` cancels them at the point of the stop sequence where the old
code did, and the TaskGroup's exit is what waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from streamd.api.context import Context
from streamd.api.dispatch import RequestQueue, dispatch
from streamd.api.routes import ROUTES
from streamd.consumers.manager import ConsumerManager
from streamd.transport.connection import Connection
from streamd.wire.headers import status

logger = logging.getLogger(__name__)

BAD_REQUEST_STATUS = status(400, "Bad Request")
# A pull's deliveries carry its reply subject and an ack subject (up to ~1.2 KB) on one protocol line, which the
# server takes up to 4 KiB; a longer reply would make it close the leaf connection, so it is refused.
MAX_PULL_REPLY = 2048
API_PENDING_MSGS = 100_000  # queued API requests before more are dropped (counted as slow consumer events)
API_PENDING_BYTES = 64 << 20
BIG_REQUEST = 32 << 10  # API requests at least this large are answered in a task of their own
MAX_BIG_IN_FLIGHT = 4  # beyond this, a large request holds its queue like any other (memory stays bounded)
DROP_LOG_EVERY = 5.0  # seconds between "API queue full" errors in the log
# The API subjects served through the queues; CONSUMER.MSG.NEXT is not among them (see subscribe_consumer_paths).
# One subscription per first verb token, taken from the route table so that every route is subscribed.
CONSUMER_VERBS = tuple(sorted({verb.split(".")[1] for verb in ROUTES if verb.startswith("CONSUMER.")}))


class ApiIntake:
    """The API and consumer-path subscriptions with their workers, so the stop can end them in its order."""

    def __init__(self, conn: Connection, ctx: Context, api_prefix: str) -> None:
        self._conn = conn
        self._ctx = ctx
        self._prefix = api_prefix
        self._cut = len(api_prefix) + 1
        self._api_subs: list[Any] = []
        self._workers: list[asyncio.Task[None]] = []
        self._large: set[asyncio.Task[None]] = set()  # large API requests in flight
        self._consumer_subs: list[Any] = []
        self._drop_logged = 0.0

    # ---- $JS.API requests ---------------------------------------------------------------------------------

    async def subscribe_api(self, tg: asyncio.TaskGroup) -> None:
        """API requests take the raw path (bytes, never a nats-py Msg: odd bytes cannot break its reader); each
        subscription keeps its own queue and worker, so requests run one at a time in arrival order as before."""
        prefix = self._prefix
        consumer_subjects = [f"{prefix}.CONSUMER.{verb}.>" for verb in CONSUMER_VERBS]
        for subject in (f"{prefix}.INFO", f"{prefix}.STREAM.>", *consumer_subjects):
            queue = RequestQueue(API_PENDING_MSGS, API_PENDING_BYTES)
            self._workers.append(tg.create_task(self._worker(queue, tg), name="streamd-api"))
            self._api_subs.append(await self._conn.subscribe_raw(subject, self._enqueue(queue)))

    def _enqueue(self, queue: RequestQueue) -> Any:
        stats = self._ctx.stats

        def on_api(subject: bytes, reply: bytes, data: bytes, hdrs: bytes | None) -> None:
            if not queue.offer((bytes(subject), bytes(reply), bytes(data), bytes(hdrs) if hdrs else None)):
                stats.slow_consumer_events += 1
                now = time.monotonic()
                if now - self._drop_logged > DROP_LOG_EVERY:
                    self._drop_logged = now
                    logger.error("API queue full: requests dropped (%d so far)", stats.slow_consumer_events)

        return on_api

    async def _worker(self, queue: RequestQueue, tg: asyncio.TaskGroup) -> None:
        while True:
            subject, reply, data, hdrs = await queue.take()
            call = self._answer(subject, reply, data, hdrs)
            if len(data) < BIG_REQUEST or len(self._large) >= MAX_BIG_IN_FLIGHT:
                await call
                continue
            # A large request (a create with 100k subjects) may take seconds: it must not hold the requests
            # queued behind it on this subscription (INFO, other streams). Changes stay ordered by the manager.
            task = tg.create_task(call, name="streamd-api-large")
            self._large.add(task)
            task.add_done_callback(self._large.discard)

    async def _answer(self, subject: bytes, reply: bytes, data: bytes, hdrs: bytes | None) -> None:
        try:
            await dispatch(self._ctx, subject[self._cut :], reply, data, hdrs)
        except Exception:  # dispatch answers its own errors; this guards the worker's life and the TaskGroup
            logger.exception("API request on %r was not answered", subject[:200])

    async def stop_api(self) -> None:
        """Unsubscribe the API subjects, then cancel the workers and the large requests in flight."""
        for sub in self._api_subs:
            with contextlib.suppress(Exception):
                await self._conn.unsubscribe_raw(sub)
        for task in (*self._workers, *self._large):
            task.cancel()

    # ---- consumer raw paths ---------------------------------------------------------------------------------

    async def subscribe_consumer_paths(self, consumers: ConsumerManager) -> None:
        """Acks, flow-control replies and pull requests take the raw path: no Msg objects, no queue hop.

        This is the only way CONSUMER.MSG.NEXT is served: its subject is not among the queued API subscriptions,
        and the API route table has no entry for it."""
        next_prefix = f"{self._prefix}.CONSUMER.MSG.NEXT."
        self._consumer_subs = [
            await self._conn.subscribe_raw("$JS.ACK.>", consumers.on_ack),
            await self._conn.subscribe_raw("$JS.FC.>", consumers.on_flow_control),
            await self._conn.subscribe_raw(next_prefix + ">", self._on_next(consumers, len(next_prefix))),
        ]

    def _on_next(self, consumers: ConsumerManager, cut: int) -> Any:
        conn = self._conn

        def on_next(subject: bytes, reply: bytes, data: bytes, _hdrs: bytes | None) -> None:
            names = subject[cut:].decode(errors="replace").split(".")
            if len(names) != 2 or not reply:
                return
            try:
                reply_text = bytes(reply).decode()
            except UnicodeDecodeError:  # deliveries go to this subject as text: refuse it at the door
                reply_text = ""
            if not reply_text or len(reply) > MAX_PULL_REPLY:  # see MAX_PULL_REPLY
                conn.send_soon(bytes(reply), b"", BAD_REQUEST_STATUS)
                return
            consumers.pull_request_or_503(names[0], names[1], reply_text, bytes(data))

        return on_next

    async def stop_consumer_paths(self) -> None:
        for sub in self._consumer_subs:
            with contextlib.suppress(Exception):
                await self._conn.unsubscribe_raw(sub)
