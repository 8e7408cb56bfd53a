"""Differential conformance: PURGE, MSG.GET, MSG.DELETE, DIRECT.GET, sealed / deny_* streams (JetStream vs streamd)."""

from __future__ import annotations

import base64
import json

import pytest
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy
from nats.js.errors import NotFoundError

from tests.conformance.util import (
    NO_MESSAGE_FOUND,
    STREAM_NOT_FOUND,
    ZERO_TIME,
    api,
    api_error,
    counts,
    error_of,
    publish_n,
    state,
)
from tests.helpers import wait_for

# s.0 at 1, 3, 5; s.1 at 2, 4; each with header X-A: v<seq-1>
LAYOUT = ["s.0", "s.1", "s.0", "s.1", "s.0"]


async def _stream_s(js: JetStreamContext, **config: object) -> None:
    await js.add_stream(name="S", subjects=["s.>"], **config)
    for i, subject in enumerate(LAYOUT):
        await js.publish(subject, f"m{i}".encode(), headers={"X-A": f"v{i}"})


# --------------------------------------------------------------------------------------------------- purge


async def test_purge_all(nc: Client, js: JetStreamContext) -> None:
    await _stream_s(js)
    reply = await api(nc, "$JS.API.STREAM.PURGE.S", {})
    assert reply == {"type": "io.nats.jetstream.api.v1.stream_purge_response", "success": True, "purged": 5}
    st = await state(nc, "S")
    assert (st["messages"], st["bytes"], st["first_seq"], st["last_seq"]) == (0, 0, 6, 5)
    assert st["first_ts"] == ZERO_TIME and st["last_ts"] != ZERO_TIME
    assert (await js.publish("s.0", b"after")).seq == 6  # sequences continue
    assert await js.purge_stream("S") is True
    assert await counts(nc, "S") == (0, 7, 6)
    assert (await api(nc, "$JS.API.STREAM.PURGE.S", b""))["purged"] == 0  # empty body = purge all


async def test_purge_by_subject_filter(nc: Client, js: JetStreamContext) -> None:
    await _stream_s(js)
    reply = await api(nc, "$JS.API.STREAM.PURGE.S", {"filter": "s.0"})
    assert (reply["success"], reply["purged"]) == (True, 3)
    assert await counts(nc, "S") == (2, 2, 5)  # last_seq is the stream's, even when that message is gone
    assert await js.purge_stream("S", subject="s.*") is True
    assert await counts(nc, "S") == (0, 6, 5)


async def test_purge_keep(nc: Client, js: JetStreamContext) -> None:
    await _stream_s(js)
    reply = await api(nc, "$JS.API.STREAM.PURGE.S", {"filter": "s.0", "keep": 1})
    assert reply["purged"] == 2
    assert await counts(nc, "S") == (3, 2, 5)
    assert await js.purge_stream("S", keep=2) is True
    assert await counts(nc, "S") == (2, 4, 5)
    assert (await api(nc, "$JS.API.STREAM.PURGE.S", {"keep": 5}))["purged"] == 0


async def test_purge_up_to_sequence(nc: Client, js: JetStreamContext) -> None:
    await _stream_s(js)
    reply = await api(nc, "$JS.API.STREAM.PURGE.S", {"seq": 3})  # below 3, not including it
    assert reply["purged"] == 2
    assert await counts(nc, "S") == (3, 3, 5)
    reply = await api(nc, "$JS.API.STREAM.PURGE.S", {"seq": 5, "filter": "s.1"})
    assert reply["purged"] == 1
    assert await counts(nc, "S") == (2, 3, 5)
    assert await js.purge_stream("S", seq=5) is True
    assert await counts(nc, "S") == (1, 5, 5)


async def test_purge_errors(nc: Client, js: JetStreamContext) -> None:
    await _stream_s(js)
    assert await api_error(js.purge_stream("S", seq=3, keep=1)) == ("BadRequestError", 400, 10003, "bad request")
    reply = await api(nc, "$JS.API.STREAM.PURGE.S", {"seq": 3, "keep": 1})
    assert reply["type"] == "io.nats.jetstream.api.v1.stream_purge_response"
    assert reply["purged"] == 0
    assert await api_error(js.purge_stream("NOPE")) == STREAM_NOT_FOUND
    assert await counts(nc, "S") == (5, 1, 5)


