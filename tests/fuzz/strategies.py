"""Hypothesis strategies for the fuzz: API subjects with asset names from a small pool, request bodies made from
valid requests with one or more fields replaced by typed garbage, pure random bytes, and publish header blocks."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

PREFIX = b"$JS.API."
STREAM, WQ_STREAM, PULL, PUSH = "FZ", "WQ", "C1", "P1"
LIVE_STREAM, LIVE_SUBJECT = "LIVE", "live.x"  # never named by the fuzz: the liveness check publishes here

# ---- asset names ---------------------------------------------------------------------------------------------

ODD_NAMES: list[bytes] = [
    b"nope",
    b"\xff",
    b"bad\xc3\x28name",
    b"\xe2\x82",
    b"\x00",
    b"n\x7fm",
    "ümlaut".encode(),
    b"*",
    b">",
    b"a*",
    b"%",
    b"$",
    b"a" * 256,
    b"b" * 2000,  # subject + reply stay under the core server's 4 KiB control-line limit
    b"two.tokens",
]
STREAM_NAMES: list[bytes] = [STREAM.encode()] * 8 + [WQ_STREAM.encode()] * 3 + ODD_NAMES
CONSUMER_NAMES: list[bytes] = [PULL.encode()] * 6 + [PUSH.encode()] * 3 + ODD_NAMES
stream_names = st.sampled_from(STREAM_NAMES)
consumer_names = st.sampled_from(CONSUMER_NAMES)

# ---- typed garbage -------------------------------------------------------------------------------------------

BIG_INTS = [0, -1, -2, 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**30]
_scalar = st.one_of(
    st.sampled_from(BIG_INTS),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=20),
    st.sampled_from(["", " ", "x" * 100_000, "fz.>", ">", "*", "A*", "x.b>c", "$JS.API.>", "1s", "-1", "1e400"]),
)
garbage: st.SearchStrategy[Any] = st.recursive(
    _scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8,
)
NON_UTF8 = "\udcff"  # stands for a raw 0xff byte, put into the encoded JSON by `encode_body`

# ---- valid request templates, per API verb --------------------------------------------------------------------

SUBJECT_POOL = ["fz.>", "fz.a", "n.1", "n.*", "A*", "x.b>c", ">", "*", "$JS.API.>", "$JS.ACK.>", "_INBOX.>", "a..b", ""]
subject_lists = st.lists(st.sampled_from(SUBJECT_POOL), max_size=3)


def stream_config(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "subjects": ["fz.>"] if name == STREAM else [f"n.{name}.>"],
        "retention": "limits",
        "storage": "file",
        "max_consumers": -1,
        "max_msgs": -1,
        "max_bytes": -1,
        "max_age": 0,
        "max_msgs_per_subject": -1,
        "max_msg_size": -1,
        "discard": "old",
        "num_replicas": 1,
        "duplicate_window": 120_000_000_000,
        "allow_direct": True,
        "allow_rollup_hdrs": True,
        "allow_msg_ttl": True,
        "allow_msg_schedules": True,
        "allow_atomic": True,
        "first_seq": 1,
        "subject_delete_marker_ttl": 0,
    }


def routed_stream_config(name: str) -> dict[str, Any]:
    """A stream config with a subject transform (every mapping function) and a headers-only republish."""
    dest = "t.{{wildcard(1)}}.{{partition(3,1)}}.{{split(1,-)}}.{{SliceFromLeft(1,2)}}.{{right(1,1)}}.$1"
    return {
        **stream_config(name),
        "subject_transform": {"src": "fz.*", "dest": dest},
        "republish": {"src": ">", "dest": "rp.>", "headers_only": True},
    }


def copying_configs(name: str) -> list[dict[str, Any]]:
    """A mirror and a sourcing stream of `name`'s stream (the origin may or may not exist: both are valid)."""
    ext = {"api": "$JS.up.API", "deliver": "up.d"}
    mirror = {"name": STREAM, "opt_start_seq": 2, "filter_subject": "fz.>", "external": ext}
    source = {"name": STREAM, "opt_start_time": "2024-01-01T00:00:00Z", "filter_subject": "fz.a"}
    return [
        {"name": name, "mirror": mirror, "max_msg_size": -1},
        {"name": name, "subjects": [f"s.{name}.>"], "sources": [source, {"name": WQ_STREAM, "external": ext}]},
        {"name": name, "mirror": {"name": STREAM, "subject_transforms": [{"src": "fz.*", "dest": "m.$1"}]}},
        {
            "name": name,
            "subjects": [f"s.{name}.>"],
            "sources": [{"name": STREAM, "subject_transforms": [{"src": "fz.a", "dest": ""}, {"src": "fz.b.>"}]}],
        },
    ]


