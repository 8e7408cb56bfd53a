"""Consumer advisories (`$JS.EVENT.ADVISORY.CONSUMER.*`), as nats-server publishes them: one function per kind,
each -> (subject, payload); the caller publishes them after the state they report is committed."""

from __future__ import annotations

import time
from typing import Any

import msgspec

from streamd.consumers.acks import MaxDeliveriesEvent
from streamd.wire import timefmt
from streamd.wire.ack_protocol import AckInfo

PREFIX = "$JS.EVENT.ADVISORY.CONSUMER."
_ENC = msgspec.json.Encoder()

Advisory = tuple[str, bytes]


def _advisory(kind: str, stream: str, consumer: str, body: dict[str, Any]) -> Advisory:
    body = {
        "id": f"{time.time_ns():x}",
        "timestamp": timefmt.format_ns(time.time_ns()),
        "stream": stream,
        "consumer": consumer,
        **body,
    }
    return f"{PREFIX}{kind}.{stream}.{consumer}", _ENC.encode(body)


def action(stream: str, consumer: str, kind: str, verb: str) -> Advisory:
    """CREATED/create, DELETED/delete."""
    return _advisory(kind, stream, consumer, {"type": "io.nats.jetstream.advisory.v1.consumer_action", "action": verb})


def nak(stream: str, consumer: str, info: AckInfo) -> Advisory:
    body = {
        "type": "io.nats.jetstream.advisory.v1.nak",
        "consumer_seq": info.consumer_seq,
        "stream_seq": info.stream_seq,
        "deliveries": info.num_delivered,
    }
    return _advisory("MSG_NAKED", stream, consumer, body)


def term(stream: str, consumer: str, info: AckInfo, reason: str) -> Advisory:
    body: dict[str, Any] = {
        "type": "io.nats.jetstream.advisory.v1.terminated",
        "consumer_seq": info.consumer_seq,
        "stream_seq": info.stream_seq,
        "deliveries": info.num_delivered,
    }
    if reason:
        body["reason"] = reason
    return _advisory("MSG_TERMINATED", stream, consumer, body)


def max_deliveries(stream: str, consumer: str, event: MaxDeliveriesEvent) -> Advisory:
    body = {
        "type": "io.nats.jetstream.advisory.v1.max_deliver",
        "stream_seq": event.stream_seq,
        "deliveries": event.deliveries,
    }
    return _advisory("MAX_DELIVERIES", stream, consumer, body)


def pinned(stream: str, consumer: str, group: str, pin_id: str) -> Advisory:
    body = {"type": "io.nats.jetstream.advisory.v1.consumer_group_pinned", "group": group, "pinned_id": pin_id}
    return _advisory("PINNED", stream, consumer, body)


def unpinned(stream: str, consumer: str, group: str, reason: str) -> Advisory:
    body = {"type": "io.nats.jetstream.advisory.v1.consumer_group_unpinned", "group": group, "reason": reason}
    return _advisory("UNPINNED", stream, consumer, body)
