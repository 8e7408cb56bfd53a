"""The bulk parser in front of nats-py's: same messages, in order, however the reads are cut."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.errors import ProtocolError
from nats.protocol.parser import Parser

from streamd.transport.parser import BulkParser, RawHandler
from tests.fuzz.strategies import derandomized, examples

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

    def write_pending(self) -> bool:
        return False

    async def _process_ping(self) -> None:
        self.seen.append(("ping", 0, b"", b"", b"", None))

    async def _process_info(self, _info: Any) -> None:
        self.seen.append(("info", 0, b"", b"", b"", None))

    async def _process_pong(self) -> None:
        self.seen.append(("pong", 0, b"", b"", b"", None))


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


TOKENS = st.text(alphabet="abcXYZ019_-$*>", min_size=1, max_size=12)
FRAMES = st.one_of(
    st.tuples(
        st.sampled_from([1, 2, 17]),  # sid 1 is raw, the others are nats-py's
        st.lists(TOKENS, min_size=1, max_size=4).map(".".join),
        st.one_of(st.just(""), TOKENS),
        st.one_of(st.none(), st.binary(max_size=40).map(lambda b: b"NATS/1.0\r\nX: " + b.hex().encode() + b"\r\n\r\n")),
        st.binary(max_size=300),  # payloads may hold CRLF, "MSG", anything
    ),
    st.sampled_from([b"PING\r\n", b"PONG\r\n", b"+OK\r\n", b'INFO {"max_payload": 1024}\r\n']),
)


def _encode(frame: Any) -> bytes:
    if isinstance(frame, bytes):
        return frame
    sid, subject, reply, hdrs, payload = frame
    head = f"{subject} {sid}" + (f" {reply}" if reply else "")
    if hdrs is None:
        return b"MSG %s %d\r\n%s\r\n" % (head.encode(), len(payload), payload)
    return b"HMSG %s %d %d\r\n%s%s\r\n" % (head.encode(), len(hdrs), len(hdrs) + len(payload), hdrs, payload)


@settings(max_examples=examples(300), deadline=None, derandomize=derandomized())
@given(st.lists(FRAMES, max_size=30), st.lists(st.integers(1, 400), min_size=1, max_size=20))
async def test_same_messages_as_nats_py_parser(frames: list[Any], cuts: list[int]) -> None:
    wire = b"".join(_encode(f) for f in frames)
    reference, bulk = Client(), Client()  # nats-py's own parser is the reference
    await Parser(reference).parse(wire)
    parser = BulkParser(bulk)
    pos, i = 0, 0
    while pos < len(wire):
        step = cuts[i % len(cuts)]
        await parser.parse(wire[pos : pos + step])
        pos, i = pos + step, i + 1
    assert bulk.seen == reference.seen
    assert not parser.buf