def consumer_request(stream: str, name: str) -> dict[str, Any]:
    return {
        "stream_name": stream,
        "config": {
            "durable_name": name,
            "deliver_policy": "all",
            "ack_policy": "explicit",
            "ack_wait": 30_000_000_000,
            "max_deliver": -1,
            "filter_subject": "fz.>",
            "replay_policy": "instant",
            "max_ack_pending": 1000,
            "max_waiting": 512,
            "inactive_threshold": 0,
            "backoff": [1_000_000_000],
            "num_replicas": 0,
        },
        "action": "create",
    }


def priority_request(stream: str, name: str) -> dict[str, Any]:
    """A pull consumer with a priority group (pinned client, with its timeout)."""
    req = consumer_request(stream, name)
    req["config"] |= {"priority_policy": "pinned_client", "priority_groups": ["g"], "priority_timeout": 10**9}
    return req


def templates(verb: str, stream: str, consumer: str) -> list[Any]:
    """Valid request bodies for `verb`, one per request form ([None]: the verb takes an empty body)."""
    gets = [{"seq": 1}, {"last_by_subj": "fz.a"}, {"next_by_subj": "fz.>", "seq": 1}]
    table: dict[str, list[Any]] = {
        "STREAM.CREATE": [stream_config(stream), routed_stream_config(stream), *copying_configs(stream)],
        "STREAM.UPDATE": [stream_config(stream), routed_stream_config(stream)],
        "STREAM.INFO": [{"subjects_filter": ">", "deleted_details": True, "offset": 0}],
        "STREAM.NAMES": [{"offset": 0, "subject": "fz.>"}],
        "STREAM.LIST": [{"offset": 0, "subject": "fz.>"}],
        "STREAM.PURGE": [{"filter": "fz.a", "keep": 1}, {"seq": 2}, {"filter": "fz.>", "seq": 2}],
        "STREAM.MSG.GET": gets,
        "STREAM.MSG.DELETE": [{"seq": 1, "no_erase": True}],
        "DIRECT.GET": [*gets, {"seq": 1, "batch": 2, "max_bytes": 1000}, {"multi_last": ["fz.>"], "up_to_seq": 5}],
        "CONSUMER.CREATE": [consumer_request(stream, consumer), priority_request(stream, consumer)],
        "CONSUMER.DURABLE.CREATE": [consumer_request(stream, consumer), priority_request(stream, consumer)],
        "CONSUMER.NAMES": [{"offset": 0}],
        "CONSUMER.LIST": [{"offset": 0}],
        "CONSUMER.PAUSE": [{"pause_until": "2030-01-01T00:00:00Z"}],
        "CONSUMER.MSG.NEXT": [
            {"batch": 2, "expires": 200_000_000, "no_wait": True, "max_bytes": 0},
            {"batch": 2, "expires": 200_000_000, "group": "g", "min_pending": 1, "min_ack_pending": 1, "priority": 3},
            {"batch": 1, "expires": 200_000_000, "group": "g", "id": "x" * 22},
        ],
        "CONSUMER.RESET": [{"seq": 1}],
        "CONSUMER.UNPIN": [{"group": "g"}],
        "STREAM.SNAPSHOT": [
            {"deliver_subject": "snap.x", "chunk_size": 1024},
            {"deliver_subject": "snap.y", "no_consumers": True, "chunk_size": 1 << 40, "window_size": 1, "jsck": True},
        ],
        "STREAM.RESTORE": [{"config": stream_config(stream), "state": {}}, {"config": {"name": stream}}],
    }
    return table.get(verb, [None])


# ---- subjects --------------------------------------------------------------------------------------------------

