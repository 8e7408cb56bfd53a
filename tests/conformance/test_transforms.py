"""Differential conformance: a stream's subject_transform and republish (config rules, stored subjects, the
republished copies and their Nats-* headers), JetStream vs streamd."""

from __future__ import annotations

from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import KeyValueConfig, RePublish, SubjectTransform

from streamd.wire import transform
from tests.conformance.util import api
from tests.helpers import wait_for

ST, RP = "subject_transform", "republish"
T_FG = {"src": "f.>", "dest": "g.>"}
# (config fields added to {"name": "F", "subjects": ["f.>"]}, what the real server answers: the echoed
# subject_transform / republish, or its error (code, err_code, description; None: not compared)).
CONFIGS: list[tuple[dict[str, Any], Any]] = [
    ({ST: {"src": "f.*", "dest": "g.{{wildcard(1)}}"}}, {ST: {"src": "f.*", "dest": "g.{{wildcard(1)}}"}}),
    ({ST: {"src": "", "dest": "g.>"}}, {ST: {"src": "", "dest": "g.>"}}),
    ({ST: {"src": "f.*", "dest": ""}}, {ST: {"src": "f.*", "dest": ""}}),
    ({ST: {}}, {ST: {"src": "", "dest": ""}}),
    ({ST: {"src": "f.*", "dest": "g.{{left(1,2)}}"}}, {ST: {"src": "f.*", "dest": "g.{{left(1,2)}}"}}),
    ({ST: {"src": "f.*", "dest": "g.{{partition(3,1)}}.{{split(1,-)}}"}}, "ok"),
    ({ST: {"src": "f..x", "dest": "g"}}, (400, 10155, "stream transform source: invalid subject f..x")),
    ({ST: {"src": "f x", "dest": "g"}}, (400, 10155, "stream transform source: invalid subject f x")),
    ({ST: {"src": "f.*", "dest": "g.*"}}, (400, 10156, "stream transform: invalid subject")),
    (
        {ST: {"src": "f.*", "dest": "g.$2"}},
        (400, 10156, "stream transform: invalid mapping destination: wildcard index out of range in $2: [2]"),
    ),
    (
        {ST: {"src": "f.*", "dest": "g.{{nope(1)}}"}},
        (400, 10156, "stream transform: invalid mapping destination: unknown function in {{nope(1)}}"),
    ),
    (
        {ST: {"src": "f.*", "dest": "g..h"}},
        (400, 10156, "stream transform: invalid mapping destination: invalid transform"),
    ),
    (
        {ST: {"src": "f.>", "dest": "g.>.h"}},
        (400, 10156, "stream transform: invalid mapping destination: invalid transform in h"),
    ),
    (
        {ST: {"src": "f.*", "dest": "g h.$1"}},
        (400, 10156, "stream transform: invalid mapping destination: invalid transform"),
    ),
    (
        {ST: {"src": "f.*", "dest": "g.{{wildcard(1,2)}}"}},
        (
            400,
            10156,
            "stream transform: invalid mapping destination: too many arguments passed to the function in "
            "{{wildcard(1,2)}}",
        ),
    ),
    ({ST: {"src": "f.*", "dest": "g.$1", "x": 1}}, (400, 10025, 'invalid JSON: json: unknown field "x"')),
    ({RP: {"src": "f.>", "dest": "r.>"}}, {RP: {"src": "f.>", "dest": "r.>"}}),
    ({RP: {"dest": "r.>"}}, {RP: {"src": ">", "dest": "r.>"}}),
    (
        {RP: {"src": "f.>", "dest": "r.>", "headers_only": True}},
        {RP: {"src": "f.>", "dest": "r.>", "headers_only": True}},
    ),
    ({RP: {"src": "f.>", "dest": "r.>", "headers_only": False}}, {RP: {"src": "f.>", "dest": "r.>"}}),
    ({RP: {}}, {RP: {"src": ">", "dest": ""}}),
    (
        {RP: {"src": "f.>", "dest": "f.x.>"}},
        (500, 10052, "stream configuration for republish destination forms a cycle"),
    ),
    ({RP: {"src": ">", "dest": ">"}}, (500, 10052, "stream configuration for republish destination forms a cycle")),
    (
        {RP: {"src": "f.*", "dest": "r.*"}},
        (500, 10052, "stream configuration for republish with transform from 'f.*' to 'r.*' not valid"),
    ),
    (
        {RP: {"src": "f.*", "dest": "r.$3"}},
        (500, 10052, "stream configuration for republish with transform from 'f.*' to 'r.$3' not valid"),
    ),
    ({RP: {"src": "f.>", "dest": "r.>", "x": 1}}, (400, 10025, 'invalid JSON: json: unknown field "x"')),
    ({ST: {"src": None, "dest": "g.>"}}, {ST: {"src": "", "dest": "g.>"}}),
    ({ST: {"src": "f.>", "dest": None}}, {ST: {"src": "f.>", "dest": ""}}),
    ({ST: {"src": "f.*", "dest": "g.{{ left (1, 2) }}"}}, "ok"),
    ({ST: {"src": "f.*", "dest": "g.{{partition(-1,1)}}.$0.{{random(3)}}"}}, "ok"),
    (
        {ST: []},
        (400, 10025, None),
    ),
    (
        {ST: {"src": 1, "dest": "g"}},
        (400, 10025, None),
    ),
    ({RP: {"src": None, "dest": "r.>", "headers_only": None}}, {RP: {"src": ">", "dest": "r.>"}}),
    ({RP: {"src": "f.>", "dest": None}}, {RP: {"src": "f.>", "dest": ""}}),
    (
        {RP: {"src": "f.>", "dest": "r.>", "headers_only": "yes"}},
        (400, 10025, None),
    ),
    ({RP: {"src": "f.>", "dest": "r x.>"}}, {RP: {"src": "f.>", "dest": "r x.>"}}),
    ({RP: {"src": "x.>", "dest": "r.>"}}, {RP: {"src": "x.>", "dest": "r.>"}}),
    (
        {RP: {"src": "f.*", "dest": "r.{{nope(1)}}"}},
        (500, 10052, "stream configuration for republish with transform from 'f.*' to 'r.{{nope(1)}}' not valid"),
    ),
    (
        {RP: {"src": "f.*", "dest": "f.{{wildcard(1)}}"}},
        (500, 10052, "stream configuration for republish destination forms a cycle"),
    ),
    (
        {RP: {"src": ">", "dest": ">"}, ST: {"src": "f.*", "dest": "g.$1"}},
        (500, 10052, "stream configuration for republish destination forms a cycle"),
    ),
    ({RP: {"src": ">", "dest": ">"}, ST: T_FG}, {ST: T_FG, RP: {"src": "g.>", "dest": "g.>"}}),
    ({RP: {"src": "f.>", "dest": "g.>"}, ST: T_FG}, {ST: T_FG, RP: {"src": "f.>", "dest": "g.>"}}),
]


