"""Issue 9, the input side: nothing a client sends may brick the store, break the reader or drop the connection.

streamd-only (the differential cases are in tests/conformance/test_input_rules.py). The core server here runs with
a 64 KiB max_payload so that replies near the limit are cheap to build.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import nats
import pytest
from nats.js.errors import APIError

from streamd.api.dispatch import RequestQueue
from streamd.consumers.persistence import ConsumerRecord
from streamd.store.env import Store
from streamd.store.layout import Counters, StreamRecord
from streamd.wire import gojson, subjects
from streamd.wire.models import ConsumerConfig, ConsumerCreateRequest, StreamConfig
from tests.conftest import RunningService, StartService
from tests.helpers import wait_for
from tests.natsd import NatsServer, run_nats_server

MAX_PAYLOAD = 64 * 1024


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    async with run_nats_server(tmp_path / "natsd", extra=f"max_payload: {MAX_PAYLOAD}\n") as server:
        yield server


async def _api(nc: nats.NATS, subject: str, body: bytes = b"") -> dict[str, object]:
    reply: dict[str, object] = json.loads((await nc.request(subject, body, timeout=3)).data)
    return reply


def _error(reply: dict[str, object]) -> tuple[object, object, object]:
    err = reply["error"]
    assert isinstance(err, dict), reply
    return err["code"], err["err_code"], err["description"]


def _connected_once(service: RunningService) -> bool:
    conn = service.service.conn
    return conn is not None and conn.is_connected and conn.stats["reconnects"] == 0


async def test_literal_wildcard_subjects_are_stored_and_the_store_restarts(
    start_service: StartService, nats_server: NatsServer
) -> None:
    """`A*` and `x.b>c` are literal subjects for nats-server: stored, served, and a restart still works."""
    service = await start_service()
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream(timeout=5)
    await js.add_stream(name="ODD", subjects=["A*", "x.b>c"])
    assert (await js.publish("A*", b"1")).seq == 1
    assert (await js.publish("x.b>c", b"2")).seq == 2
    await service.stop()
    await nc.close()

    await start_service()
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream(timeout=5)
    assert (await js.publish("A*", b"3")).seq == 3
    assert (await js.get_last_msg("ODD", "x.b>c")).data == b"2"
    await nc.close()


async def test_non_utf8_at_the_api_door_is_refused_and_the_api_keeps_answering(
    streamd: RunningService, nc: nats.NATS, js: nats.js.JetStreamContext
) -> None:
    """Raw protocol (nats-py would not send these): odd bytes in the subject, the reply and the header block."""
    await js.add_stream(name="S", subjects=["s.>"])
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.flush()
    await nc._send_command(b"PUB $JS.API.STREAM.INFO.\xff " + inbox.encode() + b" 0\r\n\r\n")
    await nc._send_command(b"PUB $JS.API.STREAM.INFO.S _INBOX.\xfe 0\r\n\r\n")  # nobody can hear it; no harm
    hdrs = b"NATS/1.0\r\nNats-Required-Api-Level: \xff\r\n\r\n"
    await nc._send_command(b"HPUB $JS.API.INFO %s %d %d\r\n%s\r\n" % (inbox.encode(), len(hdrs), len(hdrs), hdrs))
    await nc.flush()
    for _ in range(2):
        reply = json.loads((await sub.next_msg(timeout=3)).data)
        assert _error(reply)[:2] == (400, 10003)
    assert (await js.stream_info("S")).config.name == "S"
    assert (await js.publish("s.1", b"x")).seq == 1
    assert _connected_once(streamd)


async def test_numbers_out_of_range_never_reach_a_handler(
    streamd: RunningService, nc: nats.NATS, js: nats.js.JetStreamContext
) -> None:
    """Integers past their Go type answer 400/10025 before anything is written; nothing is committed."""
    reply = await _api(nc, "$JS.API.STREAM.CREATE.N", b'{"name":"N","max_msgs":18446744073709551616}')
    assert _error(reply)[:2] == (400, 10025)
    deep = b'{"name":"N","placement":' + b"[" * 30_000 + b"]" * 30_000 + b"}"
    assert _error(await _api(nc, "$JS.API.STREAM.CREATE.N", deep)) == (400, 10025, "invalid JSON: exceeded max depth")
    assert "N" not in [s.config.name for s in await js.streams_info()]
    await js.add_stream(name="N", subjects=["n"], allow_direct=True)
    for body in (b'{"seq":-1}', b'{"seq":18446744073709551616}'):
        assert _error(await _api(nc, "$JS.API.STREAM.MSG.GET.N", body))[:2] == (400, 10025)
        assert _error(await _api(nc, "$JS.API.STREAM.MSG.DELETE.N", body))[:2] == (400, 10025)
        msg = await nc.request("$JS.API.DIRECT.GET.N", body, timeout=3)
        assert msg.headers is not None and msg.headers.get("Status") == "408"
    assert (await js.publish("n", b"x")).seq == 1


async def test_the_last_sequence_is_stored_once_then_refused(
    streamd: RunningService, js: nats.js.JetStreamContext
) -> None:
    """first_seq 2^64-1 is accepted, as nats-server does; the stream takes one message, then refuses cleanly."""
    last = (1 << 64) - 1
    await js.add_stream(name="END", subjects=["end"], first_seq=last)
    await js.add_stream(name="OTHER", subjects=["other"])
    assert (await js.publish("end", b"1")).seq == last
    with pytest.raises(APIError) as refused:
        await js.publish("end", b"2")
    assert (refused.value.code, refused.value.err_code) == (503, 10077)
    assert (await js.publish("other", b"x")).seq == 1  # neighbours unharmed
    await js.purge_stream("END")
    assert (await js.stream_info("END")).state.messages == 0


async def test_replies_never_exceed_max_payload(
    streamd: RunningService, nc: nats.NATS, js: nats.js.JetStreamContext
) -> None:
    """A message near max_payload: MSG.GET (base64 JSON) and DIRECT.GET (added headers) would not fit."""
    await js.add_stream(name="BIG", subjects=["big"], allow_direct=True)
    assert nc.max_payload == MAX_PAYLOAD
    await js.publish("big", b"z" * (MAX_PAYLOAD - 40))
    reply = await _api(nc, "$JS.API.STREAM.MSG.GET.BIG", b'{"seq":1}')
    assert _error(reply)[:2] == (400, 10054)
    msg = await nc.request("$JS.API.DIRECT.GET.BIG", b'{"seq":1}', timeout=3)
    assert msg.headers is not None and msg.headers.get("Status") == "413"
    assert (await js.publish("big", b"small")).seq == 2
    assert (await js.get_msg("BIG", 2)).data == b"small"
    assert _connected_once(streamd)


async def test_a_subjects_page_is_cut_to_fit(streamd: RunningService, nc: nats.NATS) -> None:
    """STREAM.INFO subjects_filter over more subject text than one message holds answers a smaller page."""
    js = nc.jetstream(timeout=5)
    await js.add_stream(name="MANY", subjects=["many.>"])
    names = [f"many.{i:05d}.{'p' * 60}" for i in range(1500)]  # ~100 KB of subject names
    for name in names:
        await nc.publish(name, b"")
    await nc.flush()

    async def all_stored() -> bool:
        return (await js.stream_info("MANY")).state.messages == len(names)

    await wait_for(all_stored, timeout=30)
    reply = await _api(nc, "$JS.API.STREAM.INFO.MANY", b'{"subjects_filter":">"}')
    state = reply["state"]
    assert isinstance(state, dict)
    page = state["subjects"]
    assert 0 < len(page) < len(names) and reply["total"] == len(names) and reply["limit"] == len(page)
    assert _connected_once(streamd)


async def test_a_stored_config_the_rules_refuse_is_skipped_at_startup(
    start_service: StartService, nats_server: NatsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Configs written by an older streamd (here: straight through the store API) do not stop the service."""
    service = await start_service()
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream(timeout=5)
    await js.add_stream(name="GOOD", subjects=["good"])
    await service.stop()
    store = Store.open(tmp_path / "data")
    try:
        bad = StreamConfig(name="BAD", subjects=["bad..subject"])
        bad_push = ConsumerConfig(durable_name="bp", name="bp", deliver_subject="d.1", deliver_group="a b")
        good_id = store.load_streams()[0][0].id
        with store.env.begin(write=True) as txn:
            sid = store.next_stream_id(txn)
            store.put_stream(txn, StreamRecord(sid, bad, time.time_ns()))
            store.put_counters(txn, sid, Counters())
            record = msgspec.msgpack.encode(ConsumerRecord(bad_push, time.time_ns()))
            store.put_consumer(txn, good_id, "bp", record)
    finally:
        store.close()

    caplog.set_level(logging.ERROR, logger="streamd")
    await start_service()
    assert (await js.publish("good", b"x")).seq == 1
    lines = [r.getMessage() for r in caplog.records if "'BAD'" in r.getMessage()]
    assert len(lines) == 1 and "invalid subject" in lines[0]
    lines = [r.getMessage() for r in caplog.records if "'GOOD > bp'" in r.getMessage()]
    assert len(lines) == 1 and "invalid deliver group" in lines[0]
    assert [c.name for c in await js.consumers_info("GOOD")] == []
    reply = await _api(nc, "$JS.API.STREAM.CREATE.BAD", msgspec.json.encode({"name": "BAD", "subjects": ["b"]}))
    assert _error(reply)[:2] == (400, 10058)  # its data stays on disk, its name stays taken
    await nc.close()