# --------------------------------------------------------------------------------------------------- MSG.GET


async def test_msg_get_by_sequence_returns_headers_verbatim(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="S", subjects=["s.>"])
    headers = {"X-A": "v0", "X-B": "two words", "x-lower": "k"}
    await js.publish("s.1", b"hello", headers=headers)
    await js.publish("s.2", b"")  # no headers, no payload

    reply = await api(nc, "$JS.API.STREAM.MSG.GET.S", {"seq": 1})
    assert reply["type"] == "io.nats.jetstream.api.v1.stream_msg_get_response"
    message = reply["message"]
    assert (message["subject"], message["seq"]) == ("s.1", 1)
    assert base64.b64decode(message["hdrs"]) == b"NATS/1.0\r\nX-A: v0\r\nX-B: two words\r\nx-lower: k\r\n\r\n"
    assert base64.b64decode(message["data"]) == b"hello"
    assert message["time"] == (await state(nc, "S"))["first_ts"]

    msg = await js.get_msg("S", 1)
    assert (msg.subject, msg.seq, msg.data, msg.headers) == ("s.1", 1, b"hello", headers)
    assert msg.time is not None

    bare = (await api(nc, "$JS.API.STREAM.MSG.GET.S", {"seq": 2}))["message"]
    assert "hdrs" not in bare and "data" not in bare  # both omitted when empty
    msg = await js.get_msg("S", 2)
    assert (msg.subject, msg.seq, msg.data, msg.headers) == ("s.2", 2, None, None)


async def test_msg_get_last_and_next_by_subject(nc: Client, js: JetStreamContext) -> None:
    await _stream_s(js)
    last = await js.get_last_msg("S", "s.1")
    assert (last.seq, last.subject, last.data, last.headers) == (4, "s.1", b"m3", {"X-A": "v3"})
    assert (await js.get_last_msg("S", "s.*")).seq == 5  # wildcard: last of any matching subject

    nxt = await js.get_msg("S", seq=2, subject="s.0", next=True)
    assert (nxt.seq, nxt.subject, nxt.data) == (3, "s.0", b"m2")
    assert (await js.get_msg("S", seq=3, subject="s.0", next=True)).seq == 3  # seq itself counts
    assert (await js.get_msg("S", seq=3, subject="s.*", next=True)).seq == 3
    reply = await api(nc, "$JS.API.STREAM.MSG.GET.S", {"next_by_subj": "s.1"})  # no seq = from the start
    assert reply["message"]["seq"] == 2


@pytest.mark.parametrize(
    "body",
    [{"seq": 9}, {"seq": 3}, {"last_by_subj": "s.9"}, {"seq": 5, "next_by_subj": "s.1"}, {"next_by_subj": "q.>"}],
)
async def test_msg_get_not_found(nc: Client, js: JetStreamContext, body: dict[str, object]) -> None:
    await _stream_s(js)
    assert await js.delete_msg("S", 3)
    reply = await api(nc, "$JS.API.STREAM.MSG.GET.S", body)
    assert reply["type"] == "io.nats.jetstream.api.v1.stream_msg_get_response"
    assert error_of(reply) == (404, 10037, "no message found")


async def test_msg_get_errors_through_nats_py(js: JetStreamContext) -> None:
    await _stream_s(js)
    assert await api_error(js.get_msg("S", 99)) == NO_MESSAGE_FOUND
    assert await api_error(js.get_last_msg("S", "s.9")) == NO_MESSAGE_FOUND
    assert await api_error(js.get_msg("NOPE", 1)) == STREAM_NOT_FOUND


@pytest.mark.parametrize("body", [b"", {}, {"seq": 1, "last_by_subj": "s.1"}])
async def test_msg_get_bad_request(nc: Client, js: JetStreamContext, body: object) -> None:
    await _stream_s(js)
    reply = await api(nc, "$JS.API.STREAM.MSG.GET.S", body)
    assert error_of(reply) == (400, 10003, "bad request")


# --------------------------------------------------------------------------------------------------- MSG.DELETE


