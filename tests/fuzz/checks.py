"""What a reply must look like: JetStream's JSON answer or error object, a status-only message, a PubAck."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.fuzz.rawclient import Reply

TYPE_PREFIX = "io.nats.jetstream.api.v1."
# nats-server's errors.json, cut to the entries streamd answers with: every error streamd sends comes from them
CATALOGUE = Path(__file__).resolve().parents[1] / "data" / "errors.json"
KINDS = {
    "INFO": "account_info_response",
    "STREAM.CREATE": "stream_create_response",
    "STREAM.UPDATE": "stream_update_response",
    "STREAM.DELETE": "stream_delete_response",
    "STREAM.INFO": "stream_info_response",
    "STREAM.NAMES": "stream_names_response",
    "STREAM.LIST": "stream_list_response",
    "STREAM.PURGE": "stream_purge_response",
    "STREAM.MSG.GET": "stream_msg_get_response",
    "STREAM.MSG.DELETE": "stream_msg_delete_response",
    "CONSUMER.CREATE": "consumer_create_response",
    "CONSUMER.DURABLE.CREATE": "consumer_create_response",
    "CONSUMER.INFO": "consumer_info_response",
    "CONSUMER.DELETE": "consumer_delete_response",
    "CONSUMER.NAMES": "consumer_names_response",
    "CONSUMER.LIST": "consumer_list_response",
    "CONSUMER.PAUSE": "consumer_pause_response",
    "CONSUMER.RESET": "consumer_reset_response",
    "CONSUMER.UNPIN": "consumer_unpin_response",
    "STREAM.SNAPSHOT": "stream_snapshot_response",
    "STREAM.RESTORE": "stream_restore_response",
    "STREAM.LEADER.STEPDOWN": "stream_leader_stepdown_response",
    "CONSUMER.LEADER.STEPDOWN": "consumer_leader_stepdown_response",
    "STREAM.PEER.REMOVE": "stream_remove_peer_response",
}
# Keys a successful answer must carry, per kind (the fields clients read without a default).
RESULT_KEYS: dict[str, set[str]] = {
    "account_info_response": {"memory", "storage", "streams", "consumers", "limits", "api"},
    "stream_create_response": {"config", "state", "created"},
    "stream_update_response": {"config", "state", "created"},
    "stream_info_response": {"config", "state", "created"},
    "stream_delete_response": {"success"},
    "stream_names_response": {"total", "offset", "limit", "streams"},
    "stream_list_response": {"total", "offset", "limit", "streams"},
    "stream_purge_response": {"success", "purged"},
    "stream_msg_get_response": {"message"},
    "stream_msg_delete_response": {"success"},
    "consumer_create_response": {"stream_name", "name", "config", "created"},
    "consumer_info_response": {"stream_name", "name", "config", "created"},
    "consumer_delete_response": {"success"},
    "consumer_names_response": {"total", "offset", "limit", "consumers"},
    "consumer_list_response": {"total", "offset", "limit", "consumers"},
    "consumer_pause_response": {"paused", "pause_until"},
}
DIRECT_STATUSES = {400, 404, 408, 412, 413, 503}
PULL_STATUSES = {100, 400, 404, 408, 409, 412, 503}


ERROR_PAIRS = {(e["code"], e["error_code"]) for e in json.loads(CATALOGUE.read_text())}


def check_error(err: Any) -> None:
    """Exactly code, err_code, description; the pair is one of nats-server's."""
    assert isinstance(err, dict), f"error is not an object: {err!r}"
    assert set(err) == {"code", "err_code", "description"}, f"error keys {sorted(err)}"
    code, err_code, description = err["code"], err["err_code"], err["description"]
    assert type(code) is int and type(err_code) is int, f"error codes are not integers: {err!r}"
    assert isinstance(description, str) and description, f"error without a description: {err!r}"
    assert 400 <= code < 600, f"error code {code}"
    assert (code, err_code) in ERROR_PAIRS, f"({code}, {err_code}) is not in nats-server's error table"