async def test_a_list_page_is_cut_to_fit(streamd: RunningService, nc: nats.NATS, js: nats.js.JetStreamContext) -> None:
    """STREAM.LIST of configs that together exceed max_payload answers a shorter page; paging on gets the rest."""
    for n in range(4):
        await js.add_stream(name=f"L{n}", subjects=[f"l{n}.{i:04d}.{'q' * 80}" for i in range(200)])  # ~20 KB
    first = await _api(nc, "$JS.API.STREAM.LIST")
    streams = first["streams"]
    assert isinstance(streams, list) and 0 < len(streams) < 4 and first["limit"] == len(streams)
    rest = await _api(nc, "$JS.API.STREAM.LIST", json.dumps({"offset": len(streams)}).encode())
    assert isinstance(rest["streams"], list) and first["total"] == 4
    assert len(streams) + len(rest["streams"]) <= 4 and rest["streams"]
    assert _connected_once(streamd)


async def test_odd_bytes_on_acks_and_pulls_leave_the_service_serving(
    streamd: RunningService, nc: nats.NATS, js: nats.js.JetStreamContext
) -> None:
    await js.add_stream(name="Q", subjects=["q"])
    await js.add_consumer("Q", nats.js.api.ConsumerConfig(durable_name="c", ack_policy="explicit"))
    await js.publish("q", b"x")
    for line in (
        b"PUB $JS.ACK.Q.\xff.1.1.1.1.0 0\r\n\r\n",
        b"PUB $JS.ACK.\xff 3\r\n+WP\r\n",
        b"PUB $JS.ACK.Q.c.1.99999999999999999999999.1.1.0 0\r\n\r\n",
        b"PUB $JS.API.CONSUMER.MSG.NEXT.Q.\xff _INBOX.x 0\r\n\r\n",
        b"PUB $JS.API.DIRECT.GET.Q.\xff _INBOX.x 0\r\n\r\n",
        b"PUB $JS.FC.Q.\xff.1 0\r\n\r\n",
    ):
        await nc._send_command(line)
    await nc.flush()
    [msg] = await (await js.pull_subscribe_bind("c", "Q")).fetch(1, timeout=3)
    await msg.ack_sync()
    assert (await js.consumer_info("Q", "c")).num_ack_pending == 0
    assert _connected_once(streamd)


