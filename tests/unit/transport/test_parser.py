"""The bulk parser in front of nats-py's: same messages, in order, however the reads are cut."""

from __future__ import annotations

from typing import Any

import pytest
from nats.errors import ProtocolError

from streamd.transport.parser import BulkParser, RawHandler

Seen = tuple[str, int, bytes, bytes, bytes, bytes | None]
HDRS = b"NATS/1.0\r\nNats-Msg-Id: a\r\n\r\n"
STREAM = (
    b"MSG in.a 1 _INBOX.r1 5\r\nhello\r\n"
    + b"HMSG in.b 1 %d %d\r\n%sworld\r\n" % (len(HDRS), len(HDRS) + 5, HDRS)
    + b"PING\r\n"
    + b"MSG other 2 0\r\n\r\n"
    + b'INFO {"max_payload": 1024}\r\n'
    + b"HMSG in.c 1 _INBOX.r2 %d %d\r\n%s\r\n" % (len(HDRS), len(HDRS), HDRS)
    + b"MSG in.d 9 _INBOX.r3 2\r\nhi\r\n"
)
EXPECTED: list[Seen] = [
    ("raw", 1, b"in.a", b"_INBOX.r1", b"hello", None),
    ("raw", 1, b"in.b", b"", b"world", HDRS),
    ("ping", 0, b"", b"", b"", None),
    ("nats-py", 2, b"other", b"", b"", None),
    ("info", 0, b"", b"", b"", None),
    ("raw", 1, b"in.c", b"_INBOX.r2", b"", HDRS),
    ("nats-py", 9, b"in.d", b"_INBOX.r3", b"hi", None),
]


class Client:
    """The connection's side: sid 1 is a raw subscription, others go to nats-py's dispatch."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []

    def raw_handler(self, sid: int) -> RawHandler | None:
        return (lambda s, r, d, h: self.seen.append(("raw", sid, s, r, d, h))) if sid == 1 else None

    def run_raw(self, handler: RawHandler, subject: bytes, reply: bytes, data: bytes, hdrs: bytes | None) -> None:
        handler(subject, reply, data, hdrs)

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        """As Connection's: nats-py's own parser (after a PING in the same read) reaches raw handlers too."""
        handler = self.raw_handler(sid)
        if handler is not None:
            handler(subject, reply, data, headers)
        else:
            self.seen.append(("nats-py", sid, subject, reply, data, headers))

    async def _process_ping(self) -> None:
        self.seen.append(("ping", 0, b"", b"", b"", None))

    async def _process_info(self, _info: Any) -> None:
        self.seen.append(("info", 0, b"", b"", b"", None))


@pytest.mark.parametrize("cut", [1, 2, 3, 7, 16, 41, 1000])
async def test_every_frame_once_and_in_order_however_the_reads_are_cut(cut: int) -> None:
    client = Client()
    parser = BulkParser(client)
    for _ in range(2):
        for i in range(0, len(STREAM), cut):
            await parser.parse(STREAM[i : i + cut])
    assert client.seen == EXPECTED * 2
    assert not parser.buf


@pytest.mark.parametrize(
    "line", [b"MSG a x 3\r\nabc\r\n", b"MSG a 1 r s 3\r\nabc\r\n", b"HMSG a 1 9 3\r\nabc\r\n", b"MSG\r\n"]
)
async def test_a_malformed_message_line_is_a_protocol_error(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        await BulkParser(Client()).parse(line)
