"""Every request a single nats-server -js answers gets an answer from streamd too, within a second (issue 11):
the served result, or the error the real server gives in that situation. Where streamd cannot do the work
(consumer reset, the unserved stream features) it refuses with the server's error for the
failing step and a description naming what is missing, never a timeout and never accept-and-drop.

The expectations are nats-server 2.15.1's observed answers; the `jetstream` run proves them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig

from tests.conformance.util import error_of

PREFIX = "io.nats.jetstream.api.v1."
CLUSTER_REQUIRED = (503, 10010, "JetStream clustering support required")
BAD_REQUEST = (400, 10003, "bad request")
STREAM_NOT_FOUND = (404, 10059, "stream not found")
CONSUMER_NOT_FOUND = (404, 10014, "consumer not found")
PREFERRED = "preferred server not permitted in placement"


async def ask(nc: Client, subject: str, body: Any = b"", headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A raw request that must be answered within 1 s (a timeout fails the test)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    msg = await nc.request(subject, data, timeout=1, headers=headers)
    reply: dict[str, Any] = json.loads(msg.data)
    return reply


@pytest.fixture
async def assets(js: JetStreamContext) -> None:
    """Stream S with a message, a pull consumer C (deliver all) and L (deliver last)."""
    await js.add_stream(name="S", subjects=["s.>"])
    await js.publish("s.a", b"1")
    await js.add_consumer("S", ConsumerConfig(durable_name="C", ack_policy="explicit"))
    await js.add_consumer("S", ConsumerConfig(durable_name="L", ack_policy="explicit", deliver_policy="last"))


CLUSTER_VERBS = [
    ("STREAM.LEADER.STEPDOWN.S", "stream_leader_stepdown_response"),
    ("STREAM.LEADER.STEPDOWN.NOPE", "stream_leader_stepdown_response"),
    ("CONSUMER.LEADER.STEPDOWN.S.C", "consumer_leader_stepdown_response"),
    ("CONSUMER.LEADER.STEPDOWN.S.NOPE", "consumer_leader_stepdown_response"),
    ("STREAM.PEER.REMOVE.S", "stream_remove_peer_response"),
    ("STREAM.PEER.EVACUATE.S", "stream_evacuate_peer_response"),
    ("STREAM.CANCEL_MOVE.S", "stream_cancel_move_response"),
]


@pytest.mark.parametrize(("verb", "kind"), CLUSTER_VERBS)
@pytest.mark.parametrize("body", [b"", b"{}", b'{"peer":"x"}'])
async def test_cluster_only_verbs_answer_clustering_required(
    nc: Client, assets: None, verb: str, kind: str, body: bytes
) -> None:
    reply = await ask(nc, f"$JS.API.{verb}", body)
    assert reply["type"] == PREFIX + kind
    assert error_of(reply) == CLUSTER_REQUIRED
    assert set(reply) == {"type", "error"}


async def test_cluster_check_comes_before_the_api_level(nc: Client, assets: None) -> None:
    reply = await ask(nc, "$JS.API.STREAM.LEADER.STEPDOWN.S", b"", {"Nats-Required-Api-Level": "99"})
    assert error_of(reply) == CLUSTER_REQUIRED


SNAPSHOT_CASES: list[tuple[str, bytes, tuple[int, int, str]]] = [
    ("S", b"", BAD_REQUEST),
    ("S", b"{}", BAD_REQUEST),
    ("S", b" { } ", BAD_REQUEST),
    ("NOPE", b"", BAD_REQUEST),  # emptiness is checked before the stream
    ("NOPE", b'{"deliver_subject":"x"}', STREAM_NOT_FOUND),
    ("S", b'{"deliver_subject":""}', (400, 10015, "deliver subject not valid")),
    ("S", b'{"deliver_subject":"a.*"}', (400, 10015, "deliver subject not valid")),
    ("S", b'{"deliver_subject":"a.>"}', (400, 10015, "deliver subject not valid")),
    ("S", b'{"deliver_subject":"a","bogus":1}', (400, 10025, 'invalid JSON: json: unknown field "bogus"')),
]


@pytest.mark.parametrize(("stream", "body", "want"), SNAPSHOT_CASES)
async def test_snapshot_request_checks(
    nc: Client, assets: None, stream: str, body: bytes, want: tuple[int, int, str]
) -> None:
    reply = await ask(nc, f"$JS.API.STREAM.SNAPSHOT.{stream}", body)
    assert reply["type"] == PREFIX + "stream_snapshot_response"
    assert error_of(reply) == want


async def test_a_valid_snapshot_request_is_served(nc: Client, assets: None) -> None:
    """Both stream the snapshot (the payload format is each server's own: tests/test_snapshot.py has streamd's)."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    reply = await ask(nc, "$JS.API.STREAM.SNAPSHOT.S", {"deliver_subject": inbox, "chunk_size": 1024})
    await sub.unsubscribe()
    assert "error" not in reply and reply["config"]["name"] == "S" and "state" in reply