async def test_what_would_break_a_protocol_line_is_refused_before_it_is_stored(
    streamd: RunningService, nc: nats.NATS, js: nats.js.JetStreamContext
) -> None:
    """Stream subjects become SUB lines, deliver subjects and groups and pull replies delivery lines; the server
    closes a connection whose line is over 4 KiB or malformed, so what cannot fit is refused up front."""
    long_subject = {"name": "LONG", "subjects": ["long." + "y" * 5000]}
    reply = await _api(nc, "$JS.API.STREAM.CREATE.LONG", json.dumps(long_subject).encode())
    assert _error(reply)[:2] == (500, 10052)
    await js.add_stream(name="P", subjects=["p"])
    for cfg, code in (
        ({"deliver_subject": "d." + "x" * 5000}, (400, 10112)),
        ({"deliver_subject": "d.1", "deliver_group": "a b"}, (500, 10012)),
    ):
        body = json.dumps({"stream_name": "P", "config": cfg}).encode()
        assert _error(await _api(nc, "$JS.API.CONSUMER.CREATE.P", body))[:2] == code
    await js.add_consumer("P", nats.js.api.ConsumerConfig(durable_name="c", ack_policy="explicit"))
    await js.publish("p", b"x")
    long_inbox = "_INBOX." + "r" * 3000
    sub = await nc.subscribe(long_inbox)
    await nc.publish("$JS.API.CONSUMER.MSG.NEXT.P.c", b'{"batch":1}', reply=long_inbox)
    refused = await sub.next_msg(timeout=3)
    assert refused.headers is not None and refused.headers.get("Status") == "400"
    [msg] = await (await js.pull_subscribe_bind("c", "P")).fetch(1, timeout=3)  # the leaf is still up
    assert msg.data == b"x"
    assert _connected_once(streamd)