# verb -> asset tokens after it ("S" stream, "C" consumer, "F" a filter subject, "T" a message subject)
VERBS: dict[str, tuple[str, ...]] = {
    "INFO": (),
    "STREAM.CREATE": ("S",),
    "STREAM.UPDATE": ("S",),
    "STREAM.DELETE": ("S",),
    "STREAM.INFO": ("S",),
    "STREAM.NAMES": (),
    "STREAM.LIST": (),
    "STREAM.PURGE": ("S",),
    "STREAM.MSG.GET": ("S",),
    "STREAM.MSG.DELETE": ("S",),
    "DIRECT.GET": ("S",),
    "CONSUMER.CREATE": ("S", "C"),
    "CONSUMER.DURABLE.CREATE": ("S", "C"),
    "CONSUMER.INFO": ("S", "C"),
    "CONSUMER.DELETE": ("S", "C"),
    "CONSUMER.NAMES": ("S",),
    "CONSUMER.LIST": ("S",),
    "CONSUMER.PAUSE": ("S", "C"),
    "CONSUMER.MSG.NEXT": ("S", "C"),
    "CONSUMER.RESET": ("S", "C"),
    "CONSUMER.UNPIN": ("S", "C"),
    "STREAM.SNAPSHOT": ("S",),
    "STREAM.RESTORE": ("S",),
    "STREAM.LEADER.STEPDOWN": ("S",),
    "CONSUMER.LEADER.STEPDOWN": ("S", "C"),
    "STREAM.PEER.REMOVE": ("S",),
}
JSON_VERBS = frozenset(VERBS) - {"DIRECT.GET", "CONSUMER.MSG.NEXT"}
# Verbs that may take extra subject tokens: CONSUMER.CREATE.<s>.<c>.<filter…>, DIRECT.GET.<s>.<subject…>
TAIL_VERBS = {"CONSUMER.CREATE": (-1, 1), "DIRECT.GET": (0, 1)}


@dataclass(frozen=True)
class Request:
    verb: str
    subject: bytes
    reply_tail: bytes | None  # None: sent without a reply subject
    body: bytes
    headers: bytes | None
    tokens_ok: bool  # the subject has the verb's asset-token count (else streamd and nats-server stay silent)

    def __repr__(self) -> str:  # what a failing example prints: enough to replay it by hand
        return (
            f"Request(subject={self.subject!r}, reply_tail={self.reply_tail!r}, body={self.body[:600]!r}"
            + (f"... ({len(self.body)} bytes)" if len(self.body) > 600 else "")
            + f", headers={self.headers!r})"
        )


def _mutate(value: Any, data: st.DataObject, depth: int = 0) -> Any:
    """Replace, drop or add one field somewhere in `value` with typed garbage."""
    if isinstance(value, dict) and value and depth < 3:
        key = data.draw(st.sampled_from(sorted(value)))
        op = data.draw(st.sampled_from(["replace", "recurse", "drop", "add"]))
        out = dict(value)
        if op == "drop":
            del out[key]
        elif op == "add":
            out[data.draw(st.text(max_size=10))] = data.draw(garbage)
        elif op == "recurse":
            out[key] = _mutate(out[key], data, depth + 1)
        else:
            numeric = isinstance(out[key], int) and not isinstance(out[key], bool)
            edge = st.sampled_from(BIG_INTS) if numeric else subject_lists
            out[key] = data.draw(st.one_of(edge, edge, garbage))
        return out
    if isinstance(value, list) and value and depth < 3:
        out_list = list(value)
        i = data.draw(st.integers(0, len(out_list) - 1))
        out_list[i] = _mutate(out_list[i], data, depth + 1)
        return out_list
    return data.draw(garbage)


def encode_body(value: Any) -> bytes:
    """JSON, with `NON_UTF8` markers turned into raw 0xff bytes (invalid UTF-8 inside a JSON string)."""
    text = json.dumps(value, ensure_ascii=False)
    return (
        text.replace(NON_UTF8, "\\u00ff").encode().replace(b"\\u00ff", b"\xff") if NON_UTF8 in text else text.encode()
    )


