"""Mirror and source config rules, diffed against nats-server -js: the same answer for every request."""

from __future__ import annotations

import json
from typing import Any

import pytest
from nats.aio.client import Client


async def _create(nc: Client, cfg: dict[str, Any]) -> dict[str, Any]:
    reply = await nc.request(f"$JS.API.STREAM.CREATE.{cfg['name']}", json.dumps(cfg).encode(), timeout=5)
    return dict(json.loads(reply.data))


REFUSED = [
    (
        {"mirror": {"name": "O", "filter_subject": "a..b"}},
        10049,
        "subject filter 'a..b' for the mirror invalid subject",
    ),
    (
        {"sources": [{"name": "O", "filter_subject": "a..b"}]},
        10049,
        "subject filter 'a..b' for the source: invalid subject",
    ),
    ({"mirror": {"name": "O", "unknown": 1}}, 10025, 'invalid JSON: json: unknown field "unknown"'),
    ({"mirror": {"name": "O"}, "subjects": ["x"]}, 10034, "stream mirrors can not contain subjects"),
    ({"mirror": {"name": "O"}, "sources": [{"name": "P"}]}, 10031, "stream mirrors can not also contain other sources"),
    ({"mirror": {"name": "O"}, "first_seq": 5}, 10143, "stream mirrors can not have first sequence configured"),
    ({"mirror": {"name": "O.x"}}, 10142, "mirrored stream name is invalid"),
    ({"mirror": {"name": ""}}, 10142, "mirrored stream name is invalid"),
    ({"sources": [{"name": "a b"}]}, 10141, "sourced stream name is invalid"),
    ({"sources": [{"name": "O"}, {"name": "O"}]}, 10140, "duplicate source configuration detected"),
    (
        {"mirror": {"name": "O", "external": {"api": "$JS.API", "deliver": ""}}},
        10021,
        "stream external api prefix $JS.API must not overlap with $JS.API",
    ),
    (
        {"sources": [{"name": "O", "external": {"api": "$JS.hub.API", "deliver": "d.*"}}]},
        10024,
        "stream external delivery prefix d.* must not contain wildcards",
    ),
    ({"mirror": {"name": "O"}, "allow_msg_counter": True}, 10173, "stream mirrors can not also calculate counters"),
    (
        {"mirror": {"name": "O"}, "subject_delete_marker_ttl": 5_000_000_000},
        10052,
        "subject delete markers forbidden on mirrors",
    ),
    (
        {"mirror": {"name": "O", "filter_subject": "a", "subject_transforms": [{"src": "b", "dest": "c"}]}},
        10150,
        "mirror with multiple subject transforms cannot also have a single subject filter",
    ),
    (
        {"mirror": {"name": "O", "subject_transforms": [{"src": "a..b", "dest": "x"}]}},
        10151,
        "mirror transform source: invalid subject a..b",
    ),
    (
        {"mirror": {"name": "O", "subject_transforms": [{"src": "a.*", "dest": "x.$2"}]}},
        10154,
        "mirror transform: invalid mapping destination: wildcard index out of range in $2: [2]",
    ),
    (
        {"mirror": {"name": "O", "subject_transforms": [{"src": "a.*", "dest": ""}, {"src": "a.b", "dest": "c"}]}},
        10152,
        "mirror subject filters can not overlap",
    ),
    (
        {"sources": [{"name": "O", "filter_subject": "a", "subject_transforms": [{"src": "b", "dest": "c"}]}]},
        10144,
        "source with multiple subject transforms cannot also have a single subject filter",
    ),
    (
        {"sources": [{"name": "O", "subject_transforms": [{"src": "a.>", "dest": "x.>"}, {"src": "a b"}]}]},
        10145,
        "source transform source: invalid subject a b",
    ),
    (
        {"sources": [{"name": "O", "subject_transforms": [{"src": "a", "dest": "{{nope(1)}}"}]}]},
        10146,
        "source transform: invalid mapping destination: unknown function in {{nope(1)}}",
    ),
    (
        {"sources": [{"name": "O", "subject_transforms": [{"src": "a.b", "dest": ""}, {"src": "a.>", "dest": "c.>"}]}]},
        10147,
        "source filters can not overlap",
    ),
    (
        {"sources": [{"name": "O", "subject_transforms": [{"src": "a", "dest": "b", "x": 1}]}]},
        10025,
        'invalid JSON: json: unknown field "x"',
    ),
]


@pytest.mark.parametrize(("extra", "err_code", "description"), REFUSED)
async def test_refused_as_the_server_refuses(
    nc: Client, extra: dict[str, Any], err_code: int, description: str
) -> None:
    answer = await _create(nc, {"name": "C", **extra})
    assert answer["error"]["err_code"] == err_code, answer
    assert answer["error"]["description"] == description


async def test_accepted_configs_echo_as_the_server_does(nc: Client) -> None:
    await _create(nc, {"name": "O", "subjects": ["o.>"], "allow_direct": True, "max_msg_size": 100})
    mirror = await _create(nc, {"name": "M", "mirror": {"name": "O", "opt_start_seq": 0, "filter_subject": ""}})
    cfg = mirror["config"]
    assert cfg["mirror"] == {"name": "O"}
    assert "subjects" not in cfg
    assert cfg["mirror_direct"] is True  # inherited from the origin's allow_direct
    assert "duplicate_window" not in cfg  # no default window on a copying stream, and Go omits the 0
    assert mirror["mirror"]["name"] == "O"
    small = await _create(nc, {"name": "M2", "mirror": {"name": "O"}, "max_msg_size": 10})
    assert small["error"]["err_code"] == 10030
    src = await _create(nc, {"name": "S", "sources": [{"name": "O", "opt_start_seq": 3}]})
    assert src["config"]["sources"] == [{"name": "O", "opt_start_seq": 3}]
    assert "subjects" not in src["config"] and "duplicate_window" not in src["config"]
    again = await _create(nc, {"name": "M", "mirror": {"name": "O", "filter_subject": "o.1"}})
    assert again["error"]["err_code"] == 10058  # a different config under the same name
    upd = await nc.request(
        "$JS.API.STREAM.UPDATE.M", json.dumps({"name": "M", "mirror": {"name": "P"}}).encode(), timeout=5
    )
    assert json.loads(upd.data)["error"]["err_code"] == 10055
    cycle = await _create(nc, {"name": "X", "subjects": ["x.>"], "sources": [{"name": "Y"}]})
    assert "error" not in cycle
    back = await _create(nc, {"name": "Y", "subjects": ["y.>"], "sources": [{"name": "X"}]})
    assert back["error"] == {"code": 500, "err_code": 10052, "description": "detected cycle"}
