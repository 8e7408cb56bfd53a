"""A minimal NATS protocol client for the fuzz: it sends bytes nats-py refuses to (non-UTF-8 subjects, odd header
blocks) and hands back replies undecoded, so a reply's exact shape can be checked."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass

INBOX = b"_FZ"


@dataclass(frozen=True)
class Reply:
    subject: bytes
    reply: bytes  # the message's own reply subject (a pulled message's ack subject)
    headers: bytes | None
    payload: bytes

    @property
    def status(self) -> int | None:
        """The status code of a status-only reply (`NATS/1.0 503`), None for a plain message."""
        if not self.headers or not self.headers.startswith(b"NATS/1.0 "):
            return None
        code = self.headers[9:12]
        return int(code) if code.isdigit() else None


class RawClient:
    """One TCP connection: PUB/HPUB out, every reply to `_FZ.<n>[.<tail>]` collected by its request number `n`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._next = 0
        self._waiting: dict[int, asyncio.Future[Reply]] = {}
        self._pongs: list[asyncio.Future[None]] = []
        self.errors: list[bytes] = []  # -ERR lines from the server (the connection may survive them)
        self._task = asyncio.create_task(self._read_loop())

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=64 * 1024 * 1024)
        await reader.readline()  # INFO
        opts = {"verbose": False, "pedantic": False, "headers": True, "no_responders": True, "protocol": 1}
        writer.write(b"CONNECT " + json.dumps(opts).encode() + b"\r\nSUB " + INBOX + b".> 1\r\nPING\r\n")
        line = await reader.readline()
        while line.startswith(b"+OK"):
            line = await reader.readline()
        if not line.startswith(b"PONG"):
            raise ConnectionError(f"server refused the raw client: {line!r}")
        return cls(reader, writer)

    def new_reply(self, tail: bytes = b"") -> tuple[int, bytes]:
        """A fresh reply subject and its request number; `tail` lets the reply itself carry odd bytes."""
        self._next += 1
        subject = INBOX + b".%d" % self._next + (b"." + tail if tail else b"")
        self._waiting[self._next] = asyncio.get_running_loop().create_future()
        return self._next, subject

    def publish(self, subject: bytes, payload: bytes, reply: bytes = b"", headers: bytes | None = None) -> None:
        sep = b" " + reply if reply else b""
        if headers is None:
            self._writer.write(b"PUB %s%s %d\r\n%s\r\n" % (subject, sep, len(payload), payload))
        else:
            total = len(headers) + len(payload)
            self._writer.write(b"HPUB %s%s %d %d\r\n%s%s\r\n" % (subject, sep, len(headers), total, headers, payload))

    async def flush(self, timeout: float = 5.0) -> None:
        """Round trip a PING: everything written before it has been read by the server."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pongs.append(fut)
        self._writer.write(b"PING\r\n")
        await self._writer.drain()
        async with asyncio.timeout(timeout):
            await fut

    async def reply(self, number: int, timeout: float) -> Reply | None:
        """The reply to request `number`, or None when none came within `timeout`."""
        fut = self._waiting[number]
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(fut)
        except TimeoutError:
            return None
        finally:
            if fut.done():
                self._waiting.pop(number, None)

    def forget(self, number: int) -> None:
        self._waiting.pop(number, None)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()

    @property
    def alive(self) -> bool:
        return not self._task.done()

    async def _read_loop(self) -> None:
        reader = self._reader
        while True:
            line = await reader.readline()
            if not line:
                raise ConnectionError("server closed the raw connection")
            if line.startswith(b"MSG ") or line.startswith(b"HMSG "):
                await self._read_msg(line)
            elif line.startswith(b"PING"):
                self._writer.write(b"PONG\r\n")
            elif line.startswith(b"PONG"):
                if self._pongs:
                    self._pongs.pop(0).set_result(None)
            elif line.startswith(b"-ERR"):
                self.errors.append(line.strip())

    async def _read_msg(self, line: bytes) -> None:
        parts = line.split()
        hmsg = parts[0] == b"HMSG"
        subject = parts[1]
        total = int(parts[-1])
        hdr_len = int(parts[-2]) if hmsg else 0
        with_reply = len(parts) == (6 if hmsg else 5)
        body = await self._reader.readexactly(total + 2)
        headers = body[:hdr_len] if hmsg else None
        reply = Reply(subject, parts[3] if with_reply else b"", headers, body[hdr_len:total])
        tokens = subject.split(b".")
        if len(tokens) >= 2 and tokens[1].isdigit():
            fut = self._waiting.get(int(tokens[1]))
            if fut is not None and not fut.done():
                fut.set_result(reply)