async def test_the_api_queue_is_bounded_by_count_and_bytes() -> None:
    """A flood of requests is refused at the queue (counted as slow-consumer events), memory stays bounded."""
    queue = RequestQueue(max_msgs=3, max_bytes=100)
    assert queue.offer((b"s", b"r", b"x" * 50, None))
    assert not queue.offer((b"s", b"r", b"x" * 50, None))  # 104 bytes would be over
    assert queue.offer((b"s", b"r", b"", b"h"))
    assert queue.offer((b"s", b"r", b"", None))
    assert not queue.offer((b"s", b"r", b"", None))  # 4th message
    assert (await queue.take())[2] == b"x" * 50
    assert queue.pending_bytes == 5 and queue.offer((b"s", b"r", b"x" * 50, None))


async def test_a_config_whose_reply_would_not_fit_is_refused_before_the_commit(
    streamd: RunningService, nc: nats.NATS, js: nats.js.JetStreamContext
) -> None:
    subjects = [f"fat.{i:05d}.{'s' * 50}" for i in range(1100)]  # ~68 KB of config, the request itself fits
    body = json.dumps({"name": "FAT", "subjects": subjects}, separators=(",", ":")).encode()[: MAX_PAYLOAD - 100]
    body = body[: body.rindex(b'",') + 1] + b"]}"  # cut to whole subjects, still under max_payload
    reply = await _api(nc, "$JS.API.STREAM.CREATE.FAT", body)
    assert _error(reply) == (500, 10052, "stream configuration is too large for the server's max_payload")
    assert await js.streams_info() == []
    filters = {"filter_subjects": [f"p.{i:05d}.{'f' * 50}" for i in range(1100)]}
    await js.add_stream(name="P", subjects=["p.>"])
    body = json.dumps({"stream_name": "P", "config": filters}, separators=(",", ":")).encode()[: MAX_PAYLOAD - 100]
    body = body[: body.rindex(b'",') + 1] + b"]}}"
    reply = await _api(nc, "$JS.API.CONSUMER.CREATE.P", body)
    assert _error(reply)[:2] == (500, 10052)
    assert await js.consumers_info("P") == []
    assert _connected_once(streamd)


