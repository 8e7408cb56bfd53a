"""Fuzz of publish headers: HPUB to stream subjects with random header blocks (the Nats-* headers streamd acts on,
with garbage values; malformed lines; non-UTF-8; huge blocks). Every publish with a reply gets a PubAck or a
JetStream error object within REPLY_BOUND; a stored message reads back with its header block byte for byte
(STREAM.MSG.GET) and DIRECT.GET answers for it; the service keeps serving and restarts afterwards."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import example as explicit
from hypothesis import strategies as st

from tests.conftest import StartService
from tests.fuzz import checks
from tests.fuzz.env import REPLY_BOUND, FuzzEnv, run_examples
from tests.fuzz.strategies import BIG_INTS, derandomized, examples
from tests.natsd import NatsServer

pytestmark = pytest.mark.timeout(600)

HSTREAM = "HDR"
HDR_CONFIG = {
    "name": HSTREAM,
    "subjects": ["hdr.>"],
    "allow_rollup_hdrs": True,
    "allow_msg_ttl": True,
    "allow_msg_schedules": True,
    "allow_direct": True,
    "allow_atomic": True,
    "max_msgs_per_subject": 50,
    "storage": "file",
    "num_replicas": 1,
    # Every stored message (odd header blocks included) is also republished on the service's connection.
    "republish": {"src": "hdr.>", "dest": "rp.hdr.>"},
}
CSTREAM = "CNT"  # a counter stream (with atomic batches): increments and their refusals
COUNTER_CONFIG = {"name": CSTREAM, "subjects": ["cnt.>"], "allow_msg_counter": True, "allow_atomic": True}
NAMES = [
    b"Nats-Msg-Id",
    b"Nats-Expected-Stream",
    b"Nats-Expected-Last-Sequence",
    b"Nats-Expected-Last-Subject-Sequence",
    b"Nats-Expected-Last-Subject-Sequence-Subject",
    b"Nats-Expected-Last-Msg-Id",
    b"Nats-Rollup",
    b"Nats-TTL",
    b"Nats-Required-Api-Level",
    b"Nats-Marker-Reason",
    b"Nats-Schedule",
    b"Nats-Schedule-Target",
    b"Nats-Schedule-Source",
    b"Nats-Schedule-TTL",
    b"Nats-Schedule-Rollup",
    b"Nats-Schedule-Time-Zone",
    b"Nats-Scheduler",
    b"Nats-Schedule-Next",
    b"Nats-Batch-Id",
    b"Nats-Batch-Sequence",
    b"Nats-Batch-Commit",
    b"Nats-Incr",
    b"KV-Operation",
    b"X-Custom",
    b"nats-msg-id",
    b"Nats-",
    b"",
]
VALUES = st.one_of(
    st.sampled_from([str(n).encode() for n in BIG_INTS]),
    st.sampled_from(
        [b"", b" ", b"sub", b"all", b"HDR", b"FZ", b"1s", b"1h", b"never", b"-1s", b"1.5", b"NaN", b"0x10", b"\xff"]
        + [
            b"1",
            b"2",
            b"eob",
            b"b1",
            b"-3",
            b"+1",
        ]  # batch ids, sequences and commits that can open and close atomic batches
    ),
    st.sampled_from([5000, 70_000]).map(lambda n: b"x" * n),
    st.just("ü".encode() * 10),
    st.sampled_from(  # schedule patterns, targets, zones
        [
            b"@at 2020-01-01T00:00:00Z",
            b"@at 9999-12-31T23:59:59Z",
            b"@every 1s",
            b"@every 9999999h",
            b"@hourly",
            b"*/2 * * * * *",
            b"0 0 0 31 2 *",
            b"1-99 * * * * *",
            b"hdr.t",
            b"hdr.>",
            b"purge",
            b"Europe/Paris",
            b"../../etc/passwd",
        ]
    ),
    st.binary(max_size=30).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    st.text(max_size=20).map(lambda t: t.replace("\r", "").replace("\n", "").encode()),
)
good_line = st.builds(lambda n, v: n + b": " + v, st.sampled_from(NAMES), VALUES)
bad_line = st.sampled_from(
    [b"NoColon", b": no name", b"Nats-Rollup:all", b"Nats-TTL :1", b" Nats-Msg-Id: lead", b"\xff\xfe: v", b"a\rb: c"]
)
status_line = st.sampled_from([b"NATS/1.0", b"NATS/1.0", b"NATS/1.0", b"NATS/1.0 503", b"NATS/2.0", b"", b"junk"])
terminator = st.sampled_from([b"\r\n\r\n", b"\r\n\r\n", b"\r\n\r\n", b"\r\n", b"", b"\n\n"])


class Blob(bytes):
    """Bytes that print short: a failing example names a 70 kB header block without pasting it."""

    def __repr__(self) -> str:
        head = bytes(self[:300])
        return f"Blob({head!r}{'...' if len(self) > 300 else ''}, {len(self)} bytes)"


@st.composite
def header_blocks(draw: st.DrawFn) -> Blob:
    lines = draw(st.lists(st.one_of(good_line, good_line, bad_line), max_size=6))
    return Blob(draw(status_line) + b"".join(b"\r\n" + line for line in lines) + draw(terminator))


FUZZ_SETTINGS = settings(
    max_examples=examples(200),
    deadline=None,
    derandomize=derandomized(),
    database=None,
    report_multiple_bugs=False,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


async def read_back(env: FuzzEnv, stream: str, seq: int, block: bytes) -> None:
    """The stored message: MSG.GET gives the header block back byte for byte, DIRECT.GET answers well formed."""
    body = json.dumps({"seq": seq}).encode()
    number, reply = await env.request(b"$JS.API.STREAM.MSG.GET." + stream.encode(), body, b"", None, REPLY_BOUND)
    env.raw.forget(number)
    assert reply is not None, f"MSG.GET {seq}: no answer within {REPLY_BOUND}s"
    doc = checks.check_json_answer("STREAM.MSG.GET", reply)
    if "error" in doc:  # a TTL or a rollup may have removed it already
        gone = (b"Nats-TTL", b"Nats-Rollup", b"Nats-Schedule")  # expired, rolled up, or a schedule that fired
        assert doc["error"]["err_code"] == 10037 and any(h in block for h in gone), doc
        return
    stored = base64.b64decode(doc["message"].get("hdrs", ""))
    # A schedule is stored with the subject rollup nats-server adds to it.
    assert stored == block or (b"Nats-Schedule" in block and b"Nats-Rollup: sub" in stored), stored[:200]
    number, reply = await env.request(b"$JS.API.DIRECT.GET." + stream.encode(), body, b"", None, REPLY_BOUND)
    env.raw.forget(number)
    assert reply is not None, f"DIRECT.GET {seq}: no answer within {REPLY_BOUND}s"
    checks.check_direct(reply)


async def one_publish(env: FuzzEnv, subject: bytes, block: bytes, payload: bytes) -> None:
    number, reply = await env.request(subject, payload, b"", block, REPLY_BOUND)
    env.raw.forget(number)
    assert reply is not None, f"no PubAck within {REPLY_BOUND}s"
    if reply.status is None and reply.payload == b"":  # a message staged in an atomic batch
        assert b"Nats-Batch-Id" in block, "an empty reply to a publish outside a batch"
        return
    ack = checks.check_puback(reply)
    await env.assert_serving()
    if "error" not in ack and not ack.get("duplicate") and not ack.get("count", 1) > 1:
        await read_back(env, ack["stream"], ack["seq"], block)
        await env.assert_serving()


async def test_every_publish_gets_a_puback_or_an_error(nats_server: NatsServer, start_service: StartService) -> None:
    env = await FuzzEnv.start(nats_server, start_service)
    try:
        created = await env.nc.request(
            "$JS.API.STREAM.CREATE." + HSTREAM, json.dumps(HDR_CONFIG).encode(), timeout=REPLY_BOUND
        )
        assert "error" not in json.loads(created.data), created.data
        created = await env.nc.request(
            "$JS.API.STREAM.CREATE." + CSTREAM, json.dumps(COUNTER_CONFIG).encode(), timeout=REPLY_BOUND
        )
        assert "error" not in json.loads(created.data), created.data
        example = run_examples(asyncio.get_running_loop(), one_publish)

        @FUZZ_SETTINGS
        @given(
            subject=st.sampled_from([b"hdr.a", b"hdr.b", b"hdr.\xff", b"fz.a", b"cnt.a"]),
            block=header_blocks(),
            payload=st.sampled_from([0, 1, 3, 100_000]).map(lambda n: Blob(b"\xff" * n)),
        )
        @explicit(b"hdr.a", Blob(b"NATS/1.0\r\nNats-Batch-Id: b1\r\nNats-Batch-Sequence: 1\r\n\r\n"), Blob(b"1"))
        @explicit(
            b"hdr.a",
            Blob(b"NATS/1.0\r\nNats-Batch-Id: b1\r\nNats-Batch-Sequence: 2\r\nNats-Batch-Commit: 1\r\n\r\n"),
            Blob(b""),
        )
        def fuzz(subject: bytes, block: Blob, payload: Blob) -> None:
            note(f"HPUB {subject!r} headers={bytes(block[:3000])!r} ({len(block)} bytes) payload={payload!r}")
            example(env, subject, block, payload)

        await asyncio.to_thread(fuzz)
        await env.restart()
    finally:
        await env.close()
