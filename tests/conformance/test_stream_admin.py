"""Differential conformance: STREAM.CREATE / UPDATE / INFO / NAMES / LIST / DELETE (JetStream vs streamd)."""

from __future__ import annotations

import base64

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType
from nats.js.errors import NoStreamResponseError, NotFoundError

from tests.conformance.util import (
    ALREADY_IN_USE,
    STREAM_NOT_FOUND,
    ZERO_TIME,
    api,
    api_error,
    error_of,
    info,
    publish_n,
    user_metadata,
)
from tests.helpers import wait_for

# The config the real server echoes for {"name": "ORDERS", "subjects": ["orders.>"]} as nats-py sends it.
# Left out on purpose: `metadata` (the server adds `_nats.*` version keys; compared separately) and `mirror_direct`
# (mirrors are out of scope).
DEFAULT_CONFIG = {
    "name": "ORDERS",
    "subjects": ["orders.>"],
    "retention": "limits",
    "max_consumers": -1,
    "max_msgs": -1,
    "max_bytes": -1,
    "max_age": 0,
    "max_msgs_per_subject": -1,
    "max_msg_size": -1,
    "discard": "old",
    "storage": "file",
    "num_replicas": 1,
    "duplicate_window": 120_000_000_000,
    "compression": "none",
    "allow_direct": False,
    "sealed": False,
    "deny_delete": False,
    "deny_purge": False,
    "allow_rollup_hdrs": False,
    "consumer_limits": {},
    "allow_msg_ttl": False,
}

# What nats-py's add_stream(name="ORDERS", subjects=["orders.>"]) puts on the wire (spec §4.1).
NATS_PY_CREATE = {
    "name": "ORDERS",
    "subjects": ["orders.>"],
    "discard": "old",
    "discard_new_per_subject": False,
    "max_msgs_per_subject": -1,
    "max_msg_size": -1,
    "no_ack": False,
    "duplicate_window": 0,
    "sealed": False,
    "deny_delete": False,
    "deny_purge": False,
    "allow_rollup_hdrs": False,
    "max_age": 0,
}

NAME_CHARS_ERROR = "stream name is required and can not contain '.', '*', '>', '\\', '/'"


def picked(config: dict[str, object]) -> dict[str, object]:
    return {k: config.get(k) for k in DEFAULT_CONFIG}


# --------------------------------------------------------------------------------------------------- create


async def test_create_echoes_server_defaults(nc: Client, js: JetStreamContext) -> None:
    reply = await api(nc, "$JS.API.STREAM.CREATE.ORDERS", NATS_PY_CREATE)
    assert reply["type"] == "io.nats.jetstream.api.v1.stream_create_response"
    assert picked(reply["config"]) == DEFAULT_CONFIG
    assert user_metadata(reply["config"]) == {}
    assert reply["did_create"] is True
    assert reply["state"] == {
        "messages": 0,
        "bytes": 0,
        "first_seq": 0,
        "first_ts": ZERO_TIME,
        "last_seq": 0,
        "last_ts": ZERO_TIME,
        "consumer_count": 0,
    }
    assert reply["created"].endswith("Z") and reply["ts"].endswith("Z")

    si = await js.stream_info("ORDERS")  # the same through nats-py's dataclasses
    assert si.config.duplicate_window == 120.0
    assert si.config.max_age == 0
    assert si.config.retention == RetentionPolicy.LIMITS
    assert si.config.storage == StorageType.FILE
    assert si.config.discard == DiscardPolicy.OLD
    assert (si.config.num_replicas, si.config.max_msgs, si.config.max_bytes, si.config.max_consumers) == (1, -1, -1, -1)
    assert (si.state.messages, si.state.first_seq, si.state.last_seq) == (0, 0, 0)


async def test_create_defaults_subjects_to_name_and_keeps_user_metadata(nc: Client, js: JetStreamContext) -> None:
    si = await js.add_stream(name="PLAIN", metadata={"owner": "team-a"}, description="d")
    assert si.config.subjects == ["PLAIN"]
    assert si.config.description == "d"
    assert user_metadata((await info(nc, "PLAIN"))["config"]) == {"owner": "team-a"}
    assert (await js.publish("PLAIN", b"x")).seq == 1


