"""A bulk fast path in front of nats-py's protocol parser, for the client connection's inbound messages.

nats-py's parser matches a regular expression per frame, copies the payload twice and awaits a coroutine per
message. Under a publish load a read holds hundreds of MSG/HMSG frames: this parser walks the read once, splits
each control line, slices the payload straight from the bytes read, and hands messages of raw subscriptions
(stream ingest, DIRECT.GET) to their handler synchronously; other messages still go through nats-py's
``_process_msg``. A frame split across reads waits in ``buf`` for the rest. Everything else (PING, PONG, INFO,
+OK, -ERR) is left to nats-py's own parser, with the rest of that read; it owns the buffer until it is back at a
control line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from nats.errors import ProtocolError
from nats.protocol.parser import AWAITING_CONTROL_LINE, Parser

RawHandler = Callable[[bytes, bytes, bytes, bytes | None], None]


class RawClient(Protocol):
    """What the parser needs from the connection: the raw handler of a sid, and nats-py's own dispatch."""

    def raw_handler(self, sid: int) -> RawHandler | None: ...

    def run_raw(self, handler: RawHandler, subject: bytes, reply: bytes, data: bytes, hdrs: bytes | None) -> None: ...

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> Any: ...

    def write_pending(self) -> bool: ...


def _frame(view: bytes, pos: int, eol: int) -> tuple[bytes, int, bytes, int, int]:
    """A control line at view[pos:eol], `MSG subject sid [reply] size` or `HMSG subject sid [reply] hsize size`
    -> (subject, sid, reply, header bytes, total bytes)."""
    parts = view[pos:eol].split()
    op, n = parts[0] if parts else b"", len(parts)
    try:
        if op == b"MSG" and n in (4, 5):
            hlen, total = 0, int(parts[-1])
        elif op == b"HMSG" and n in (5, 6):
            hlen, total = int(parts[-2]), int(parts[-1])
        else:
            raise ValueError(op)
        sid = int(parts[2])
    except ValueError:
        raise ProtocolError("nats: malformed MSG") from None
    if hlen < 0 or total < hlen or sid < 0:
        raise ProtocolError("nats: malformed MSG")
    has_reply = n == (5 if op == b"MSG" else 6)
    return parts[1], sid, parts[3] if has_reply else b"", hlen, total


class BulkParser(Parser):
    def __init__(self, nc: RawClient) -> None:
        super().__init__(nc)
        self._client = nc
        self._need = 0  # bytes the incomplete MSG/HMSG frame kept in `buf` needs in all (0: not known yet)

    def reset(self) -> None:
        super().reset()
        self._need = 0

    async def parse(self, data: bytes = b"") -> None:
        """Parse one read; then write the answers it produced at once, in one call (see Connection.write_pending)."""
        await self._parse(data)
        self._client.write_pending()

    async def _parse(self, data: bytes) -> None:
        if self.state != AWAITING_CONTROL_LINE:  # nats-py's parser is inside a frame it started: it finishes it
            await super().parse(data)
            if self.state != AWAITING_CONTROL_LINE or not self.buf:
                return
            data = b""
        if self.buf:  # the start of a frame kept from the last read
            if len(self.buf) + len(data) < self._need:
                self.buf.extend(data)
                return
            data = bytes(self.buf) + data
            self.buf.clear()
        pos = await self._messages(data)
        if pos == len(data):
            return
        if data[pos] in b"MH":  # an incomplete MSG/HMSG frame: kept for the next read
            self.buf.extend(data[pos:])
            return
        await super().parse(data[pos:])  # PING, PONG, INFO, +OK, -ERR (and what follows in this read)

    async def _messages(self, view: bytes) -> int:
        """Dispatch the complete MSG/HMSG frames at the start of `view`; -> where the first other thing starts."""
        client = self._client
        pos, end = 0, len(view)
        self._need = 0
        while pos < end and view[pos] in b"MH":
            eol = view.find(b"\r\n", pos)
            if eol < 0:
                break
            subject, sid, reply, hlen, total = _frame(view, pos, eol)
            start = eol + 2
            if start + total + 2 > end:
                self._need = start + total + 2 - pos  # the payload is still coming
                break
            hdrs = view[start : start + hlen] if hlen else None
            payload = view[start + hlen : start + total]
            pos = start + total + 2
            handler = client.raw_handler(sid)
            if handler is not None:
                client.run_raw(handler, subject, reply, payload, hdrs)
            else:
                await client._process_msg(sid, subject, reply, payload, hdrs)
        return pos
