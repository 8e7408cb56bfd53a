"""Helpers for the consumer conformance tests: raw CONSUMER.* requests and a pull-request inbox."""

from __future__ import annotations

import asyncio
import datetime
import json
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from tests.conformance.util import api, user_metadata

C = "$JS.API.CONSUMER."

# What a status message looks like to a client: (Status, Description, the other headers).
Status = tuple[str, str | None, dict[str, str]]


async def create(nc: Client, suffix: str, config: dict[str, Any], stream: str = "S", **extra: Any) -> dict[str, Any]:
    """Raw `$JS.API.CONSUMER.<suffix>` create request (`suffix` e.g. "CREATE.S.c1" or "DURABLE.CREATE.S.d")."""
    return await api(nc, C + suffix, {"stream_name": stream, "config": config, **extra})


async def create_ok(nc: Client, suffix: str, config: dict[str, Any], stream: str = "S", **extra: Any) -> dict[str, Any]:
    reply = await create(nc, suffix, config, stream, **extra)
    assert "error" not in reply, reply
    return reply


async def names(nc: Client, stream: str = "S") -> list[str]:
    reply = await api(nc, f"{C}NAMES.{stream}", b"")
    assert "error" not in reply, reply
    return list(reply["consumers"])


def in_an_hour() -> str:
    """RFC 3339 time an hour ahead, with a fraction that has no trailing zero (the server echoes it canonically)."""
    t = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    return t.replace(microsecond=t.microsecond // 10 * 10 + 7).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def consumer_info(nc: Client, stream: str, consumer: str) -> dict[str, Any]:
    reply = await api(nc, f"{C}INFO.{stream}.{consumer}")
    assert "error" not in reply, reply
    return reply


def config_of(reply: dict[str, Any]) -> dict[str, Any]:
    """The echoed ConsumerConfig without `metadata` (the real server adds `_nats.*` version keys: cosmetic).

    User metadata is put back, so it is still compared."""
    config = {k: v for k, v in reply["config"].items() if k != "metadata"}
    user = user_metadata(reply["config"])
    if user:
        config["metadata"] = user
    return config


def numbers(info: dict[str, Any]) -> dict[str, Any]:
    """The counters of a ConsumerInfo (sequence pairs without their `last_active` timestamps)."""
    return {
        "delivered": {k: info["delivered"][k] for k in ("consumer_seq", "stream_seq")},
        "ack_floor": {k: info["ack_floor"][k] for k in ("consumer_seq", "stream_seq")},
        **{k: info[k] for k in ("num_ack_pending", "num_redelivered", "num_waiting", "num_pending")},
    }


def headers_of(msg: Msg) -> dict[str, str]:
    """Headers with nats-py's enum keys (Status/Description of an inline status line) turned into plain strings."""
    return {str(getattr(k, "value", k)): v for k, v in (msg.headers or {}).items()}


def status_of(msg: Msg) -> Status | None:
    """(Status, Description, other headers) of a header-only status message; None for a data message."""
    headers = headers_of(msg)
    if "Status" not in headers:
        return None
    assert msg.data == b"", f"status message with a payload: {msg!r}"
    assert msg.reply == "", f"status message with a reply subject: {msg!r}"
    rest = {k: v for k, v in headers.items() if k not in ("Status", "Description")}
    return headers["Status"], headers.get("Description"), rest


def ack_tokens(msg: Msg) -> list[str]:
    """The tokens of a delivery's v1 ack reply `$JS.ACK.<stream>.<consumer>.<dc>.<sseq>.<cseq>.<ts>.<pending>`."""
    tokens = msg.reply.split(".")
    assert len(tokens) == 9 and tokens[:2] == ["$JS", "ACK"], msg.reply
    return tokens


def delivery(msg: Msg) -> tuple[str, bytes, int, int, int, int]:
    """(subject, data, delivered count, stream seq, consumer seq, pending) of a delivered message."""
    assert status_of(msg) is None, f"expected a message, got status {status_of(msg)}"
    t = ack_tokens(msg)
    return msg.subject, msg.data, int(t[4]), int(t[5]), int(t[6]), int(t[8])


class Inbox:
    """A plain inbox subscription used as the reply subject of raw MSG.NEXT requests."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.subject = nc.new_inbox()
        self.queue: asyncio.Queue[Msg] = asyncio.Queue()
        self.sub: Subscription | None = None

    async def open(self) -> Inbox:
        async def received(msg: Msg) -> None:
            await self.queue.put(msg)

        self.sub = await self.nc.subscribe(self.subject, cb=received)
        # streamd delivers over its leaf connection: the hub must know the inbox before the request is sent.
        await self.nc.flush()
        return self

    async def next_request(self, stream: str, consumer: str, body: Any = b"") -> None:
        """Publish a MSG.NEXT request with this inbox as reply (`body`: bytes as is, else JSON)."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        await self.nc.publish(f"{C}MSG.NEXT.{stream}.{consumer}", data, reply=self.subject)
        await self.nc.flush()

    async def get(self, timeout: float = 3.0) -> Msg:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            raise AssertionError(f"nothing arrived on the inbox within {timeout}s") from None

    async def take(self, n: int, timeout: float = 3.0) -> list[Msg]:
        return [await self.get(timeout) for _ in range(n)]

    async def status(self, timeout: float = 3.0) -> Status:
        """The next message, which must be a status."""
        msg = await self.get(timeout)
        st = status_of(msg)
        assert st is not None, f"expected a status message, got {msg.subject} {msg.data!r}"
        return st

    async def quiet(self, period: float = 0.3) -> None:
        """Prove that nothing (more) arrives within a short period."""
        try:
            msg = await asyncio.wait_for(self.queue.get(), period)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected message: {msg.subject} {headers_of(msg)} {msg.data!r}")

    async def close(self) -> None:
        if self.sub is not None:
            await self.sub.unsubscribe()


async def open_inbox(nc: Client) -> Inbox:
    return await Inbox(nc).open()
