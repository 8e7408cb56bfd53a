"""Consumer advisories: subjects and bodies as nats-server publishes them."""

from __future__ import annotations

import json

from streamd.consumers import advisories
from streamd.consumers.acks import MaxDeliveriesEvent
from streamd.wire.ack_protocol import AckInfo

INFO = AckInfo("S", "c", num_delivered=2, stream_seq=7, consumer_seq=9, timestamp_ns=1, num_pending=0)


def _body(payload: bytes) -> dict[str, object]:
    body = json.loads(payload)
    assert isinstance(body, dict)
    assert body.pop("id") and body.pop("timestamp")
    return body


def test_action() -> None:
    subject, payload = advisories.action("S", "c", "CREATED", "create")
    assert subject == "$JS.EVENT.ADVISORY.CONSUMER.CREATED.S.c"
    assert _body(payload) == {
        "stream": "S",
        "consumer": "c",
        "type": "io.nats.jetstream.advisory.v1.consumer_action",
        "action": "create",
    }


def test_nak() -> None:
    subject, payload = advisories.nak("S", "c", INFO)
    assert subject == "$JS.EVENT.ADVISORY.CONSUMER.MSG_NAKED.S.c"
    body = _body(payload)
    assert body["type"] == "io.nats.jetstream.advisory.v1.nak"
    assert (body["consumer_seq"], body["stream_seq"], body["deliveries"]) == (9, 7, 2)


def test_term_carries_its_reason_only_when_given() -> None:
    subject, payload = advisories.term("S", "c", INFO, "poison")
    assert subject == "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.S.c"
    assert _body(payload)["reason"] == "poison"
    assert "reason" not in _body(advisories.term("S", "c", INFO, "")[1])


def test_max_deliveries() -> None:
    subject, payload = advisories.max_deliveries(
        "S", "c", MaxDeliveriesEvent(stream_seq=4, consumer_seq=5, deliveries=3)
    )
    assert subject == "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.S.c"
    body = _body(payload)
    assert body["type"] == "io.nats.jetstream.advisory.v1.max_deliver"
    assert (body["stream_seq"], body["deliveries"]) == (4, 3)