async def test_transform_and_republish_configs_are_checked_as_the_server_does(nc: Client) -> None:
    seen = []
    for extra, expected in CONFIGS:
        reply = await api(nc, "$JS.API.STREAM.CREATE.F", {"name": "F", "subjects": ["f.>"], **extra})
        if "error" in reply:
            e = reply["error"]
            # A value of the wrong JSON type: streamd words only integer fields as Go's decoder does.
            description = None if expected == (400, 10025, None) else e["description"]
            seen.append((extra, (e["code"], e["err_code"], description)))
            continue
        await api(nc, "$JS.API.STREAM.DELETE.F")
        got = {k: reply["config"][k] for k in (ST, RP) if k in reply["config"]}
        seen.append((extra, "ok" if expected == "ok" else got))
    assert seen == CONFIGS


async def _collect(nc: Client, subject: str) -> tuple[list[Msg], Any]:
    got: list[Msg] = []

    async def on(msg: Msg) -> None:
        got.append(msg)

    sub = await nc.subscribe(subject, cb=on)
    await nc.flush()
    return got, sub


async def test_subject_transform_changes_the_stored_subject(nc: Client) -> None:
    cfg = {"name": "T", "subjects": ["f.>"], ST: {"src": "f.*.*", "dest": "g.{{wildcard(2)}}.$1"}}
    assert "error" not in await api(nc, "$JS.API.STREAM.CREATE.T", cfg)
    js = nc.jetstream(timeout=5)
    assert (await js.publish("f.a.b", b"1")).seq == 1
    assert (await js.publish("f.a", b"2")).seq == 2  # not matching the source: stored as published
    assert (await js.publish("f.a.b.c", b"3")).seq == 3
    stored = [(await js.get_msg("T", seq)).subject for seq in (1, 2, 3)]
    assert stored == ["g.b.a", "f.a", "f.a.b.c"]
    state = (await api(nc, "$JS.API.STREAM.INFO.T", {"subjects_filter": ">"}))["state"]
    assert state["subjects"] == {"g.b.a": 1, "f.a": 1, "f.a.b.c": 1}