async def test_create_duplicate_window_defaults_to_short_max_age(js: JetStreamContext) -> None:
    si = await js.add_stream(name="AGED", subjects=["aged"], max_age=1.0)
    assert (si.config.max_age, si.config.duplicate_window) == (1.0, 1.0)


async def test_create_is_idempotent_with_same_config(nc: Client, js: JetStreamContext) -> None:
    first = await api(nc, "$JS.API.STREAM.CREATE.ORDERS", NATS_PY_CREATE)
    await js.publish("orders.1", b"x")
    again = await api(nc, "$JS.API.STREAM.CREATE.ORDERS", NATS_PY_CREATE)
    assert "error" not in again, again
    assert again["config"] == first["config"]
    assert again["created"] == first["created"]
    assert again["did_create"] is True  # nats-server 2.15.1 says true on an identical re-create too
    assert (again["state"]["messages"], again["state"]["last_seq"]) == (1, 1)
    si = await js.add_stream(name="ORDERS", subjects=["orders.>"])  # nats-py sends the same body
    assert si.state.messages == 1


async def test_create_with_different_config_is_refused(js: JetStreamContext) -> None:
    await js.add_stream(name="ORDERS", subjects=["orders.>"])
    assert await api_error(js.add_stream(name="ORDERS", subjects=["orders.>"], max_msgs=10)) == ALREADY_IN_USE
    assert await api_error(js.add_stream(name="ORDERS", subjects=["other.>"])) == ALREADY_IN_USE
    assert (await js.stream_info("ORDERS")).config.max_msgs == -1


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("a*", (500, 10052, NAME_CHARS_ERROR), id="star"),
        pytest.param("a>", (500, 10052, NAME_CHARS_ERROR), id="gt"),
        pytest.param("n" * 256, (500, 10052, "stream name is too long, maximum allowed is 255"), id="256-chars"),
        pytest.param("a/b", (400, 10128, "Stream name can not contain path separators"), id="slash"),
        pytest.param("a\\b", (400, 10128, "Stream name can not contain path separators"), id="backslash"),
    ],
)
async def test_create_bad_stream_names(nc: Client, name: str, expected: tuple[int, int, str]) -> None:
    # nats-py validates names client-side, so these go raw, as another client would send them.
    reply = await api(nc, f"$JS.API.STREAM.CREATE.{name}", {"name": name, "subjects": ["bad"]})
    assert reply["type"] == "io.nats.jetstream.api.v1.stream_create_response"
    assert error_of(reply) == expected


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"name": "OTHER", "subjects": ["x"]}, id="other-name"),
        pytest.param({"subjects": ["x"]}, id="no-name"),
    ],
)
async def test_create_name_must_match_subject(nc: Client, body: dict[str, object]) -> None:
    reply = await api(nc, "$JS.API.STREAM.CREATE.X", body)
    assert error_of(reply) == (400, 10056, "stream name in subject does not match request")


@pytest.mark.parametrize(
    ("subjects", "description"),
    [
        pytest.param(["x.>", "x.a"], 'subject "x.>" overlaps with "x.a"', id="wildcard"),
        pytest.param(["x", "x"], 'subject "x" overlaps with "x"', id="duplicate"),
    ],
)
async def test_create_subject_overlap_inside_one_stream(
    js: JetStreamContext, subjects: list[str], description: str
) -> None:
    assert await api_error(js.add_stream(name="X", subjects=subjects)) == ("ServerError", 500, 10052, description)


async def test_create_subject_overlap_with_another_stream(js: JetStreamContext) -> None:
    await js.add_stream(name="A", subjects=["shared.>"])
    for subjects in (["shared.x"], ["shared.>"], ["shared.*"], ["b", "shared.q.>"]):
        assert await api_error(js.add_stream(name="B", subjects=subjects)) == (
            "BadRequestError",
            400,
            10065,
            "subjects overlap with an existing stream",
        )
    await js.add_stream(name="B", subjects=["sharedx.>"])  # only a real collision counts