async def test_msg_delete(nc: Client, js: JetStreamContext) -> None:
    await _stream_s(js)
    reply = await api(nc, "$JS.API.STREAM.MSG.DELETE.S", {"seq": 3})
    assert reply == {"type": "io.nats.jetstream.api.v1.stream_msg_delete_response", "success": True}
    assert await api_error(js.get_msg("S", 3)) == NO_MESSAGE_FOUND
    assert await api_error(js.delete_msg("S", 3)) == ("BadRequestError", 400, 10043, "sequence 3 not found")
    assert await js.delete_msg("S", 5) is True  # the last one
    assert await js.delete_msg("S", 1) is True  # the first one moves first_seq
    st = await state(nc, "S")
    assert (st["messages"], st["first_seq"], st["last_seq"], st["num_subjects"]) == (2, 2, 5, 1)
    assert (await js.publish("s.0", b"x")).seq == 6  # deleting the tail does not reuse sequences
    reply = await api(nc, "$JS.API.STREAM.MSG.DELETE.S", {"seq": 2, "no_erase": True})
    assert reply["success"] is True
    assert await counts(nc, "S") == (2, 4, 6)


async def test_msg_delete_errors(nc: Client, js: JetStreamContext) -> None:
    await _stream_s(js)
    # Beyond the last sequence the real server answers 500/10057 with a store error text ("stream store EOF");
    # the code and err_code are the contract, the text is a Go detail.
    assert (await api_error(js.delete_msg("S", 99)))[:3] == ("ServerError", 500, 10057)
    assert await api_error(js.delete_msg("NOPE", 1)) == STREAM_NOT_FOUND
    assert await counts(nc, "S") == (5, 1, 5)


async def test_msg_delete_denied(nc: Client, js: JetStreamContext) -> None:
    await _stream_s(js, deny_delete=True)
    assert await api_error(js.delete_msg("S", 2)) == ("ServerError", 500, 10057, "message delete not permitted")
    assert await counts(nc, "S") == (5, 1, 5)
    assert await api_error(js.update_stream(name="S", subjects=["s.>"], deny_delete=False)) == (
        "ServerError",
        500,
        10052,
        "stream configuration update can not cancel deny message deletes",
    )
    assert await js.purge_stream("S") is True  # purge is still allowed


# --------------------------------------------------------------------------------------------------- DIRECT.GET


async def test_direct_get(nc: Client, js: JetStreamContext) -> None:
    await _stream_s(js, allow_direct=True)

    msg = await js.get_msg("S", 2, direct=True)
    assert (msg.subject, msg.seq, msg.data) == ("s.1", 2, b"m1")
    assert msg.headers is not None
    assert {k: msg.headers[k] for k in ("X-A", "Nats-Stream", "Nats-Subject", "Nats-Sequence")} == {
        "X-A": "v1",
        "Nats-Stream": "S",
        "Nats-Subject": "s.1",
        "Nats-Sequence": "2",
    }
    stored = (await api(nc, "$JS.API.STREAM.MSG.GET.S", {"seq": 2}))["message"]
    assert msg.headers["Nats-Time-Stamp"] == stored["time"]

    last = await js.get_last_msg("S", "s.0", direct=True)  # subject form: DIRECT.GET.S.s.0, empty body
    assert (last.seq, last.data, last.headers["X-A"]) == (5, b"m4", "v4")  # type: ignore[index]
    nxt = await js.get_msg("S", seq=2, subject="s.0", next=True, direct=True)
    assert (nxt.seq, nxt.subject) == (3, "s.0")

    raw = await nc.request("$JS.API.DIRECT.GET.S", json.dumps({"last_by_subj": "s.1"}).encode(), timeout=2)
    assert raw.data == b"m3"
    assert raw.headers is not None
    assert list(raw.headers) == ["X-A", "Nats-Stream", "Nats-Subject", "Nats-Sequence", "Nats-Time-Stamp"]


async def test_direct_get_not_found_and_bad_requests(nc: Client, js: JetStreamContext) -> None:
    await _stream_s(js, allow_direct=True)
    assert await js.delete_msg("S", 3)
    with pytest.raises(NotFoundError):
        await js.get_msg("S", 3, direct=True)
    with pytest.raises(NotFoundError):
        await js.get_last_msg("S", "s.9", direct=True)

    async def status(subject: str, body: bytes) -> tuple[bytes, str | None, str | None]:
        msg = await nc.request(subject, body, timeout=2)
        hdrs = msg.headers or {}
        return msg.data, hdrs.get("Status"), hdrs.get("Description")

    assert await status("$JS.API.DIRECT.GET.S", b'{"seq": 99}') == (b"", "404", "Message Not Found")
    assert await status("$JS.API.DIRECT.GET.S.s.9", b"") == (b"", "404", "Message Not Found")
    assert await status("$JS.API.DIRECT.GET.S", b"") == (b"", "408", "Empty Request")