async def test_a_ttl_past_int64_is_refused_before_the_write(
    streamd: RunningService, js: nats.js.JetStreamContext
) -> None:
    await js.add_stream(name="T", subjects=["t"], allow_msg_ttl=True)
    with pytest.raises(APIError) as refused:
        await js.publish("t", b"x", headers={"Nats-TTL": "99999999999999999999"})
    assert (refused.value.code, refused.value.err_code) == (400, 10165)
    assert (await js.publish("t", b"y", headers={"Nats-TTL": "1h"})).seq == 1


@pytest.mark.parametrize(
    ("subject", "valid"),
    [
        ("A*", True),
        ("x.b>c", True),
        ("a.*.>", True),
        ("*>", True),
        ("a.\x00", True),  # nats-server takes any bytes but its separators
        ("a.\x0b", True),
        ("a..b", False),
        ("a.>.b", False),
        (">.a", False),
        ("a b", False),
        ("a.\f", False),
        ("a\tb", False),
        ("", False),
        (".", False),
    ],
)
def test_subject_rules_are_the_servers(subject: str, valid: bool) -> None:
    assert subjects.is_valid_subject(subject) is valid


def test_go_ranges_follow_the_field_type() -> None:
    """Each integer field is checked against its own Go type, nested and in lists too."""
    ok = b'{"stream_name":"S","config":{"opt_start_seq":18446744073709551615,"backoff":[9223372036854775807]}}'
    assert gojson.decode(ok, ConsumerCreateRequest, "CreateConsumerRequest").config.opt_start_seq == (1 << 64) - 1
    for body, where in (
        (b'{"config":{"max_deliver":9223372036854775808}}', "Go struct field X.config.max_deliver of type int"),
        (b'{"config":{"backoff":[1,9223372036854775808]}}', "X.config.backoff.1 of type time.Duration"),
        (b'{"config":{"opt_start_seq":18446744073709551616}}', "Go struct field X.config.opt_start_seq of type uint64"),
    ):
        with pytest.raises(gojson.GoJsonError, match=re.escape(where)):
            gojson.decode(body, ConsumerCreateRequest, "X")


async def test_a_huge_direct_get_batch_is_answered_in_slices(
    streamd: RunningService, nc: nats.NATS, js: nats.js.JetStreamContext
) -> None:
    """A batch of a million is cut at MAX_BATCH_MSGS (it is framed on the event loop); EOB says how many remain."""
    from streamd.api.messages import MAX_BATCH_MSGS

    await js.add_stream(name="HUGE", subjects=["huge"], allow_direct=True)
    total = MAX_BATCH_MSGS + 500
    for start in range(0, total, 500):
        await asyncio.gather(*(js.publish("huge", b"x") for _ in range(start, min(start + 500, total))))
    inbox = nc.new_inbox()
    got: list[nats.aio.msg.Msg] = []

    async def collect(msg: nats.aio.msg.Msg) -> None:
        got.append(msg)

    sub = await nc.subscribe(inbox, cb=collect)
    await nc.publish("$JS.API.DIRECT.GET.HUGE", json.dumps({"seq": 1, "batch": 1_000_000}).encode(), reply=inbox)
    await wait_for(lambda: bool(got) and got[-1].headers is not None and got[-1].headers.get("Status") == "204")
    await sub.unsubscribe()
    assert len(got) == MAX_BATCH_MSGS + 1
    assert got[-1].headers is not None and got[-1].headers["Nats-Num-Pending"] == "500"
    assert (await nc.request("$JS.API.INFO", b"", timeout=5)).data  # the API kept answering