async def test_create_replicas(nc: Client, js: JetStreamContext) -> None:
    assert await api_error(js.add_stream(name="R", subjects=["r"], num_replicas=3)) == (
        "ServerError",
        500,
        10074,
        "replicas > 1 not supported in non-clustered mode",
    )
    reply = await api(nc, "$JS.API.STREAM.CREATE.R", {"name": "R", "subjects": ["r"], "num_replicas": -1})
    assert error_of(reply) == (400, 10133, "replicas count cannot be negative")
    assert await api_error(js.stream_info("R")) == STREAM_NOT_FOUND


@pytest.mark.parametrize(
    ("extra", "description"),
    [
        pytest.param({"max_age": -1}, "max age can not be negative", id="negative-max-age"),
        pytest.param({"max_age": 50_000_000}, "max age needs to be >= 100ms", id="tiny-max-age"),
        pytest.param(
            {"max_age": 1_000_000_000, "duplicate_window": 2_000_000_000},
            "duplicates window can not be larger then max age",
            id="dup-window-over-max-age",
        ),
        pytest.param(
            {"deny_purge": True, "allow_rollup_hdrs": True},
            "roll-ups require the purge permission",
            id="rollup-no-purge",
        ),
        pytest.param(
            {"discard_new_per_subject": True},
            "discard new per subject requires discard new policy to be set",
            id="dnps-without-discard-new",
        ),
        pytest.param(
            {"discard": "new", "discard_new_per_subject": True},
            "discard new per subject requires max msgs per subject > 0",
            id="dnps-without-per-subject-limit",
        ),
        pytest.param({"subjects": [">"]}, "capturing all subjects requires no-ack to be true", id="capture-all"),
        pytest.param(
            {"subjects": ["$JS.API.x"]},
            "subjects that overlap with jetstream api require no-ack to be true",
            id="js-api-subject",
        ),
        pytest.param(
            {"subjects": ["*.x"]},
            "subjects that overlap with jetstream api require no-ack to be true",
            id="wildcard-over-js-api",
        ),
        pytest.param(
            {"subjects": ["$SYS.x"]},
            "subjects that overlap with system api require no-ack to be true",
            id="sys-subject",
        ),
    ],
)
async def test_create_invalid_config(nc: Client, extra: dict[str, object], description: str) -> None:
    reply = await api(nc, "$JS.API.STREAM.CREATE.V", {"name": "V", "subjects": ["v"], **extra})
    assert error_of(reply) == (500, 10052, description)


@pytest.mark.parametrize(
    "body", [b"{not json", b'{"name": "J", "subjects": ["j"]', b"[1, 2]", b'{"name": "J", "storage": "disk"}']
)
async def test_create_malformed_json_then_service_still_answers(nc: Client, js: JetStreamContext, body: bytes) -> None:
    reply = await api(nc, "$JS.API.STREAM.CREATE.J", body)
    code, err_code, description = error_of(reply)
    # The text after "invalid JSON: " is the Go decoder's message; only the prefix is part of the contract.
    assert (code, err_code) == (400, 10025)
    assert description.startswith("invalid JSON: ")
    assert await api_error(js.stream_info("J")) == STREAM_NOT_FOUND
    si = await js.add_stream(name="J", subjects=["j"])
    assert si.config.name == "J"
    assert (await js.publish("j", b"ok")).seq == 1