async def test_republish_sends_each_stored_message_with_the_nats_headers(nc: Client) -> None:
    cfg = {"name": "R", "subjects": ["f.>"], ST: {"src": "f.x", "dest": "f.y"}, RP: {"src": "f.*", "dest": "r.$1"}}
    assert "error" not in await api(nc, "$JS.API.STREAM.CREATE.R", cfg)
    got, _ = await _collect(nc, "r.>")
    js = nc.jetstream(timeout=5)
    await js.publish("f.a", b"one", headers={"H": "1"})
    await js.publish("f.x", b"two")  # stored as f.y: republished as r.y
    await js.publish("f.a", b"three")
    await js.publish("f.a", b"three", headers={"Nats-Msg-Id": "d"})
    await js.publish("f.a", b"three", headers={"Nats-Msg-Id": "d"})  # a duplicate: not stored, not republished
    await js.publish("f.a.b", b"four")  # stored, not matching the republish source
    await wait_for(lambda: len(got) >= 4)
    await nc.flush()
    assert [(m.subject, m.data) for m in got] == [
        ("r.a", b"one"),
        ("r.y", b"two"),
        ("r.a", b"three"),
        ("r.a", b"three"),
    ]
    for seq, msg in enumerate(got, 1):
        stored = (await api(nc, "$JS.API.STREAM.MSG.GET.R", {"seq": seq}))["message"]
        expected = dict((await js.get_msg("R", seq)).headers or {})
        expected.update({"Nats-Stream": "R", "Nats-Subject": stored["subject"], "Nats-Sequence": str(seq)})
        expected["Nats-Time-Stamp"] = stored["time"]
        expected["Nats-Last-Sequence"] = {1: "0", 2: "0", 3: "1", 4: "3"}[seq]
        assert dict(msg.headers or {}) == expected


async def test_republish_headers_only_sends_the_size_not_the_payload(nc: Client) -> None:
    cfg = {"name": "H", "subjects": ["f.>"], RP: {"dest": "r.>", "headers_only": True}}
    assert "error" not in await api(nc, "$JS.API.STREAM.CREATE.H", cfg)
    got, _ = await _collect(nc, "r.>")
    js = nc.jetstream(timeout=5)
    await js.publish("f.a", b"12345")
    await wait_for(lambda: len(got) == 1)
    msg = got[0]
    assert (msg.subject, msg.data) == ("r.f.a", b"")
    assert msg.headers is not None
    assert (msg.headers["Nats-Msg-Size"], msg.headers["Nats-Sequence"], msg.headers["Nats-Subject"]) == (
        "5",
        "1",
        "f.a",
    )


async def test_republish_follows_a_config_update(nc: Client) -> None:
    cfg: dict[str, Any] = {"name": "U", "subjects": ["f.>"]}
    assert "error" not in await api(nc, "$JS.API.STREAM.CREATE.U", cfg)
    got, _ = await _collect(nc, "r.>")
    js = nc.jetstream(timeout=5)
    await js.publish("f.a", b"before")
    cfg[RP] = {"src": "f.>", "dest": "r.>"}
    cfg[ST] = {"src": "f.b", "dest": "f.c"}
    reply = await api(nc, "$JS.API.STREAM.UPDATE.U", cfg)
    assert reply["config"][RP] == cfg[RP], reply
    await js.publish("f.a", b"after")
    await js.publish("f.b", b"moved")
    await wait_for(lambda: len(got) == 2)
    assert [(m.subject, m.headers and m.headers["Nats-Last-Sequence"]) for m in got] == [("r.a", "1"), ("r.c", "0")]
    del cfg[RP], cfg[ST]
    assert RP not in (await api(nc, "$JS.API.STREAM.UPDATE.U", cfg))["config"]
    await js.publish("f.b", b"plain")
    assert (await js.get_msg("U", 4)).subject == "f.b"
    await js.publish("f.a", b"last")
    assert (await js.get_msg("U", 5)).data == b"last"
    await nc.flush()
    assert len(got) == 2