def check_json_answer(verb: str, reply: Reply) -> dict[str, Any]:
    """A JSON API answer: `type` of the verb's kind, then an error object or the result's required keys."""
    assert reply.headers is None or reply.status is None, f"status {reply.headers!r} where JSON was due"
    try:
        doc = json.loads(reply.payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise AssertionError(f"answer is not JSON ({exc}): {reply.payload[:300]!r}") from None
    assert isinstance(doc, dict), f"answer is not an object: {reply.payload[:300]!r}"
    kind = KINDS[verb]
    assert doc.get("type") == TYPE_PREFIX + kind, f"type {doc.get('type')!r}, want {kind}"
    if "error" in doc:
        check_error(doc["error"])
        # 500/10051 is nats-server's "stream general error": an internal failure, never its verdict on bad input
        assert doc["error"]["err_code"] != 10051, f"internal error for a client's request: {doc['error']}"
    else:
        missing = RESULT_KEYS.get(kind, set()) - set(doc)
        assert not missing, f"{kind} without {sorted(missing)}: {reply.payload[:300]!r}"
    return doc


def check_status(reply: Reply, allowed: set[int]) -> None:
    """A status-only message: `NATS/1.0 <code> [text]` header block, empty payload."""
    assert reply.status in allowed, f"status {reply.headers!r}, want one of {sorted(allowed)}"
    assert reply.headers is not None and reply.headers.endswith(b"\r\n\r\n"), f"header block {reply.headers!r}"
    assert reply.payload == b"", f"status message with a payload: {reply.payload[:100]!r}"


def check_direct(reply: Reply) -> None:
    """DIRECT.GET: the stored message with Nats-Stream/Nats-Sequence headers, an EOB marker, or a status."""
    stored = reply.headers is not None and b"\r\nNats-Sequence: " in reply.headers
    if reply.status is not None and reply.status != 204 and not stored:  # (a stored block may carry a status line)
        check_status(reply, DIRECT_STATUSES)
        return
    assert reply.headers is not None, "direct get answered without headers"
    if reply.status == 204:
        assert b"Nats-Num-Pending" in reply.headers or b"EOB" in reply.headers, reply.headers
        return
    for name in (b"Nats-Stream:", b"Nats-Subject:", b"Nats-Sequence:", b"Nats-Time-Stamp:"):
        assert name in reply.headers, f"direct get reply without {name!r}: {reply.headers!r}"


def check_pull(reply: Reply) -> None:
    """A pull request's reply: a status, or a stream message whose reply is its ack subject."""
    if reply.status is not None:
        check_status(reply, PULL_STATUSES)
        return
    assert reply.reply.startswith(b"$JS.ACK."), f"pulled message without an ack subject: {reply!r}"


def check_puback(reply: Reply) -> dict[str, Any]:
    """`{"stream","seq"[,"duplicate","domain","batch","count","val"]}` or an error object (possibly beside
    stream/seq)."""
    assert reply.status is None, f"status {reply.headers!r} where a PubAck was due"
    doc = json.loads(reply.payload.decode("utf-8"))
    assert isinstance(doc, dict), f"PubAck is not an object: {reply.payload[:300]!r}"
    keys = {"stream", "seq", "duplicate", "domain", "error", "batch", "count", "val"}
    assert set(doc) <= keys, f"PubAck keys {sorted(doc)}"
    if "val" in doc:  # a counter's new total
        assert isinstance(doc["val"], str) and doc["val"].lstrip("-").isdigit(), doc
    if "batch" in doc:  # an atomic batch's commit
        assert isinstance(doc["batch"], str) and type(doc.get("count")) is int and doc["count"] >= 1, doc
    if "error" in doc:
        check_error(doc["error"])
        return doc
    assert isinstance(doc.get("stream"), str) and doc["stream"], f"PubAck without a stream: {doc}"
    assert type(doc.get("seq")) is int and doc["seq"] >= 1, f"PubAck seq: {doc}"
    return doc