@pytest.mark.parametrize(
    ("verb", "kind"),
    [
        ("STREAM.INFO.S", "stream_info_response"),
        ("STREAM.INFO.NOPE", "stream_info_response"),
        ("STREAM.PURGE.S", "stream_purge_response"),
        ("STREAM.MSG.GET.S", "stream_msg_get_response"),
        ("STREAM.MSG.DELETE.S", "stream_msg_delete_response"),
        ("STREAM.NAMES", "stream_names_response"),
        ("STREAM.LIST", "stream_list_response"),
    ],
)
async def test_malformed_json_on_other_stream_requests(nc: Client, js: JetStreamContext, verb: str, kind: str) -> None:
    await js.add_stream(name="S", subjects=["s"])
    await js.publish("s", b"x")
    reply = await api(nc, f"$JS.API.{verb}", b"{bad")
    assert reply["type"] == f"io.nats.jetstream.api.v1.{kind}"
    code, err_code, description = error_of(reply)
    assert (code, err_code) == (400, 10025)  # decoder text after the prefix differs (Go vs Python)
    assert description.startswith("invalid JSON: ")
    assert (await js.stream_info("S")).state.messages == 1


# --------------------------------------------------------------------------------------------------- update


async def test_update_changes_limits_and_applies_them(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="U", subjects=["u.>"])
    await publish_n(js, ["u.a"] * 5)
    si = await js.update_stream(name="U", subjects=["u.>", "v.>"], max_msgs=2, description="now limited")
    assert (si.config.max_msgs, si.config.description, si.config.subjects) == (2, "now limited", ["u.>", "v.>"])
    assert (si.state.messages, si.state.first_seq, si.state.last_seq) == (2, 4, 5)
    reply = await api(nc, "$JS.API.STREAM.INFO.U")
    assert reply["config"]["max_msgs"] == 2
    assert (await js.publish("v.new", b"x")).seq == 6  # the added subject is now captured
    await js.update_stream(name="U", subjects=["u.>", "v.>"], max_msgs=-1)
    assert (await js.stream_info("U")).config.max_msgs == -1


async def test_update_forbidden_changes(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="U", subjects=["u"])
    await js.add_stream(name="OTHER", subjects=["o.>"])
    assert await api_error(js.update_stream(name="U", subjects=["u"], storage=StorageType.MEMORY)) == (
        "ServerError",
        500,
        10052,
        "stream configuration update can not change storage type",
    )
    assert await api_error(js.update_stream(name="U", subjects=["u", "o.x"])) == (
        "BadRequestError",
        400,
        10065,
        "subjects overlap with an existing stream",
    )
    assert await api_error(js.update_stream(name="U", subjects=["u"], num_replicas=3)) == (
        "ServerError",
        500,
        10074,
        "replicas > 1 not supported in non-clustered mode",
    )
    reply = await api(nc, "$JS.API.STREAM.UPDATE.U", {"name": "OTHER", "subjects": ["u"]})
    assert error_of(reply) == (400, 10056, "stream name in subject does not match request")
    reply = await api(nc, "$JS.API.STREAM.UPDATE.U", b"{nope")
    assert error_of(reply)[:2] == (400, 10025)
    si = await js.stream_info("U")
    assert (si.config.storage, si.config.subjects) == (StorageType.FILE, ["u"])


async def test_update_removing_a_subject_stops_capturing_it(js: JetStreamContext) -> None:
    await js.add_stream(name="U", subjects=["u.a", "u.b"])
    assert (await js.publish("u.b", b"x")).seq == 1
    si = await js.update_stream(name="U", subjects=["u.a"])
    assert si.config.subjects == ["u.a"]

    async def uncovered() -> bool:
        try:
            await js.publish("u.b", b"x", timeout=1)
        except NoStreamResponseError:
            return True
        return False

    await wait_for(uncovered)
    assert (await js.publish("u.a", b"x")).stream == "U"


async def test_update_missing_stream(nc: Client, js: JetStreamContext) -> None:
    assert await api_error(js.update_stream(name="NOPE", subjects=["nope"])) == STREAM_NOT_FOUND
    reply = await api(nc, "$JS.API.STREAM.UPDATE.NOPE", {"name": "NOPE", "subjects": ["nope"]})
    assert reply["type"] == "io.nats.jetstream.api.v1.stream_update_response"


# --------------------------------------------------------------------------------------------------- info