RESTORE_CASES: list[tuple[str, Any, tuple[int, int, str]]] = [
    ("T", b"", BAD_REQUEST),
    ("T", b"{}", BAD_REQUEST),
    ("S", {"config": {"name": "S"}}, (400, 10130, "stream name already in use, cannot restore")),
    ("S", {"config": {"name": "T"}}, (400, 10056, "stream name in subject does not match request")),
    ("T", {"config": {"name": "T", "max_age": -1}}, (500, 10052, "max age can not be negative")),
    ("T", {"config": {"name": "T"}, "bogus": 1}, (400, 10025, 'invalid JSON: json: unknown field "bogus"')),
]


@pytest.mark.parametrize(("stream", "body", "want"), RESTORE_CASES)
async def test_restore_request_checks(
    nc: Client, assets: None, stream: str, body: Any, want: tuple[int, int, str]
) -> None:
    reply = await ask(nc, f"$JS.API.STREAM.RESTORE.{stream}", body)
    assert reply["type"] == PREFIX + "stream_restore_response"
    assert error_of(reply) == want
    assert reply["deliver_subject"] == ""


async def test_a_valid_restore_request_is_served(nc: Client, assets: None) -> None:
    reply = await ask(nc, "$JS.API.STREAM.RESTORE.T", {"config": {"name": "T"}, "state": {}})
    assert "error" not in reply and reply["deliver_subject"].startswith("$JS.SNAPSHOT.RESTORE.T.")


UNPIN_CASES: list[tuple[str, bytes, tuple[int, int, str]]] = [
    ("S.C", b"", (400, 10025, "invalid JSON: unexpected end of JSON input")),
    ("NOPE.C", b"{}", (400, 10025, "invalid JSON: consumer group not specified")),
    (
        "S.C",
        b'{"group":"bad group"}',
        (
            400,
            10162,
            "Valid priority group name must match A-Z, a-z, 0-9, -_/=)+ and may not exceed 16 characters",
        ),
    ),
    ("S.C", b'{"group":"g"}', (400, 10160, "Provided priority group does not exist for this consumer")),
    ("S.C", b'{"group":"g","x":1}', (400, 10160, "Provided priority group does not exist for this consumer")),
    ("S.NOPE", b'{"group":"g"}', CONSUMER_NOT_FOUND),
    ("NOPE.C", b'{"group":"g"}', STREAM_NOT_FOUND),
]


@pytest.mark.parametrize(("names", "body", "want"), UNPIN_CASES)
async def test_unpin(nc: Client, assets: None, names: str, body: bytes, want: tuple[int, int, str]) -> None:
    reply = await ask(nc, f"$JS.API.CONSUMER.UNPIN.{names}", body)
    assert reply["type"] == PREFIX + "consumer_unpin_response"
    assert error_of(reply) == want


async def test_reset_errors(nc: Client, assets: None) -> None:
    bad = await ask(nc, "$JS.API.CONSUMER.RESET.S.C", {"seq": "x"})
    assert reply_kind(bad) == "consumer_reset_response" and bad["reset_seq"] == 0
    assert error_of(bad) == (
        400,
        10025,
        "invalid JSON: json: cannot unmarshal string into Go struct field JSApiConsumerResetRequest.seq of type uint64",
    )
    refused = await ask(nc, "$JS.API.CONSUMER.RESET.S.L", {"seq": 1})  # deliver last: the server refuses too
    code, err_code, description = error_of(refused)
    assert (code, err_code) == (400, 10204) and description.startswith("invalid reset: ")