async def test_direct_get_needs_allow_direct(nc: Client, js: JetStreamContext) -> None:
    await _stream_s(js)
    with pytest.raises(NoRespondersError):
        await js.get_msg("S", 1, direct=True)
    with pytest.raises(NoRespondersError):
        await js.get_last_msg("S", "s.0", direct=True)

    si = await js.update_stream(name="S", subjects=["s.>"], allow_direct=True)
    assert si.config.allow_direct is True

    async def direct_answers() -> bool:
        try:
            return (await js.get_msg("S", 1, direct=True)).data == b"m0"
        except NoRespondersError:
            return False

    await wait_for(direct_answers, timeout=5)


# --------------------------------------------------------------------------------------------------- sealed / deny


async def test_sealing_implies_deny_flags_and_discard_new(js: JetStreamContext) -> None:
    await _stream_s(js)
    si = await js.update_stream(name="S", subjects=["s.>"], sealed=True)
    assert si.state.messages == 5
    # Sealing also turns on deny_delete and deny_purge and switches discard to new.
    assert (si.config.sealed, si.config.deny_delete, si.config.deny_purge, si.config.discard) == (
        True,
        True,
        True,
        DiscardPolicy.NEW,
    )
    si = await js.stream_info("S")
    assert (si.config.sealed, si.config.deny_delete, si.config.deny_purge, si.config.discard) == (
        True,
        True,
        True,
        DiscardPolicy.NEW,
    )


async def test_sealed_stream(nc: Client, js: JetStreamContext) -> None:
    await _stream_s(js)
    assert (await js.update_stream(name="S", subjects=["s.>"], sealed=True)).config.sealed is True

    sealed = ("BadRequestError", 400, 10109, "invalid operation on sealed stream")
    assert await api_error(js.publish("s.0", b"x")) == sealed
    assert await api_error(js.purge_stream("S")) == sealed
    assert await api_error(js.delete_msg("S", 2)) == sealed
    reply = await api(nc, "$JS.API.STREAM.PURGE.S", {})
    assert reply["purged"] == 0
    assert await api_error(
        js.update_stream(
            name="S", subjects=["s.>"], sealed=False, deny_delete=True, deny_purge=True, discard=DiscardPolicy.NEW
        )
    ) == ("ServerError", 500, 10052, "stream configuration update can not unseal a sealed stream")
    assert await counts(nc, "S") == (5, 1, 5)
    assert (await js.get_msg("S", 5)).data == b"m4"  # still readable
    assert await js.delete_stream("S") is True  # and deletable


async def test_deny_purge(nc: Client, js: JetStreamContext) -> None:
    await _stream_s(js, deny_purge=True)
    denied = ("ServerError", 500, 10110, "stream purge not permitted")
    assert await api_error(js.purge_stream("S")) == denied
    assert await api_error(js.purge_stream("S", subject="s.0")) == denied
    reply = await api(nc, "$JS.API.STREAM.PURGE.S", {"keep": 1})
    assert (error_of(reply), reply["purged"]) == ((500, 10110, "stream purge not permitted"), 0)
    assert await counts(nc, "S") == (5, 1, 5)
    assert await js.delete_msg("S", 1) is True  # single deletes are still allowed
    assert await api_error(js.update_stream(name="S", subjects=["s.>"], deny_purge=False)) == (
        "ServerError",
        500,
        10052,
        "stream configuration update can not cancel deny purge",
    )


async def test_publish_many_then_read_everything_back(js: JetStreamContext) -> None:
    await js.add_stream(name="S", subjects=["s.>"])
    seqs = await publish_n(js, [f"s.{i % 7}" for i in range(50)], payload=b"p")
    assert seqs == list(range(1, 51))
    for seq in (1, 17, 50):
        msg = await js.get_msg("S", seq)
        assert (msg.seq, msg.subject) == (seq, f"s.{(seq - 1) % 7}")
    assert (await js.stream_info("S", subjects_filter="s.*")).state.subjects == {
        f"s.{i}": 8 if i == 0 else 7 for i in range(7)
    }