async def test_info_state_after_publishes_and_delete(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="S", subjects=["s.>"])
    for i in range(5):
        await js.publish(f"s.{i % 2}", b"x", headers={"X-A": f"v{i}"})
    assert await js.delete_msg("S", 3)

    reply = await info(nc, "S")
    assert reply["type"] == "io.nats.jetstream.api.v1.stream_info_response"
    st = reply["state"]
    # bytes: per message 22 + len(subject) + len(data) + 8 + 4 + len(header block) = 59 (file store accounting)
    assert {
        k: st.get(k)
        for k in ("messages", "bytes", "first_seq", "last_seq", "num_subjects", "num_deleted", "consumer_count")
    } == {
        "messages": 4,
        "bytes": 236,
        "first_seq": 1,
        "last_seq": 5,
        "num_subjects": 2,
        "num_deleted": 1,
        "consumer_count": 0,
    }
    assert "deleted" not in st and "subjects" not in st
    first = await api(nc, "$JS.API.STREAM.MSG.GET.S", {"seq": 1})
    last = await api(nc, "$JS.API.STREAM.MSG.GET.S", {"seq": 5})
    assert (st["first_ts"], st["last_ts"]) == (first["message"]["time"], last["message"]["time"])

    detailed = await info(nc, "S", {"deleted_details": True})
    assert (detailed["state"]["deleted"], detailed["state"]["num_deleted"]) == ([3], 1)

    si = await js.stream_info("S")
    assert (si.state.messages, si.state.bytes, si.state.first_seq, si.state.last_seq) == (4, 236, 1, 5)
    assert si.state.num_deleted == 1


async def test_info_subjects_filter(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="S", subjects=["s.>"])
    await publish_n(js, ["s.0", "s.1", "s.0", "s.1", "s.0", "s.x.y"])

    si = await js.stream_info("S", subjects_filter="s.*")
    assert si.state.subjects == {"s.0": 3, "s.1": 2}
    si = await js.stream_info("S", subjects_filter=">")
    assert si.state.subjects == {"s.0": 3, "s.1": 2, "s.x.y": 1}

    reply = await info(nc, "S", {"subjects_filter": "s.1"})
    assert (reply["total"], reply["offset"], reply["limit"]) == (1, 0, 100000)
    assert reply["state"]["subjects"] == {"s.1": 2}
    assert reply["state"]["num_subjects"] == 3

    reply = await info(nc, "S", {"subjects_filter": "q.1"})  # no match: no map, paging zero
    assert (reply["total"], reply["limit"]) == (0, 0)
    assert "subjects" not in reply["state"]
    plain = await info(nc, "S")
    assert (plain["total"], plain["offset"], plain["limit"]) == (0, 0, 0)
    assert "subjects" not in plain["state"]


async def test_info_missing_stream(nc: Client, js: JetStreamContext) -> None:
    assert await api_error(js.stream_info("NOPE")) == STREAM_NOT_FOUND
    reply = await api(nc, "$JS.API.STREAM.INFO.NOPE")
    assert reply["type"] == "io.nats.jetstream.api.v1.stream_info_response"
    assert error_of(reply) == (404, 10059, "stream not found")


# --------------------------------------------------------------------------------------------------- names/list


async def _three_streams(js: JetStreamContext) -> None:
    await js.add_stream(name="C", subjects=["c.x"])
    await js.add_stream(name="A", subjects=["a.>"])
    await js.add_stream(name="B", subjects=["b.*"])


@pytest.mark.parametrize(
    ("subject", "names"),
    [
        ("a.x", ["A"]),
        ("a.x.y", ["A"]),
        ("b.x", ["B"]),
        ("b.x.y", []),
        ("b.>", ["B"]),
        ("c.x", ["C"]),
        ("*.x", ["A", "B", "C"]),
        (">", ["A", "B", "C"]),
        ("zz", []),
    ],
)
async def test_names_with_subject_filter(nc: Client, js: JetStreamContext, subject: str, names: list[str]) -> None:
    await _three_streams(js)
    reply = await api(nc, "$JS.API.STREAM.NAMES", {"subject": subject})
    assert reply["type"] == "io.nats.jetstream.api.v1.stream_names_response"
    assert (reply["total"], reply["offset"], reply["limit"]) == (len(names), 0, 1024)
    assert reply["streams"] == (names or None)  # no match is JSON null, not []


