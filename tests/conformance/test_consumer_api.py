"""Differential conformance: consumer CREATE (three subject forms), update rules, INFO, DELETE, NAMES, LIST, PAUSE.

Expectations are nats-server 2.15.1's observed replies. Echoed configs are compared without `metadata` (the real server
adds `_nats.*` version keys; user metadata is still compared) and without timestamps.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ReplayPolicy
from nats.js.errors import NotFoundError

from tests.conformance.consumer_util import (
    C,
    config_of,
    consumer_info,
    create,
    create_ok,
    delivery,
    in_an_hour,
    names,
    numbers,
    open_inbox,
)
from tests.conformance.util import ZERO_TIME, api, api_error, error_of, publish_n

S30 = 30_000_000_000
S5 = 5_000_000_000
SECOND = 1_000_000_000
API_V1 = "io.nats.jetstream.api.v1."
CREATE_TYPE = API_V1 + "consumer_create_response"
PAUSE_TYPE = API_V1 + "consumer_pause_response"
NOT_FOUND = (404, 10014, "consumer not found")
NO_STREAM = (404, 10059, "stream not found")
NAME_CHARS = "consumer name can not contain '.', '*', '>', '\\', '/'"

# CREATE.S.n1 {"ack_policy": "explicit"}: an ephemeral pull consumer with every default filled in.
PULL_EPHEMERAL = {
    "name": "n1",
    "deliver_policy": "all",
    "ack_policy": "explicit",
    "ack_wait": S30,
    "max_deliver": -1,
    "replay_policy": "instant",
    "max_waiting": 512,
    "max_ack_pending": 1000,
    "inactive_threshold": S5,
    "num_replicas": 0,
}
FRESH = {
    "delivered": {"consumer_seq": 0, "stream_seq": 0},
    "ack_floor": {"consumer_seq": 0, "stream_seq": 0},
    "num_ack_pending": 0,
    "num_redelivered": 0,
    "num_waiting": 0,
    "num_pending": 0,
}


@pytest.fixture
async def stream_s(js: JetStreamContext) -> None:
    await js.add_stream(name="S", subjects=["s.>"])


# --------------------------------------------------------------------------------------------------- create forms


async def test_named_ephemeral_pull_defaults(nc: Client, stream_s: None) -> None:
    reply = await create_ok(nc, "CREATE.S.n1", {"ack_policy": "explicit"})
    assert reply["type"] == CREATE_TYPE
    assert (reply["stream_name"], reply["name"]) == ("S", "n1")
    assert config_of(reply) == PULL_EPHEMERAL
    assert numbers(reply) == FRESH
    assert reply["created"].endswith("Z") and "paused" not in reply and "push_bound" not in reply
    info = await consumer_info(nc, "S", "n1")
    assert info["type"] == API_V1 + "consumer_info_response"
    assert (config_of(info), info["created"]) == (PULL_EPHEMERAL, reply["created"])


@pytest.mark.parametrize("suffix", ["CREATE.S.dd", "DURABLE.CREATE.S.dd"])
async def test_durable_defaults(nc: Client, stream_s: None, suffix: str) -> None:
    reply = await create_ok(nc, suffix, {"durable_name": "dd", "ack_policy": "explicit"})
    expected = {"durable_name": "dd", **PULL_EPHEMERAL, "name": "dd"}
    del expected["inactive_threshold"]  # durables never expire
    assert (reply["name"], config_of(reply)) == ("dd", expected)


async def test_omitted_ack_policy_means_none(nc: Client, stream_s: None) -> None:
    reply = await create_ok(nc, "CREATE.S.n4", {})
    # ack none: no ack_wait and no max_ack_pending are echoed
    assert config_of(reply) == {
        "name": "n4",
        "deliver_policy": "all",
        "ack_policy": "none",
        "max_deliver": -1,
        "replay_policy": "instant",
        "max_waiting": 512,
        "inactive_threshold": S5,
        "num_replicas": 0,
    }


async def test_legacy_ephemeral_gets_a_random_name(nc: Client, stream_s: None) -> None:
    reply = await create_ok(nc, "CREATE.S", {"ack_policy": "explicit"})
    assert re.fullmatch(r"[A-Za-z0-9]{8}", reply["name"]), reply["name"]
    expected = dict(PULL_EPHEMERAL)
    del expected["name"]  # the generated name is not written back into the echoed config
    assert config_of(reply) == expected
    assert (await consumer_info(nc, "S", reply["name"]))["name"] == reply["name"]
    named = await create_ok(nc, "CREATE.S", {"name": "eph1", "ack_policy": "explicit"})
    assert (named["name"], config_of(named)) == ("eph1", {**PULL_EPHEMERAL, "name": "eph1"})
    assert sorted(await names(nc)) == sorted([reply["name"], "eph1"])


async def test_push_consumer_defaults(nc: Client, stream_s: None) -> None:
    reply = await create_ok(nc, "CREATE.S.p1", {"ack_policy": "explicit", "deliver_subject": "dlv.p1"})
    expected = {**PULL_EPHEMERAL, "name": "p1", "deliver_subject": "dlv.p1"}
    del expected["max_waiting"]  # push consumers have no waiting requests
    assert config_of(reply) == expected
    assert "push_bound" not in reply  # nobody listens on dlv.p1


async def test_filter_in_the_create_subject(nc: Client, js: JetStreamContext, stream_s: None) -> None:
    await publish_n(js, ["s.a", "s.b", "s.a"])
    one = await create_ok(nc, "CREATE.S.n6.s.a", {"filter_subject": "s.a"})
    assert (one["name"], one["config"]["filter_subject"], one["num_pending"]) == ("n6", "s.a", 2)
    wild = await create_ok(nc, "CREATE.S.n10.s.>", {"filter_subject": "s.>"})
    assert (wild["name"], wild["config"]["filter_subject"], wild["num_pending"]) == ("n10", "s.>", 3)


async def test_name_in_subject_wins_over_config_name(nc: Client, stream_s: None) -> None:
    # 2.15.1 never answers 10132 ("Consumer Durable and Name have to be equal if both are provided") on these
    # subject forms: the name from the subject replaces config.name before that check.
    for suffix, durable in [("CREATE.S.n5", "n5"), ("DURABLE.CREATE.S.d7", "d7"), ("CREATE.S.d3.s.a", "d3")]:
        config: dict[str, Any] = {"name": "other", "durable_name": durable}
        if suffix.endswith("s.a"):
            config["filter_subject"] = "s.a"
        reply = await create_ok(nc, suffix, config)
        assert (reply["name"], reply["config"]["name"], reply["config"]["durable_name"]) == (durable, durable, durable)
    assert await names(nc) == ["d3", "d7", "n5"]


async def test_nats_py_add_consumer_gets_server_defaults(js: JetStreamContext, stream_s: None) -> None:
    ci = await js.add_consumer("S", durable_name="py", ack_policy=AckPolicy.EXPLICIT)  # sends ack_wait 0 etc.
    assert (ci.name, ci.config.durable_name, ci.config.ack_policy) == ("py", "py", AckPolicy.EXPLICIT)
    cfg = ci.config
    assert (cfg.ack_wait, cfg.max_deliver, cfg.max_waiting, cfg.max_ack_pending) == (30.0, -1, 512, 1000)
    assert (cfg.replay_policy, cfg.inactive_threshold, cfg.num_replicas) == (ReplayPolicy.INSTANT, None, 0)
    assert (ci.num_pending, ci.num_waiting, ci.delivered.consumer_seq) == (0, 0, 0)


@pytest.mark.parametrize(
    ("suffix", "config", "expected"),
    [
        ("CREATE.S", {"durable_name": "d"}, 10020),
        ("CREATE.S", {"name": "x", "durable_name": "x"}, 10020),
        ("CREATE.S.n3", {"durable_name": "x"}, 10017),
        ("CREATE.S.n3", {"name": "x", "durable_name": "y"}, 10017),
        ("DURABLE.CREATE.S.dd", {"durable_name": "zz"}, 10017),
        ("DURABLE.CREATE.S.dd", {}, 10018),
        ("DURABLE.CREATE.S.dd", {"name": "dd"}, 10018),
        ("CREATE.S.n7.s.a", {"filter_subject": "s.b"}, 10131),
        ("CREATE.S.n8.s.a", {}, 10131),
        ("CREATE.S.n9.s.a", {"filter_subjects": ["s.a"]}, 10137),
    ],
)
async def test_subject_form_rules(nc: Client, stream_s: None, suffix: str, config: Any, expected: int) -> None:
    texts = {
        10017: "consumer name in subject does not match durable name in request",
        10018: "consumer expected to be durable but a durable name was not set",
        10020: "consumer expected to be ephemeral but a durable name was set in request",
        10131: "Consumer create request did not match filtered subject from create subject",
        10137: "consumer with multiple subject filters cannot use subject based API",
    }
    reply = await create(nc, suffix, config)
    assert reply["type"] == CREATE_TYPE
    assert error_of(reply) == (400, expected, texts[expected])
    assert await names(nc) == []


@pytest.mark.parametrize(
    "body",
    [{"stream_name": "T", "config": {}}, {"config": {}}, b""],
    ids=["other-stream", "no-stream-name", "empty-body"],
)
async def test_stream_name_must_match_the_subject(nc: Client, stream_s: None, body: Any) -> None:
    reply = await api(nc, f"{C}CREATE.S.n11", body)
    assert error_of(reply) == (400, 10056, "stream name in subject does not match request")
    assert await names(nc) == []


@pytest.mark.parametrize("suffix", ["CREATE.X", "CREATE.X.n", "CREATE.X.n.x.a", "DURABLE.CREATE.X.n"])
async def test_create_on_unknown_stream(nc: Client, stream_s: None, suffix: str) -> None:
    config = (
        {"durable_name": "n"} if suffix.startswith("DURABLE") else {"filter_subject": "x.a"} if "x.a" in suffix else {}
    )
    assert error_of(await create(nc, suffix, config, stream="X")) == NO_STREAM


@pytest.mark.parametrize(
    "body",
    [
        b"{bad",
        b'{"stream_name": "S", "config": {"ack_policy": "bogus"}}',
        b'{"stream_name": "S", "config": {"ack_wait": "x"}}',
        b'{"stream_name": "S", "config": {}, "action": "bogus"}',
        b'{"stream_name": "S", "config": {"foo": 1}}',
        b'{"stream_name": "S", "config": {}, "foo": 1}',
    ],
    ids=["syntax", "bad-enum", "bad-type", "bad-action", "unknown-config-field", "unknown-request-field"],
)
async def test_create_with_bad_json(nc: Client, stream_s: None, body: bytes) -> None:
    reply = await api(nc, f"{C}CREATE.S.c", body)
    assert reply["type"] == CREATE_TYPE
    code, err_code, description = error_of(reply)
    assert (code, err_code) == (400, 10025)  # the decoder's text after the prefix differs (Go vs Python)
    assert description.startswith("invalid JSON: ")
    assert await names(nc) == []


@pytest.mark.parametrize(
    ("suffix", "config"),
    [
        ("CREATE.S", {"name": "a.b"}),
        ("CREATE.S", {"name": "a*"}),
        ("CREATE.S.bad*", {}),
        ("CREATE.S.bad>", {}),
        ("DURABLE.CREATE.S.x*", {"durable_name": "x*"}),
    ],
    ids=["legacy-dot", "legacy-star", "subject-star", "subject-gt", "durable-star"],
)
async def test_bad_consumer_names(nc: Client, stream_s: None, suffix: str, config: Any) -> None:
    assert error_of(await create(nc, suffix, config)) == (500, 10052, NAME_CHARS)
    assert await names(nc) == []


# --------------------------------------------------------------------------------------------------- validation


POLICY = "consumer delivery policy is deliver "
T0 = "2024-01-01T00:00:00Z"
E = "explicit"


def bad(config: dict[str, Any], err_code: int, text: str, name: str) -> Any:
    return pytest.param(config, err_code, text, id=name)


BAD_CONFIGS = [
    bad({"deliver_policy": "by_start_sequence"}, 10094,
        POLICY + "by start sequence, but optional start sequence is not set", "by-seq"),
    bad({"deliver_policy": "by_start_time"}, 10094,
        POLICY + "by start time, but optional start time is not set", "by-time"),
    bad({"opt_start_seq": 3}, 10094, POLICY + "all, but optional start sequence is also set", "all-with-seq"),
    bad({"opt_start_time": T0}, 10094, POLICY + "all, but optional start time is also set", "all-with-time"),
    bad({"deliver_policy": "new", "opt_start_seq": 3}, 10094,
        POLICY + "new, but optional start sequence is also set", "new-with-seq"),
    bad({"deliver_policy": "by_start_sequence", "opt_start_seq": 3, "opt_start_time": T0}, 10094,
        POLICY + "by start sequence, but optional start time is also set", "by-seq-with-time"),
    bad({"deliver_policy": "last_per_subject"}, 10094,
        POLICY + "last per subject, but optional filter subject is not set", "last-per-subject-unfiltered"),
    bad({"ack_policy": E, "backoff": [SECOND, 2 * SECOND], "max_deliver": 1}, 10116,
        "max deliver is required to be > length of backoff values", "backoff-vs-max-deliver"),
    bad({"ack_policy": E, "ack_wait": -1}, 10183, "consumer ack wait needs to be positive", "negative-ack-wait"),
    bad({"ack_policy": E, "backoff": [-1]}, 10184, "consumer backoff needs to be positive", "negative-backoff"),
    bad({"deliver_subject": "dlv", "idle_heartbeat": 50_000_000}, 10083,
        "consumer idle heartbeat needs to be >= 100ms", "small-heartbeat"),
    bad({"idle_heartbeat": SECOND}, 10088, "consumer idle heartbeat requires a push based consumer", "pull-heartbeat"),
    bad({"flow_control": True}, 10089, "consumer flow control requires a push based consumer", "pull-flow-control"),
    bad({"deliver_subject": "dlv", "flow_control": True}, 10108,
        "consumer with flow control also needs heartbeats", "flow-control-without-heartbeat"),
    bad({"deliver_subject": "dlv", "max_waiting": 10}, 10080,
        "consumer in push mode can not set max waiting", "push-max-waiting"),
    bad({"deliver_subject": "dlv.*"}, 10079, "consumer deliver subject has wildcards", "deliver-star"),
    bad({"deliver_subject": "dlv.>"}, 10079, "consumer deliver subject has wildcards", "deliver-gt"),
    bad({"deliver_subject": "s.x"}, 10081, "consumer deliver subject forms a cycle", "deliver-cycle"),
    bad({"deliver_subject": "dlv", "max_ack_pending": 5}, 10082,
        "consumer requires ack policy for max ack pending", "push-ack-none-max-ack-pending"),
    bad({"rate_limit_bps": 5}, 10086, "consumer in pull mode can not have rate limit set", "pull-rate-limit"),
    bad({"filter_subject": "s.a", "filter_subjects": ["s.b"]}, 10136,
        "consumer cannot have both FilterSubject and FilterSubjects specified", "filter-and-filters"),
    bad({"filter_subjects": ["s.a", "s.*"]}, 10138, "consumer subject filters cannot overlap", "overlapping-filters"),
    bad({"filter_subjects": ["s.a", ""]}, 10139, "consumer filter in FilterSubjects cannot be empty", "empty-filter"),
    bad({"description": "x" * 4097}, 10107,
        "consumer description is too long, maximum allowed is 4096", "long-description"),
]  # fmt: skip


@pytest.mark.parametrize(("config", "err_code", "text"), BAD_CONFIGS)
async def test_invalid_config(nc: Client, stream_s: None, config: Any, err_code: int, text: str) -> None:
    assert error_of(await create(nc, "CREATE.S.c1", config)) == (400, err_code, text)
    assert await names(nc) == []


async def test_valid_edge_configs(nc: Client, stream_s: None) -> None:
    backoff = await create_ok(
        nc, "CREATE.S.b", {"ack_policy": "explicit", "backoff": [SECOND, 2 * SECOND], "max_deliver": 2}
    )
    # ack_wait becomes the first backoff value
    assert {k: backoff["config"][k] for k in ("ack_wait", "backoff", "max_deliver")} == {
        "ack_wait": SECOND,
        "backoff": [SECOND, 2 * SECOND],
        "max_deliver": 2,
    }
    lps = await create_ok(nc, "CREATE.S.l", {"deliver_policy": "last_per_subject", "filter_subject": "s.>"})
    assert lps["config"]["deliver_policy"] == "last_per_subject"
    by_time = await create_ok(
        nc, "CREATE.S.t", {"deliver_policy": "by_start_time", "opt_start_time": "2024-01-01T00:00:00.5Z"}
    )
    assert by_time["config"]["opt_start_time"] == "2024-01-01T00:00:00.5Z"
    filters = await create_ok(nc, "CREATE.S.f", {"ack_policy": "explicit", "filter_subjects": ["s.a", "s.b"]})
    assert filters["config"]["filter_subjects"] == ["s.a", "s.b"] and "filter_subject" not in filters["config"]


# --------------------------------------------------------------------------------------------------- workqueue


@pytest.fixture
async def stream_w(js: JetStreamContext) -> None:
    await js.add_stream(name="W", subjects=["w.>"], retention="workqueue")


async def wq(nc: Client, name: str, **config: Any) -> dict[str, Any]:
    return await create(nc, f"CREATE.W.{name}", {"ack_policy": "explicit", **config}, stream="W")


NOT_ALL = (400, 10101, "consumer must be deliver all on workqueue stream")
PULL_ACK = (400, 10084, "consumer in pull mode requires explicit ack policy on workqueue stream")
WQ_EXPLICIT = (400, 10098, "workqueue stream requires explicit ack")


async def test_workqueue_policy_rules(nc: Client, stream_w: None) -> None:
    assert error_of(await wq(nc, "w", deliver_policy="last")) == NOT_ALL
    assert error_of(await wq(nc, "w", ack_policy="none")) == PULL_ACK
    assert error_of(await wq(nc, "w", ack_policy="all")) == WQ_EXPLICIT
    assert error_of(await wq(nc, "w", ack_policy="none", deliver_subject="wdlv")) == WQ_EXPLICIT
    assert await names(nc, "W") == []


UNFILTERED = (400, 10099, "multiple non-filtered consumers not allowed on workqueue stream")
NOT_UNIQUE = (400, 10100, "filtered consumer not unique on workqueue stream")


async def test_workqueue_unfiltered_consumers(nc: Client, stream_w: None) -> None:
    assert "error" not in await wq(nc, "w1")
    assert error_of(await wq(nc, "w2")) == UNFILTERED
    assert error_of(await wq(nc, "w2", filter_subject="w.a")) == NOT_UNIQUE  # overlaps the unfiltered one
    assert (await api(nc, f"{C}DELETE.W.w1"))["success"] is True
    assert "error" not in await wq(nc, "w2", filter_subject="w.a")
    assert await names(nc, "W") == ["w2"]


async def test_workqueue_overlapping_filters(nc: Client, stream_w: None) -> None:
    assert "error" not in await wq(nc, "w1", filter_subject="w.a")
    assert error_of(await wq(nc, "w2")) == UNFILTERED
    assert error_of(await wq(nc, "w2", filter_subject="w.*")) == NOT_UNIQUE
    assert error_of(await wq(nc, "w2", filter_subjects=["w.c", "w.a"])) == NOT_UNIQUE
    assert "error" not in await wq(nc, "w2", filter_subject="w.b")
    assert await names(nc, "W") == ["w1", "w2"]


# --------------------------------------------------------------------------------------------------- update / action

BASE = {"durable_name": "u", "ack_policy": "explicit"}


async def test_update_changes_what_may_change(nc: Client, stream_s: None) -> None:
    created = await create_ok(nc, "CREATE.S.u", BASE)
    changes = {
        "description": "changed", "ack_wait": 5 * SECOND, "max_deliver": 7, "max_ack_pending": 50,
        "filter_subject": "s.a", "headers_only": True, "metadata": {"a": "b"}, "max_batch": 5,
        "max_expires": 5 * SECOND, "max_bytes": 1000, "inactive_threshold": 60 * SECOND, "sample_freq": "50%",
    }  # fmt: skip
    updated = await create_ok(nc, "CREATE.S.u", {**BASE, **changes}, action="update")
    expected = {**config_of(created), **changes}
    assert config_of(updated) == expected
    info = await consumer_info(nc, "S", "u")
    assert (config_of(info), info["created"]) == (expected, created["created"])


async def test_push_deliver_subject_and_rate_limit_may_change(nc: Client, stream_s: None) -> None:
    base = {**BASE, "deliver_subject": "pdlv", "idle_heartbeat": SECOND, "flow_control": True}
    await create_ok(nc, "CREATE.S.u", base)
    updated = await create_ok(nc, "CREATE.S.u", {**base, "deliver_subject": "pdlv2", "rate_limit_bps": 1000})
    assert (updated["config"]["deliver_subject"], updated["config"]["rate_limit_bps"]) == ("pdlv2", 1000)


PUSH_HB = {**BASE, "deliver_subject": "pdlv", "idle_heartbeat": SECOND, "flow_control": True}
PUSH = {**BASE, "deliver_subject": "pdlv"}
BY_SEQ = "by_start_sequence"
FIXED: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("ack-policy", BASE, {"ack_policy": "all"}, "ack policy can not be updated"),
    ("deliver-policy", BASE, {"deliver_policy": "new"}, "deliver policy can not be updated"),
    ("start-seq", BASE, {"deliver_policy": BY_SEQ, "opt_start_seq": 2}, "deliver policy can not be updated"),
    ("replay-policy", BASE, {"replay_policy": "original"}, "replay policy can not be updated"),
    ("max-waiting", BASE, {"max_waiting": 10}, "max waiting can not be updated"),
    ("mem-storage", BASE, {"mem_storage": True}, "storage type can not be updated"),
    ("pull-to-push", BASE, {"deliver_subject": "xx"}, "can not update pull consumer to push based"),
    ("heartbeat", PUSH_HB, {"idle_heartbeat": 2 * SECOND}, "heart beats can not be updated"),
    ("flow-control", PUSH_HB, {"flow_control": False}, "flow control can not be updated"),
    ("push-to-pull", PUSH, {"deliver_subject": None}, "can not update push consumer to pull based"),
]  # fmt: skip


@pytest.mark.parametrize(("base", "change", "text"), [f[1:] for f in FIXED], ids=[f[0] for f in FIXED])
async def test_update_refuses_fixed_fields(nc: Client, stream_s: None, base: Any, change: Any, text: str) -> None:
    created = await create_ok(nc, "CREATE.S.u", base)
    config = {k: v for k, v in {**base, **change}.items() if v is not None}
    for action in ({}, {"action": "update"}):
        reply = await create(nc, "CREATE.S.u", config, **action)
        assert error_of(reply) == (500, 10012, text)
    assert config_of(await consumer_info(nc, "S", "u")) == config_of(created)


async def test_create_and_update_actions(nc: Client, stream_s: None) -> None:
    assert error_of(await create(nc, "CREATE.S.u", BASE, action="update")) == (400, 10149, "consumer does not exist")
    assert await names(nc) == []
    first = await create_ok(nc, "CREATE.S.u", BASE, action="create")
    again = await create_ok(nc, "CREATE.S.u", BASE, action="create")  # identical config: just the info
    assert (again["created"], config_of(again)) == (first["created"], config_of(first))
    exists = (400, 10148, "consumer already exists")
    assert error_of(await create(nc, "CREATE.S.u", {**BASE, "description": "v2"}, action="create")) == exists
    durable_form = await create(nc, "DURABLE.CREATE.S.u", {**BASE, "description": "v2"}, action="create")
    assert error_of(durable_form) == exists
    assert "description" not in (await consumer_info(nc, "S", "u"))["config"]
    for suffix, text, action in [
        ("CREATE.S.u", "v2", "update"),
        ("CREATE.S.u", "v3", ""),
        ("DURABLE.CREATE.S.u", "v4", ""),
    ]:
        reply = await create_ok(nc, suffix, {**BASE, "description": text}, action=action)  # "" = create or update
        assert reply["config"]["description"] == text


# --------------------------------------------------------------------------------------------------- info, names, list


async def test_info_and_delete_of_missing_consumers(nc: Client, js: JetStreamContext, stream_s: None) -> None:
    for verb, kind in (("INFO", "consumer_info_response"), ("DELETE", "consumer_delete_response")):
        missing = await api(nc, f"{C}{verb}.S.nope")
        assert (missing["type"], error_of(missing)) == (f"{API_V1}{kind}", NOT_FOUND)
        assert error_of(await api(nc, f"{C}{verb}.X.nope")) == NO_STREAM
    assert await api_error(js.consumer_info("S", "nope")) == ("NotFoundError", 404, 10014, "consumer not found")
    with pytest.raises(NotFoundError):
        await js.delete_consumer("S", "nope")


async def test_delete_then_info(nc: Client, js: JetStreamContext, stream_s: None) -> None:
    await create_ok(nc, "DURABLE.CREATE.S.gone", {"durable_name": "gone", "ack_policy": "explicit"})
    reply = await api(nc, f"{C}DELETE.S.gone")
    assert reply == {"type": API_V1 + "consumer_delete_response", "success": True}
    assert error_of(await api(nc, f"{C}INFO.S.gone")) == NOT_FOUND
    assert error_of(await api(nc, f"{C}DELETE.S.gone")) == NOT_FOUND
    assert await names(nc) == []
    await create_ok(nc, "DURABLE.CREATE.S.gone", {"durable_name": "gone", "ack_policy": "explicit"})
    assert await js.delete_consumer("S", "gone") is True


async def test_names_and_list(nc: Client, js: JetStreamContext, stream_s: None) -> None:
    for verb, kind, limit in (("NAMES", "names", 1024), ("LIST", "list", 256)):
        empty = await api(nc, f"{C}{verb}.S", b"")
        assert empty == {
            "type": f"{API_V1}consumer_{kind}_response",
            "total": 0,
            "offset": 0,
            "limit": limit,
            "consumers": [],
        }
    for name in ["zeta", "alpha", "mid"]:
        await create_ok(nc, f"DURABLE.CREATE.S.{name}", {"durable_name": name, "ack_policy": "explicit"})
    page = await api(nc, f"{C}NAMES.S", b"")
    assert (page["total"], page["offset"], page["limit"], page["consumers"]) == (3, 0, 1024, ["alpha", "mid", "zeta"])
    page = await api(nc, f"{C}NAMES.S", {"offset": 1})
    assert (page["total"], page["offset"], page["consumers"]) == (3, 1, ["mid", "zeta"])
    listed = await api(nc, f"{C}LIST.S", {})
    assert (listed["total"], listed["offset"], listed["limit"]) == (3, 0, 256)
    assert [(c["stream_name"], c["name"], c["config"]["durable_name"]) for c in listed["consumers"]] == [
        ("S", "alpha", "alpha"),
        ("S", "mid", "mid"),
        ("S", "zeta", "zeta"),
    ]
    listed = await api(nc, f"{C}LIST.S", {"offset": 2})
    assert (listed["total"], listed["offset"], [c["name"] for c in listed["consumers"]]) == (3, 2, ["zeta"])
    assert [ci.name for ci in await js.consumers_info("S")] == ["alpha", "mid", "zeta"]


@pytest.mark.parametrize(("verb", "kind"), [("NAMES", "consumer_names_response"), ("LIST", "consumer_list_response")])
async def test_names_and_list_of_unknown_stream(nc: Client, stream_s: None, verb: str, kind: str) -> None:
    reply = await api(nc, f"{C}{verb}.X", b"")
    assert reply == {
        "type": f"{API_V1}{kind}",
        "error": {"code": 404, "err_code": 10059, "description": "stream not found"},
        "total": 0,
        "offset": 0,
        "limit": 0,
        "consumers": [],
    }


# --------------------------------------------------------------------------------------------------- info numbers


async def test_info_numbers_follow_deliveries_and_acks(nc: Client, js: JetStreamContext, stream_s: None) -> None:
    await publish_n(js, ["s.1", "s.2", "s.3", "s.4", "s.5"])
    await create_ok(nc, "DURABLE.CREATE.S.d", {"durable_name": "d", "ack_policy": "explicit"})

    async def state() -> dict[str, Any]:
        return numbers(await consumer_info(nc, "S", "d"))

    def expect(
        dl: tuple[int, int], floor: tuple[int, int], ack_pending: int, redelivered: int, waiting: int, pending: int
    ) -> dict[str, Any]:
        return {
            "delivered": {"consumer_seq": dl[0], "stream_seq": dl[1]},
            "ack_floor": {"consumer_seq": floor[0], "stream_seq": floor[1]},
            "num_ack_pending": ack_pending,
            "num_redelivered": redelivered,
            "num_waiting": waiting,
            "num_pending": pending,
        }  # fmt: skip

    assert await state() == expect((0, 0), (0, 0), 0, 0, 0, 5)
    inbox = await open_inbox(nc)
    await inbox.next_request("S", "d", {"batch": 3})
    m1, m2, m3 = await inbox.take(3)
    assert await state() == expect((3, 3), (0, 0), 3, 0, 0, 2)
    await nc.request(m1.reply, b"+ACK", timeout=2)
    await nc.request(m2.reply, b"-NAK", timeout=2)
    assert await state() == expect((3, 3), (1, 1), 2, 0, 0, 2)
    await inbox.next_request("S", "d", {"batch": 1})
    again = await inbox.get()
    assert delivery(again) == ("s.2", b"x", 2, 2, 4, 2)  # a redelivery gets a new consumer sequence
    assert await state() == expect((4, 3), (1, 1), 2, 1, 0, 2)
    await nc.request(again.reply, b"", timeout=2)
    assert await state() == expect((4, 3), (2, 2), 1, 0, 0, 2)
    await nc.request(m3.reply, b"+TERM", timeout=2)
    assert await state() == expect((4, 3), (4, 3), 0, 0, 0, 2)
    await inbox.next_request("S", "d", {"batch": 5, "expires": 3 * SECOND})  # gets 2, stays open for 3 more
    assert [delivery(m)[3:5] for m in await inbox.take(2)] == [(4, 5), (5, 6)]
    assert await state() == expect((6, 5), (4, 3), 2, 0, 1, 0)
    ci = await js.consumer_info("S", "d")  # the same through nats-py's dataclasses
    assert (ci.delivered.consumer_seq, ci.delivered.stream_seq, ci.ack_floor.stream_seq) == (6, 5, 3)
    assert (ci.num_ack_pending, ci.num_redelivered, ci.num_waiting, ci.num_pending) == (2, 0, 1, 0)


# --------------------------------------------------------------------------------------------------- pause


async def test_pause_and_resume(nc: Client, stream_s: None) -> None:
    await create_ok(nc, "DURABLE.CREATE.S.p", {"durable_name": "p", "ack_policy": "explicit"})
    until = in_an_hour()
    paused = await api(nc, f"{C}PAUSE.S.p", {"pause_until": until})
    assert (paused["type"], paused["paused"], paused["pause_until"]) == (PAUSE_TYPE, True, until)
    assert 3500 * SECOND < paused["pause_remaining"] <= 3600 * SECOND
    info = await consumer_info(nc, "S", "p")
    assert (info["paused"], info["config"]["pause_until"]) == (True, until)
    assert 3500 * SECOND < info["pause_remaining"] <= 3600 * SECOND
    resumed = await api(nc, f"{C}PAUSE.S.p", b"")
    assert resumed == {"type": PAUSE_TYPE, "paused": False, "pause_until": ZERO_TIME}
    info = await consumer_info(nc, "S", "p")
    assert "paused" not in info and "pause_remaining" not in info and "pause_until" not in info["config"]


async def test_pause_until_a_past_time(nc: Client, js: JetStreamContext, stream_s: None) -> None:
    await create_ok(nc, "DURABLE.CREATE.S.p", {"durable_name": "p", "ack_policy": "explicit"})
    await api(nc, f"{C}PAUSE.S.p", {"pause_until": in_an_hour()})
    resumed = await js.resume_consumer("S", "p")  # nats-py resumes by pausing until 1970-01-01
    assert (resumed.paused, resumed.pause_until, resumed.pause_remaining) == (False, "1970-01-01T00:00:00Z", None)
    past = await api(nc, f"{C}PAUSE.S.p", {"pause_until": "2020-01-01T00:00:00Z"})
    assert (past["paused"], past["pause_until"], "pause_remaining" in past) == (False, "2020-01-01T00:00:00Z", False)
    info = await consumer_info(nc, "S", "p")  # the past time is kept in the config, the consumer is not paused
    assert ("paused" in info, info["config"].get("pause_until")) == (False, "2020-01-01T00:00:00Z")


async def test_paused_consumer_does_not_deliver(nc: Client, js: JetStreamContext, stream_s: None) -> None:
    await publish_n(js, ["s.a", "s.b"])
    await create_ok(nc, "DURABLE.CREATE.S.p", {"durable_name": "p", "ack_policy": "explicit"})
    await api(nc, f"{C}PAUSE.S.p", {"pause_until": in_an_hour()})
    inbox = await open_inbox(nc)
    await inbox.next_request("S", "p", {"batch": 1, "no_wait": True})
    assert await inbox.status(timeout=1.0) == ("404", "No Messages", {})
    await inbox.next_request("S", "p", {"batch": 1, "expires": 200_000_000})
    assert await inbox.status() == ("408", "Request Timeout", {"Nats-Pending-Messages": "1", "Nats-Pending-Bytes": "0"})
    assert numbers(await consumer_info(nc, "S", "p"))["num_waiting"] == 0
    await api(nc, f"{C}PAUSE.S.p", b"")
    await inbox.next_request("S", "p", {"batch": 1, "no_wait": True})
    assert delivery(await inbox.get()) == ("s.a", b"x", 1, 1, 1, 1)
    await inbox.quiet(0.2)


async def test_create_paused_and_pause_errors(nc: Client, stream_s: None) -> None:
    until = in_an_hour()
    reply = await create_ok(nc, "DURABLE.CREATE.S.p", {"durable_name": "p", "pause_until": until})
    assert (reply["paused"], reply["config"]["pause_until"], reply["pause_remaining"] > 0) == (True, until, True)
    assert error_of(await api(nc, f"{C}PAUSE.S.nope", {"pause_until": until})) == NOT_FOUND
    assert error_of(await api(nc, f"{C}PAUSE.X.nope", {"pause_until": until})) == NO_STREAM
    bad = await api(nc, f"{C}PAUSE.S.p", b"{bad")
    code, err_code, description = error_of(bad)
    assert (bad["type"], code, err_code) == (PAUSE_TYPE, 400, 10025)
    assert description.startswith("invalid JSON: ")  # decoder text differs (Go vs Python)
