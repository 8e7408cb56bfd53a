"""The client side of JetStream's STREAM.SNAPSHOT / STREAM.RESTORE protocol over plain nats-py (as the `nats`
CLI speaks it): chunks arrive on an inbox and each one with a reply is acknowledged; restore sends chunks as
requests, each answered once written, then an empty one that is answered with the stream's info."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeout

CHUNK_SIZE = 128 * 1024
# streamd's snapshot payload: Snappy framing's identifier, one uncompressed chunk's head and checksum, its magic.
# A JetStream server's starts with S2's identifier instead.
_FRAMING_ID = b"\xff\x06\x00\x00sNaPpY"
_MAGIC = b"SDSNAP"


def is_streamd_snapshot(first_chunk: bytes) -> bool:
    """Does a snapshot's first chunk (at least 1 KiB, as servers send them) start streamd's format?"""
    return first_chunk.startswith(_FRAMING_ID) and first_chunk[18:24] == _MAGIC


class SnapshotFailed(Exception):
    """The server refused or broke off the transfer; `code`/`err_code` are set for an API error answer."""

    def __init__(self, text: str, code: int = 0, err_code: int = 0) -> None:
        super().__init__(text)
        self.code = code
        self.err_code = err_code


def _api_answer(raw: bytes) -> dict[str, Any]:
    try:
        answer: dict[str, Any] = json.loads(raw)
    except ValueError:
        raise SnapshotFailed(f"unreadable answer: {raw[:200]!r}") from None
    err = answer.get("error")
    if err:
        desc = f"{err.get('description', '')} ({err.get('code')}/{err.get('err_code')})"
        raise SnapshotFailed(desc, int(err.get("code") or 0), int(err.get("err_code") or 0))
    return answer


class Snapshot:
    """A snapshot in progress: `answer` is the server's reply (config, state); iterate `chunks()` for the data.
    Leaving early (`close`) drops the subscription, and the server ends the transfer (no interest)."""

    def __init__(self, nc: Client, sub: Any, answer: dict[str, Any], timeout: float) -> None:
        self.nc, self.sub, self.answer, self.timeout = nc, sub, answer, timeout
        self.bytes = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            try:
                msg = await self.sub.next_msg(timeout=self.timeout)
            except NatsTimeout:
                raise SnapshotFailed(f"no snapshot data for {self.timeout:g} s") from None
            if not msg.data:
                status = (msg.headers or {}).get("Status", "")
                if status and status != "204":
                    desc = (msg.headers or {}).get("Description", "")
                    raise SnapshotFailed(f"snapshot ended by the server: {status} {desc}".strip())
                return
            self.bytes += len(msg.data)
            yield msg.data
            if msg.reply:
                await self.nc.publish(msg.reply, b"")

    async def close(self) -> None:
        try:
            await self.sub.unsubscribe()
        except Exception:  # already gone with the connection
            return


async def start_snapshot(
    nc: Client,
    stream: str,
    *,
    api_prefix: str = "$JS.API",
    no_consumers: bool = False,
    chunk_size: int = CHUNK_SIZE,
    timeout: float = 10.0,
) -> Snapshot:
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, pending_msgs_limit=1_000_000, pending_bytes_limit=256 << 20)
    request = {"deliver_subject": inbox, "no_consumers": no_consumers, "chunk_size": chunk_size}
    try:
        reply = await nc.request(f"{api_prefix}.STREAM.SNAPSHOT.{stream}", json.dumps(request).encode(), timeout)
        answer = _api_answer(reply.data)
    except BaseException:
        await sub.unsubscribe()
        raise
    return Snapshot(nc, sub, answer, timeout)


async def restore(
    nc: Client,
    stream: str,
    config: dict[str, Any],
    chunks: AsyncIterator[bytes],
    *,
    state: dict[str, Any] | None = None,
    api_prefix: str = "$JS.API",
    timeout: float = 10.0,
    progress: Callable[[int], Awaitable[None] | None] | None = None,
) -> dict[str, Any]:
    """Send a snapshot; -> the restored stream's info (the server's stream create answer)."""
    body = json.dumps({"config": {**config, "name": stream}, "state": state or {}}).encode()
    reply = await nc.request(f"{api_prefix}.STREAM.RESTORE.{stream}", body, timeout)
    deliver = _api_answer(reply.data)["deliver_subject"]
    async for chunk in chunks:
        if not chunk:
            continue
        answer = await nc.request(deliver, chunk, timeout)
        if answer.data:
            _api_answer(answer.data)
            raise SnapshotFailed(f"unexpected answer to a chunk: {answer.data[:200]!r}")
        if progress is not None:
            done = progress(len(chunk))
            if done is not None:
                await done
    final = await nc.request(deliver, b"", timeout)
    return _api_answer(final.data)