async def test_names_and_list_unfiltered(nc: Client, js: JetStreamContext) -> None:
    empty = await api(nc, "$JS.API.STREAM.NAMES", {"offset": 0})
    assert (empty["total"], empty["streams"]) == (0, None)
    empty_list = await api(nc, "$JS.API.STREAM.LIST", {"offset": 0})
    assert (empty_list["total"], empty_list["limit"], empty_list["streams"]) == (0, 256, [])
    assert await js.streams_info() == []

    await _three_streams(js)
    assert (await api(nc, "$JS.API.STREAM.NAMES", b""))["streams"] == ["A", "B", "C"]
    listed = await api(nc, "$JS.API.STREAM.LIST", {"offset": 0})
    assert listed["type"] == "io.nats.jetstream.api.v1.stream_list_response"
    assert (listed["total"], listed["offset"], listed["limit"]) == (3, 0, 256)
    assert sorted(s["config"]["name"] for s in listed["streams"]) == ["A", "B", "C"]
    infos = await js.streams_info()
    assert sorted((si.config.name, tuple(si.config.subjects or ())) for si in infos) == [
        ("A", ("a.>",)),
        ("B", ("b.*",)),
        ("C", ("c.x",)),
    ]

    filtered = await api(nc, "$JS.API.STREAM.LIST", {"subject": "b.q"})
    assert filtered["total"] == 1
    assert [s["config"]["name"] for s in filtered["streams"]] == ["B"]
    assert (await api(nc, "$JS.API.STREAM.LIST", {"subject": "zz"}))["streams"] == []


async def test_find_stream_name_by_subject(js: JetStreamContext) -> None:
    await _three_streams(js)
    assert await js.find_stream_name_by_subject("a.deep.x") == "A"
    assert await js.find_stream_name_by_subject("b.q") == "B"
    assert await js.find_stream_name_by_subject("c.x") == "C"
    with pytest.raises(NotFoundError):  # raised client-side on "streams": null
        await js.find_stream_name_by_subject("c.y")


# --------------------------------------------------------------------------------------------------- delete


async def test_delete_stream(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="D", subjects=["d.>"], first_seq=10)
    assert (await js.publish("d.a", b"x")).seq == 10
    reply = await api(nc, "$JS.API.STREAM.DELETE.D")
    assert reply == {"type": "io.nats.jetstream.api.v1.stream_delete_response", "success": True}
    assert await api_error(js.stream_info("D")) == STREAM_NOT_FOUND
    assert await api_error(js.delete_stream("D")) == STREAM_NOT_FOUND
    assert (await api(nc, "$JS.API.STREAM.NAMES", b""))["streams"] is None

    async def no_stream_answers() -> bool:
        try:
            await js.publish("d.a", b"lost", timeout=1)
        except NoStreamResponseError:
            return True
        return False

    await wait_for(no_stream_answers)
    await js.add_stream(name="D", subjects=["d.>"])  # a fresh stream under the same name starts over
    assert (await js.publish("d.a", b"x")).seq == 1
    assert (await js.stream_info("D")).state.messages == 1
    assert base64.b64decode((await api(nc, "$JS.API.STREAM.MSG.GET.D", {"seq": 1}))["message"]["data"]) == b"x"


async def test_delete_stream_refuses_a_payload(nc: Client, js: JetStreamContext) -> None:
    await js.add_stream(name="D", subjects=["d"])
    reply = await api(nc, "$JS.API.STREAM.DELETE.D", {"name": "D"})
    assert reply["type"] == "io.nats.jetstream.api.v1.stream_delete_response"
    assert error_of(reply) == (400, 10038, "expected an empty request payload")
    assert (await js.stream_info("D")).config.name == "D"
