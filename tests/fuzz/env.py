"""The fuzz's world: one streamd with a few known assets, a nats-py client for the liveness checks, a raw client
for the fuzzed requests, and a way to run a Hypothesis test (which is synchronous) against the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy

from tests.conftest import RunningService, StartService
from tests.fuzz import checks
from tests.fuzz.rawclient import RawClient, Reply
from tests.fuzz.strategies import LIVE_STREAM, LIVE_SUBJECT, PULL, PUSH, STREAM, WQ_STREAM
from tests.natsd import NatsServer

REPLY_BOUND = 2.0  # seconds within which every request nats-server would answer must be answered
EXAMPLE_BOUND = 60.0  # one example, liveness checks included (a wedged service fails here, not at pytest's timeout)
# Verbs that cannot change the assets: after one of these (or a request nobody serves) they need no putting back.
READ_ONLY_VERBS = frozenset(
    {"INFO", "STREAM.INFO", "STREAM.NAMES", "STREAM.LIST", "STREAM.MSG.GET", "DIRECT.GET", "CONSUMER.INFO"}
    | {"CONSUMER.NAMES", "CONSUMER.LIST", "STREAM.LEADER.STEPDOWN", "CONSUMER.LEADER.STEPDOWN", "STREAM.PEER.REMOVE"}
)


class ErrorLog(logging.Handler):
    """streamd's ERROR records: a handler's exception is a failure even when a well-formed 500 went out."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def take(self) -> list[str]:
        out = [self.format(r).splitlines()[0] + " | " + self.format(r).splitlines()[-1] for r in self.records]
        self.records.clear()
        return out


@dataclass
class FuzzEnv:
    nats_server: NatsServer
    start_service: StartService
    service: RunningService
    nc: Client
    js: JetStreamContext
    raw: RawClient
    log: ErrorLog
    dirty: bool = True  # an earlier request may have changed the assets

    @classmethod
    async def start(cls, nats_server: NatsServer, start_service: StartService) -> FuzzEnv:
        service = await start_service()
        nc = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
        raw = await RawClient.connect(nats_server.port)
        log = ErrorLog()
        logging.getLogger("streamd").addHandler(log)
        env = cls(nats_server, start_service, service, nc, nc.jetstream(timeout=REPLY_BOUND), raw, log)
        await env.js.add_stream(name=LIVE_STREAM, subjects=["live.>"])
        await env.reset_assets()
        return env

    async def close(self) -> None:
        logging.getLogger("streamd").removeHandler(self.log)
        await self.raw.close()
        with contextlib.suppress(Exception):
            await self.nc.close()

    def touched(self, verb: str, served: bool) -> None:
        """Note what a request may have changed, so that the next example only resets assets when needed."""
        self.dirty = self.dirty or (served and verb not in READ_ONLY_VERBS)

    async def reset_assets(self) -> None:
        """Put back what earlier examples may have deleted or changed (refusals are fine: it may still be there)."""
        if not self.dirty:
            return
        self.dirty = False
        js = self.js
        with contextlib.suppress(Exception):
            await js.add_stream(name=STREAM, subjects=["fz.>"], allow_direct=True)
        with contextlib.suppress(Exception):
            await js.add_stream(name=WQ_STREAM, subjects=["wq.>"], retention=RetentionPolicy.WORK_QUEUE)
        with contextlib.suppress(Exception):
            await js.add_consumer(STREAM, ConsumerConfig(durable_name=PULL, ack_policy=AckPolicy.EXPLICIT))
        with contextlib.suppress(Exception):
            await js.add_consumer(STREAM, ConsumerConfig(durable_name=PUSH, deliver_subject="_FZPUSH"))
        with contextlib.suppress(Exception):
            await js.publish("fz.a", b"a", headers={"X-A": "1"})

    async def assert_serving(self) -> None:
        """The service still serves: its task runs, a publish gets its PubAck and $JS.API.INFO answers."""
        assert not self.service.task.done(), f"streamd stopped: {self.service.task!r}"
        logged = self.log.take()
        assert not logged, f"streamd logged errors: {logged}"
        assert self.raw.alive, f"the server dropped the fuzz connection: {self.raw.errors[-3:]}"
        ack = await self.js.publish(LIVE_SUBJECT, b"alive")
        assert ack.stream == LIVE_STREAM and ack.seq >= 1
        info = await self.nc.request("$JS.API.INFO", b"", timeout=REPLY_BOUND)
        assert json.loads(info.data)["type"] == checks.TYPE_PREFIX + "account_info_response"

    async def restart(self) -> None:
        """Stop streamd (it must stop) and start it again on the same data dir: it must start and serve."""
        await self.service.stop()
        self.service = await self.start_service()
        await self.assert_serving()
        info = await self.js.stream_info(LIVE_STREAM)
        assert info.state.messages >= 1

    async def request(
        self, subject: bytes, body: bytes, reply_tail: bytes | None, headers: bytes | None, wait: float
    ) -> tuple[int, Reply | None]:
        """Send one request on the raw connection; its reply (or None) within `wait` seconds."""
        if reply_tail is None:
            self.raw.publish(subject, body, headers=headers)
            await self.raw.flush()
            return 0, None
        number, reply = self.raw.new_reply(reply_tail)
        self.raw.publish(subject, body, reply, headers)
        if wait <= 0:
            await self.raw.flush()
            return number, None
        return number, await self.raw.reply(number, wait)


def run_examples(
    loop: asyncio.AbstractEventLoop, example: Callable[..., Coroutine[Any, Any, None]]
) -> Callable[..., None]:
    """Hypothesis calls tests synchronously: run each example's coroutine on the test's loop from a worker thread."""

    def call(*args: Any, **kwargs: Any) -> None:
        asyncio.run_coroutine_threadsafe(example(*args, **kwargs), loop).result(timeout=EXAMPLE_BOUND)

    return call