async def test_reset_is_served_or_refused_at_once(nc: Client, assets: None, backend: str) -> None:
    reply = await ask(nc, "$JS.API.CONSUMER.RESET.S.C", b"")
    assert reply_kind(reply) == "consumer_reset_response"
    if backend == "jetstream":
        assert "error" not in reply and reply["reset_seq"] == 1
    else:
        assert error_of(reply) == (400, 10204, "invalid reset: streamd does not support consumer reset")


async def test_reset_of_a_missing_consumer(nc: Client, assets: None, backend: str) -> None:
    """The real server's consumer answers RESET itself, so a missing one leaves the client to time out; streamd
    says what is missing instead (a deliberate difference)."""
    if backend == "jetstream":
        with pytest.raises(TimeoutError):
            await nc.request("$JS.API.CONSUMER.RESET.S.NOPE", b"", timeout=0.5)
        return
    assert error_of(await ask(nc, "$JS.API.CONSUMER.RESET.S.NOPE")) == CONSUMER_NOT_FOUND
    assert error_of(await ask(nc, "$JS.API.CONSUMER.RESET.NOPE.C")) == STREAM_NOT_FOUND


def reply_kind(reply: dict[str, Any]) -> str:
    return str(reply["type"]).removeprefix(PREFIX)


@pytest.mark.parametrize(
    "subject",
    ["FOO", "STREAM.FOO.S", "STREAM.INFO", "STREAM.INFO.S.X", "CONSUMER.INFO.S", "STREAM.LEADER.STEPDOWN"],
)
async def test_unknown_verbs_and_wrong_token_counts_get_no_answer(nc: Client, assets: None, subject: str) -> None:
    """nats-server stays silent (its client times out); streamd's core server may say no responders instead."""
    with pytest.raises(Exception) as caught:
        await nc.request(f"$JS.API.{subject}", b"", timeout=0.5)
    assert type(caught.value).__name__ in ("TimeoutError", "NoRespondersError")


# ---- stream config fields: kept when served, refused by name when not, never accepted and dropped -------------

UNSERVED_FLAGS = [
    {"allow_batched": True},
    {"persist_mode": "async"},
    {"sources": [{"name": "X", "subject_transforms": [{"src": "x.>", "dest": "y.>"}]}]},
]

SERVED = {"sources"}  # subject transforms in sources: served since they were listed here


@pytest.mark.parametrize("extra", UNSERVED_FLAGS, ids=lambda e: next(iter(e)))
async def test_a_stream_feature_is_stored_or_refused_never_dropped(
    nc: Client, backend: str, extra: dict[str, Any]
) -> None:
    cfg: dict[str, Any] = {"name": "F", "subjects": ["f.>"], **extra}
    reply = await ask(nc, "$JS.API.STREAM.CREATE.F", cfg)
    (field, value) = next(iter(extra.items()))
    if backend == "jetstream" or field in SERVED:
        assert "error" not in reply, reply
        assert reply["config"][field] == value
        return
    code, err_code, description = error_of(reply)
    assert (code, err_code) == (500, 10052)
    assert description.startswith("streamd does not support ")
    assert (await ask(nc, "$JS.API.STREAM.NAMES"))["streams"] is None  # nothing was created


@pytest.mark.parametrize(
    "extra",
    [
        {"allow_atomic": False},
        {"allow_msg_schedules": False},
        {"allow_msg_counter": False},
        {"allow_batched": False},
        {"persist_mode": "default"},
        {"persist_mode": ""},
        {"sources": []},
        {"mirror": None, "sources": None, "republish": None, "subject_transform": None, "placement": None},
        {"placement": {}},
        {"placement": {"cluster": ""}},
        {"pedantic": False},
    ],
    ids=str,
)
async def test_off_values_of_those_fields_are_accepted_and_left_out(nc: Client, extra: dict[str, Any]) -> None:
    reply = await ask(nc, "$JS.API.STREAM.CREATE.F", {"name": "F", "subjects": ["f.>"], **extra})
    assert "error" not in reply, reply
    for field in extra:
        assert field not in reply["config"], (field, reply["config"])