async def test_nats_py_configs_and_a_key_value_bucket_that_republishes(nc: Client) -> None:
    js = nc.jetstream(timeout=5)
    info = await js.add_stream(
        name="PY",
        subjects=["py.>"],
        subject_transform=SubjectTransform(src="py.*", dest="moved.$1"),
        republish=RePublish(src="moved.>", dest="seen.>", headers_only=False),
    )
    assert info.config.subject_transform == SubjectTransform(src="py.*", dest="moved.$1")
    assert info.config.republish == RePublish(src="moved.>", dest="seen.>")
    got, _ = await _collect(nc, "seen.>")
    assert (await js.publish("py.k", b"v")).seq == 1
    await wait_for(lambda: len(got) == 1)
    assert (got[0].subject, got[0].data) == ("seen.k", b"v")

    kv = await js.create_key_value(
        config=KeyValueConfig(bucket="B", republish=RePublish(src="$KV.B.>", dest="kv.changes.>", headers_only=True))
    )
    changes, _ = await _collect(nc, "kv.changes.>")
    await kv.put("k1", b"hello")
    await kv.delete("k1")
    await wait_for(lambda: len(changes) == 2)
    assert [c.subject for c in changes] == ["kv.changes.k1", "kv.changes.k1"]
    sizes = [(c.headers or {}).get("Nats-Msg-Size") for c in changes]
    assert sizes == ["5", "0"] and (changes[1].headers or {}).get("KV-Operation") == "DEL"
    assert [(c.headers or {}).get("Nats-Last-Sequence") for c in changes] == ["0", "1"]


async def test_a_stream_stores_what_another_republishes(nc: Client) -> None:
    js = nc.jetstream(timeout=5)
    await js.add_stream(name="A", subjects=["a.>"], republish=RePublish(src="a.>", dest="b.>"))
    await js.add_stream(name="B", subjects=["b.>"])
    await js.publish("a.x", b"payload", headers={"H": "v"})

    async def b_has_it() -> bool:
        return (await js.stream_info("B")).state.messages == 1

    await wait_for(b_has_it)
    copied = await js.get_msg("B", 1)
    assert (copied.subject, copied.data) == ("b.x", b"payload")
    assert copied.headers is not None
    assert {k: copied.headers[k] for k in ("H", "Nats-Stream", "Nats-Subject", "Nats-Sequence")} == {
        "H": "v",
        "Nats-Stream": "A",
        "Nats-Subject": "a.x",
        "Nats-Sequence": "1",
    }


# Destinations over a source of "m.*.*", each applied to every subject of SAMPLES by the real server: the stored
# subjects must be what streamd's transform module computes (on the jetstream backend this checks the module itself).
MAPPINGS = [
    "o.$2.$1",
    "o.{{wildcard(1)}}.{{partition(7,1,2)}}.{{partition(3)}}.{{partition(0,2)}}.{{partition(-1,1)}}",
    "o.{{split(1,-)}}.{{split(2,x)}}",
    "o.{{splitFromLeft(1,2)}}.{{splitFromRight(2,3)}}.{{splitFromLeft(1,0)}}",
    "o.{{sliceFromLeft(1,2)}}.{{sliceFromRight(2,3)}}.{{sliceFromLeft(2,9)}}",
    "o.{{left(1,2)}}.{{right(2,3)}}.{{left(1,0)}}.{{right(1,-2)}}",
    "o.$0.$-1.{{ Wildcard( 2 ) }}",
]
SAMPLES = ["m.a.b", "m.abcdefg.xyzxyzx", "m.-a--b-.x-xx", "m.1234567.12", "m.é.ü-ö"]


async def test_stored_subjects_are_what_the_transform_module_computes(nc: Client) -> None:
    js = nc.jetstream(timeout=5)
    cfg: dict[str, Any] = {"name": "M", "subjects": ["m.>"]}
    assert "error" not in await api(nc, "$JS.API.STREAM.CREATE.M", cfg)
    seq = 0
    for dest in MAPPINGS:
        cfg[ST] = {"src": "m.*.*", "dest": dest}
        assert "error" not in await api(nc, "$JS.API.STREAM.UPDATE.M", cfg)
        tr = transform.compile("m.*.*", dest)
        assert tr is not None
        for subject in SAMPLES:
            seq = (await js.publish(subject, b"")).seq
            assert ((await js.get_msg("M", seq)).subject, dest) == (tr.apply(subject), dest)
