"""Requests the fuzz currently skips because streamd mishandles them (issue 9): each entry names the failure.

The lead removes an entry once its fix is merged; test_known_broken.py reproduces each one (strict xfail), so a
fix shows up there as an unexpected pass."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from tests.fuzz.strategies import JSON_VERBS, Request


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True


def _ints(value: Any) -> Iterator[int]:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _ints(v)
    elif isinstance(value, list):
        for v in value:
            yield from _ints(v)


def _body(req: Request) -> Any:
    try:
        return json.loads(req.body)
    except ValueError:
        return None


def _outside_int64(req: Request) -> bool:
    return any(n > 2**63 - 1 or n < -(2**63) for n in _ints(_body(req)))


def _bad_seq(req: Request) -> bool:
    body = _body(req)
    seq = body.get("seq") if isinstance(body, dict) else None
    return (
        req.verb in ("STREAM.MSG.GET", "STREAM.MSG.DELETE", "DIRECT.GET")
        and isinstance(seq, int)
        and not isinstance(seq, bool)
        and (seq < 0 or seq >= 2**63 - 1)
    )


KNOWN_BROKEN: dict[str, tuple[str, Callable[[Request], bool]]] = {
    "non_utf8_api_subject": (
        "issue 9 item 2: a JSON API request whose subject or reply subject is not UTF-8 raises UnicodeDecodeError "
        "in nats-py's message parser on streamd's connection; from then on no API request or publish is answered",
        lambda r: r.verb in JSON_VERBS and not (_utf8(r.subject) and _utf8(r.reply_tail or b"")),
    ),
    "int_outside_int64": (
        "issue 9 item 6: an integer >= 2^63 or < -2^63 in any field of a request that decodes (e.g. STREAM.CREATE "
        "max_msgs=2^64, CONSUMER.CREATE config.max_deliver=2^64, config.max_ack_pending=-2^63-1, MSG.GET seq=2^64) "
        "is not range-checked: msgspec OverflowError or struct.error after decoding, answered 500/10051 ('internal "
        "error' / 'stream store failed', the writer retries the batch item by item) or, on DIRECT.GET, not at all; "
        "nats-server answers 400/10025 'invalid JSON: json: cannot unmarshal number ... of type int64/uint64'",
        _outside_int64,
    ),
    "negative_or_huge_seq": (
        "issue 9 item 6: MSG.GET / MSG.DELETE / DIRECT.GET with seq -1 (or any negative, or 2^63-1): struct.error "
        "packing the LMDB key; MSG.GET answers 500/10051 'internal error', MSG.DELETE 500 after a failed write "
        "batch, DIRECT.GET nothing at all; nats-server answers 400/10025 (seq is a uint64) and DIRECT.GET '408 "
        "Malformed Request'",
        _bad_seq,
    ),
    "non_utf8_pull_reply": (
        "a CONSUMER.MSG.NEXT request whose reply subject is not UTF-8: UnicodeDecodeError in service.on_next "
        "(reply.decode()), logged as 'message on ... could not be handled'; the requester gets no answer",
        lambda r: r.verb == "CONSUMER.MSG.NEXT" and not _utf8(r.reply_tail or b""),
    ),
    "wildcard_inside_token": (
        "issue 9 item 1: STREAM.CREATE/UPDATE with a subject like 'A*' or 'x.b>c' (legal for nats-server, which "
        "stores them) commits the config, then nats-py refuses to subscribe (BadSubjectError): the answer is "
        "500/10051 'internal error' or a success whose subject is not served (publish gets 503), and every later "
        "start of streamd fails",
        lambda r: r.verb in ("STREAM.CREATE", "STREAM.UPDATE") and (b'"A*"' in r.body or b'"x.b>c"' in r.body),
    ),
}


def known_broken(req: Request) -> str | None:
    """The name of the known failure `req` would hit, or None."""
    for name, (_reason, matches) in KNOWN_BROKEN.items():
        if matches(req):
            return name
    return None


def _huge_ttl(_subject: bytes, block: bytes) -> bool:
    for line in block.split(b"\r\n"):
        key, sep, value = line.partition(b":")
        if sep and key.strip() == b"Nats-TTL" and value.strip().isdigit() and int(value.strip()) > 9_223_372_036:
            return True
    return False


KNOWN_BROKEN_PUBLISH: dict[str, tuple[str, Callable[[bytes, bytes], bool]]] = {
    "huge_ttl": (
        "Nats-TTL of more than 2^63 ns in seconds (e.g. 9223372036854775807) on a stream with allow_msg_ttl: the "
        "writer's struct.pack raises 'int too large to convert', the batch is retried item by item, the publish "
        "answers 500/10051 'stream store failed' (nats-server stores 2^63-1 and 2^64, refuses 2^63 with 400/10165)",
        _huge_ttl,
    ),
}


def known_broken_publish(subject: bytes, block: bytes) -> str | None:
    """The name of the known failure an HPUB of `block` to `subject` would hit, or None."""
    for name, (_reason, matches) in KNOWN_BROKEN_PUBLISH.items():
        if matches(subject, block):
            return name
    return None


# Found outside the fuzz's input space (its payloads stay below 100 kB); reproduced in test_known_broken.py too.
KNOWN_BROKEN_OTHER: dict[str, str] = {
    "oversized_reply": (
        "issue 9 item 3: STREAM.MSG.GET of an 800 kB stored message: the base64 reply exceeds the core server's "
        "max_payload (1 MB), the server drops streamd's connection and streamd does not come back"
    ),
}