def draw_body(data: st.DataObject, verb: str, stream: str, consumer: str) -> bytes:
    base = data.draw(st.sampled_from(templates(verb, stream, consumer)))
    kind = data.draw(
        st.sampled_from(["valid", "valid", "mutated", "mutated", "mutated", "mutated", "raw", "scalar", "odd"])
    )
    if kind == "raw":
        return data.draw(st.binary(max_size=300))
    if kind == "scalar":
        return encode_body(data.draw(garbage))
    if kind == "odd":
        return data.draw(
            st.sampled_from(
                [b"", b" ", b"\r\n\t", b"{", b"[]", b"null", b'"x"', b"5", b"{}", b"\xff\xfe", b'{"a":\xff}']
            )
        )
    if base is None:
        return b"" if kind == "valid" else encode_body(_mutate({}, data))
    value = base if kind == "valid" else _mutate(base, data)
    if verb in ("STREAM.CREATE", "STREAM.UPDATE") and isinstance(value, dict) and data.draw(st.booleans()):
        value = {**value, "subjects": data.draw(st.lists(st.sampled_from(SUBJECT_POOL), min_size=1, max_size=2))}
    if data.draw(st.integers(0, 9)) == 9 and isinstance(value, dict) and value:  # (Hypothesis favours 0)
        key = data.draw(st.sampled_from(sorted(value)))
        value = {**value, key: "bad" + NON_UTF8}  # a non-UTF-8 byte inside a field
    return encode_body(value)


def _asset(kind: str, data: st.DataObject, creates: bool) -> bytes:
    if creates and kind in "SC" and data.draw(st.integers(0, 3)) > 0:
        return b"N%d" % data.draw(st.integers(0, 10**6))  # a fresh, valid name: the request gets past name checks
    if kind == "S":
        return data.draw(stream_names)
    if kind == "C":
        return data.draw(consumer_names)
    return data.draw(st.sampled_from([b"fz.a", b"fz.>", b"fz.*", b"nope", b"\xff.x"]))


def draw_request(data: st.DataObject) -> Request:
    verb = data.draw(st.sampled_from(sorted(VERBS)))
    kinds = list(VERBS[verb])
    arity_shift = data.draw(st.sampled_from([0, 0, 0, 0, 0, 0, 0, 1, -1]))
    if verb in TAIL_VERBS and arity_shift == 1:
        kinds.append("T")
    elif arity_shift == 1:
        kinds.append("C")
    elif arity_shift == -1 and kinds:
        kinds.pop()
    elif arity_shift == -1 and verb in TAIL_VERBS:
        kinds.pop()
    creates = verb.endswith("CREATE") or verb == "STREAM.UPDATE"
    names = [_asset(k, data, creates and i == len(kinds) - 1) for i, k in enumerate(kinds)]
    subject = PREFIX + verb.encode() + b"".join(b"." + n for n in names)
    stream = names[0].decode(errors="replace") if names else STREAM
    consumer = names[1].decode(errors="replace") if len(names) > 1 else PULL
    body = draw_body(data, verb, stream, consumer)
    reply_tail = data.draw(st.sampled_from([b""] * 8 + [b"\xff", "ü".encode(), None]))
    hdrs = data.draw(
        st.sampled_from(
            [
                None,
                None,
                None,
                b"NATS/1.0\r\nNats-Required-Api-Level: 99\r\n\r\n",
                b"NATS/1.0\r\nNats-Required-Api-Level: x\r\n\r\n",
            ]
        )
    )
    tokens = subject[len(PREFIX) :].split(b".")
    return Request(verb, subject, reply_tail, body, hdrs, tokens_ok=_tokens_ok(verb, len(tokens) - verb.count(".") - 1))


def _tokens_ok(verb: str, count: int) -> bool:
    want = len(VERBS[verb])
    if verb == "CONSUMER.CREATE":
        return count >= 1
    if verb == "DIRECT.GET":
        return count >= 1
    return count == want


def examples(default: int) -> int:
    """Examples per test: STREAMD_FUZZ_EXAMPLES for longer runs."""
    return int(os.environ.get("STREAMD_FUZZ_EXAMPLES", default))


def derandomized() -> bool:
    """Deterministic unless STREAMD_FUZZ_RANDOM is set (then every run explores new inputs)."""
    return not os.environ.get("STREAMD_FUZZ_RANDOM")