@pytest.mark.parametrize(
    ("extra", "want"),
    [
        ({"mirror_direct": True}, (500, 10052, "stream has no mirror but does have mirror direct")),
        ({"sealed": True}, (500, 10052, "stream configuration for create can not be sealed")),
        ({"bogus_field": 1}, (400, 10025, 'invalid JSON: json: unknown field "bogus_field"')),
        ({"consumer_limits": {"bogus": 1}}, (400, 10025, 'invalid JSON: json: unknown field "bogus"')),
        ({"persist_mode": "bogus"}, (400, 10025, 'invalid JSON: can not unmarshal "\\"bogus\\""')),
        (
            {"placement": {"cluster": "c", "preferred": "p"}},
            (500, 10052, "preferred server not permitted in placement"),
        ),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else "",
)
async def test_create_refusals(nc: Client, extra: dict[str, Any], want: tuple[int, int, str]) -> None:
    reply = await ask(nc, "$JS.API.STREAM.CREATE.F", {"name": "F", "subjects": ["f.>"], **extra})
    assert error_of(reply) == want


async def test_unknown_fields_are_refused_on_update_too(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="F", subjects=["f.>"])
    reply = await ask(nc, "$JS.API.STREAM.UPDATE.F", {"name": "F", "subjects": ["f.>"], "allow_atomc": True})
    assert error_of(reply) == (400, 10025, 'invalid JSON: json: unknown field "allow_atomc"')


async def test_placement_with_a_cluster_is_kept(nc: Client) -> None:
    reply = await ask(nc, "$JS.API.STREAM.CREATE.F", {"name": "F", "subjects": ["f.>"], "placement": {"cluster": "c"}})
    assert reply["config"]["placement"] == {"cluster": "c"}


# ---- API level ---------------------------------------------------------------------------------------------------


async def test_the_reported_api_level_is_the_one_honoured(nc: Client, backend: str) -> None:
    """`api.level` in INFO is exactly the highest Nats-Required-Api-Level a request may carry: streamd serves
    level 2 (2.12's atomic batch publish, counters and message schedules; async persist is refused by name),
    nats-server 2.15
    reports 5."""
    level = (await ask(nc, "$JS.API.INFO"))["api"]["level"]
    assert level == (5 if backend == "jetstream" else 2)
    ok = await ask(nc, "$JS.API.STREAM.NAMES", b"", {"Nats-Required-Api-Level": str(level)})
    assert "error" not in ok
    too_high = await ask(nc, "$JS.API.STREAM.NAMES", b"", {"Nats-Required-Api-Level": str(level + 1)})
    assert error_of(too_high) == (412, 10185, "JetStream minimum api level required")


# ---- DIRECT.GET without a selector -----------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"{}", b'{"last_by_subj":""}', b'{"seq":0,"batch":0}'])
async def test_direct_get_without_a_selector_is_an_empty_request(nc: Client, js: JetStreamContext, body: bytes) -> None:
    await js.add_stream(name="G", subjects=["g.>"], allow_direct=True)
    await js.publish("g.a", b"x")
    msg = await nc.request("$JS.API.DIRECT.GET.G", body, timeout=1)
    assert msg.data == b""
    assert msg.headers is not None and list(msg.headers.values()) == ["408", "Empty Request"]


# ---- `_nats.*` metadata ------------------------------------------------------------------------------------------


async def test_configs_carry_the_server_version_metadata(nc: Client) -> None:
    """Every answered stream/consumer config carries `_nats.req.level` (what it needs), `_nats.level` (the
    server's INFO api.level) and `_nats.ver`; echoed back, they are recomputed, never stored; LIST pages carry the
    required level only."""
    level = str((await ask(nc, "$JS.API.INFO"))["api"]["level"])
    plain = await ask(nc, "$JS.API.STREAM.CREATE.M1", {"name": "M1", "subjects": ["m1"]})
    meta = plain["config"]["metadata"]
    assert set(meta) == {"_nats.req.level", "_nats.level", "_nats.ver"}
    assert meta["_nats.req.level"] == "0" and meta["_nats.level"] == level and meta["_nats.ver"]

    forged = {"a": "b", "_nats.req.level": "9", "_nats.ver": "x", "_nats.level": "7", "_nats.other": "y"}
    ttl = await ask(
        nc, "$JS.API.STREAM.CREATE.M2", {"name": "M2", "subjects": ["m2"], "allow_msg_ttl": True, "metadata": forged}
    )
    meta = ttl["config"]["metadata"]
    assert meta["_nats.req.level"] == "1" and meta["_nats.level"] == level and meta["_nats.ver"] != "x"
    assert meta["a"] == "b" and meta["_nats.other"] == "y"
    again = await ask(nc, "$JS.API.STREAM.CREATE.M2", ttl["config"])  # the echoed config is the same config
    assert "error" not in again, again

    listed = await ask(nc, "$JS.API.STREAM.LIST", {})
    by_name = {s["config"]["name"]: s["config"]["metadata"] for s in listed["streams"]}
    assert by_name == {"M1": {"_nats.req.level": "0"}, "M2": {"_nats.req.level": "1", "_nats.other": "y", "a": "b"}}

    paused = {"stream_name": "M1", "config": {"name": "P", "pause_until": "2099-01-01T00:00:00Z"}}
    meta = (await ask(nc, "$JS.API.CONSUMER.CREATE.M1.P", paused))["config"]["metadata"]
    assert meta["_nats.req.level"] == "1" and meta["_nats.level"] == level
    plain_consumer = {"stream_name": "M1", "config": {"name": "C", "metadata": {"_nats.level": "3", "u": "v"}}}
    created = await ask(nc, "$JS.API.CONSUMER.CREATE.M1.C", plain_consumer)
    assert created["config"]["metadata"]["_nats.req.level"] == "0" and created["config"]["metadata"]["u"] == "v"
    again = await ask(nc, "$JS.API.CONSUMER.CREATE.M1.C", {"stream_name": "M1", "config": created["config"]})
    assert "error" not in again, again
    listed = await ask(nc, "$JS.API.CONSUMER.LIST.M1", {})
    assert [c["config"]["metadata"] for c in listed["consumers"]] == [
        {"_nats.req.level": "0", "u": "v"},
        {"_nats.req.level": "1"},
    ]


# ---- small input differences found by tests/fuzz/diff.py ---------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "want"),
    [
        ("retention", 'invalid JSON: can not unmarshal "null"'),
        ("storage", 'invalid JSON: can not unmarshal "null"'),
        ("discard", 'invalid JSON: can not unmarshal "null"'),
        ("compression", "invalid JSON: unknown compression algorithm"),
    ],
)
async def test_a_null_policy_is_refused(nc: Client, field: str, want: str) -> None:
    """Go's policy enums unmarshal themselves and refuse null (other fields read null as their zero value)."""
    reply = await ask(nc, "$JS.API.STREAM.CREATE.F", {"name": "F", "subjects": ["f.>"], field: None})
    assert error_of(reply) == (400, 10025, want)


