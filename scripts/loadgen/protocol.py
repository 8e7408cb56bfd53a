"""The NATS client protocol over one blocking TCP socket: bulk parsing in, coalesced frames out.

A blocking socket and a plain loop (no asyncio) because a load generator worker owns exactly one connection and
has nothing else to do: recv() whatever the kernel has, parse all of it, append every answer (acks, pull
requests, publishes) to one bytearray, send it with one sendall(). nats-server reads and writes a client on
separate goroutines, so a blocking sendall cannot deadlock against its deliveries.
"""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlsplit

# (subject, reply, header block or None, payload): a tuple, not an object, because it is made per message.
Msg = tuple[bytes, bytes, bytes | None, bytes]

RECV_SIZE = 1 << 20


class ProtocolError(RuntimeError):
    """The server sent -ERR or closed the connection."""


class Parser:
    """Parses everything in a read buffer at once; an incomplete frame at the end waits for the next read.

    Only MSG and HMSG make tuples; PING is counted (the connection answers it on its next write), PONG is counted
    (the handshake waits for one), -ERR is kept. Lines are split with bytes.split: a handful of C calls per
    message, no regex backtracking, and payload bytes are never scanned."""

    def __init__(self) -> None:
        self.rest = b""
        self.pings = 0
        self.pongs = 0
        self.errors: list[str] = []

    def feed(self, data: bytes) -> list[Msg]:
        buf = self.rest + data if self.rest else data
        out: list[Msg] = []
        append, find, n, pos = out.append, buf.find, len(buf), 0
        while (eol := find(b"\r\n", pos)) >= 0:
            head = buf[pos:eol]
            if head[:4] == b"MSG ":
                parts = head[4:].split(b" ")
                end = eol + 2 + int(parts[-1])
                if end + 2 > n:
                    break
                append((parts[0], parts[2] if len(parts) == 4 else b"", None, buf[eol + 2 : end]))
                pos = end + 2
            elif head[:5] == b"HMSG ":
                parts = head[5:].split(b" ")
                hend, end = eol + 2 + int(parts[-2]), eol + 2 + int(parts[-1])
                if end + 2 > n:
                    break
                append((parts[0], parts[2] if len(parts) == 5 else b"", buf[eol + 2 : hend], buf[hend:end]))
                pos = end + 2
            else:
                self._control(head)
                pos = eol + 2
        self.rest = buf[pos:]
        return out

    def _control(self, head: bytes) -> None:
        if head == b"PING":
            self.pings += 1
        elif head == b"PONG":
            self.pongs += 1
        elif head.startswith(b"-ERR"):
            self.errors.append(head.decode(errors="replace"))
        # INFO (cluster/leaf updates) and +OK need nothing from us


class Conn:
    """One client connection. `out` is the write buffer: callers append frames, flush() sends them in one call."""

    def __init__(self, url: str, name: str) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 4222))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # one-at-a-time requests need it
        self.parser = Parser()
        self.out = bytearray()
        self.pending: list[Msg] = []  # messages that arrived during the handshake
        info = self._read_line()
        if not info.startswith(b"INFO "):
            raise ProtocolError(f"expected INFO, got {info[:80]!r}")
        connect = {"verbose": False, "pedantic": False, "headers": True, "no_responders": True, "protocol": 1,
                   "name": name, "lang": "python-loadgen", "version": "1"}
        self.out += b"CONNECT " + json.dumps(connect).encode() + b"\r\n"
        self.ping()

    def _read_line(self) -> bytes:
        data = b""
        while b"\r\n" not in data:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ProtocolError("connection closed during handshake")
            data += chunk
        line, _, rest = data.partition(b"\r\n")
        self.parser.rest = rest
        return line

    def sub(self, subject: str | bytes, sid: int) -> None:
        subj = subject.encode() if isinstance(subject, str) else subject
        self.out += b"SUB %s %d\r\n" % (subj, sid)

    def pub(self, subject: bytes, reply: bytes, payload: bytes) -> None:
        self.out += b"PUB %s %s %d\r\n%s\r\n" % (subject, reply, len(payload), payload)

    def ping(self, timeout: float = 10.0) -> None:
        """PING and wait for the PONG: after it the server has processed everything sent before (SUBs)."""
        want = self.parser.pongs + 1
        self.out += b"PING\r\n"
        self.flush()
        deadline = time.monotonic() + timeout
        while self.parser.pongs < want:
            if time.monotonic() > deadline:
                raise ProtocolError("no PONG")
            self.pending += self.recv()

    def recv(self) -> list[Msg]:
        """Everything the kernel has now (blocking until something arrives or the socket timeout passes)."""
        try:
            data = self.sock.recv(RECV_SIZE)
        except TimeoutError:
            return []
        if not data:
            raise ProtocolError("connection closed by the server")
        parser = self.parser
        msgs = parser.feed(data)
        if parser.pings:
            self.out += b"PONG\r\n" * parser.pings
            parser.pings = 0
        if parser.errors:
            raise ProtocolError("; ".join(parser.errors))
        return msgs

    def flush(self) -> None:
        """Send the write buffer in one call (a loop only if the kernel takes part of it or times out)."""
        if not self.out:
            return
        view = memoryview(self.out)
        while view:
            try:
                view = view[self.sock.send(view) :]
            except TimeoutError:  # the socket timeout is for recv(); a full send buffer just means try again
                continue
        view.release()
        self.out.clear()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.sock.close()


def ack_stream_seq(reply: bytes) -> int:
    """The stream sequence in a JetStream ack subject, in either layout nats-server uses:
    $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending> (9 tokens) or
    $JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>.<token> (12)."""
    tokens = reply.split(b".")
    return int(tokens[5] if len(tokens) == 9 else tokens[7])


def header_value(header: bytes, name: bytes) -> bytes | None:
    """A header's value from a NATS/1.0 header block (exact-case name, as both servers write them)."""
    start = header.find(b"\r\n" + name + b":")
    if start < 0:
        return None
    start += len(name) + 3
    return header[start : header.find(b"\r\n", start)].strip()


def status_code(header: bytes) -> int:
    """The status of a header block: `NATS/1.0 408 Request Timeout` -> 408; a plain `NATS/1.0` -> 0."""
    line = header[: header.find(b"\r\n")]
    parts = line.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