@pytest.mark.parametrize("field", ["deliver_policy", "ack_policy", "replay_policy"])
async def test_a_null_consumer_policy_is_refused(nc: Client, assets: None, field: str) -> None:
    reply = await ask(nc, "$JS.API.CONSUMER.CREATE.S.N", {"stream_name": "S", "config": {"name": "N", field: None}})
    assert error_of(reply) == (400, 10025, 'invalid JSON: can not unmarshal "null"')


async def test_replica_limits(nc: Client, assets: None) -> None:
    huge = await ask(nc, "$JS.API.STREAM.CREATE.F", {"name": "F", "subjects": ["f.>"], "num_replicas": 6})
    assert error_of(huge) == (500, 10052, "maximum replicas is 5")
    three = await ask(nc, "$JS.API.STREAM.CREATE.F", {"name": "F", "subjects": ["f.>"], "num_replicas": 3})
    assert error_of(three) == (500, 10074, "replicas > 1 not supported in non-clustered mode")
    body = {"stream_name": "S", "config": {"name": "R", "num_replicas": 3}}
    assert error_of(await ask(nc, "$JS.API.CONSUMER.CREATE.S.R", body)) == (
        500,
        10074,
        "replicas > 1 not supported in non-clustered mode",
    )
    body = {"stream_name": "S", "config": {"name": "R", "num_replicas": -1}}
    assert error_of(await ask(nc, "$JS.API.CONSUMER.CREATE.S.R", body)) == (
        400,
        10133,
        "replicas count cannot be negative",
    )


async def test_deleting_sequence_zero(nc: Client, assets: None) -> None:
    reply = await ask(nc, "$JS.API.STREAM.MSG.DELETE.S", {"seq": 0})
    assert error_of(reply) == (500, 10057, "no message found")
