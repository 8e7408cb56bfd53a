"""Differential conformance: pull consumer priority groups (overflow, pinned_client, prioritized) and CONSUMER.UNPIN.

Raw MSG.NEXT requests carry the priority fields (`group`, `min_pending`, `min_ack_pending`, `id`, `priority`),
which nats-py's fetch does not send. Every expectation is what nats-server 2.15 -js does.
"""

from __future__ import annotations

from typing import Any

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from tests.conformance.consumer_util import (
    C,
    config_of,
    consumer_info,
    create,
    create_ok,
    delivery,
    headers_of,
    open_inbox,
)
from tests.conformance.util import api, error_of, publish_n
from tests.helpers import wait_for

PINNED = {"priority_policy": "pinned_client", "priority_groups": ["jobs"]}
S = 1_000_000_000


async def _stream(js: JetStreamContext, n: int = 0) -> None:
    await js.add_stream(name="S", subjects=["s.>"])
    await publish_n(js, [f"s.{i}" for i in range(n)])


async def _waiting(nc: Client, n: int, consumer: str = "d") -> None:
    async def reached() -> bool:
        return int((await consumer_info(nc, "S", consumer))["num_waiting"]) == n

    await wait_for(reached)


CONFIG_ERRORS: list[tuple[dict[str, Any], tuple[int, int, str]]] = [
    (
        {"priority_policy": "overflow"},
        (400, 10159, "Setting PriorityPolicy requires at least one PriorityGroup to be set"),
    ),
    ({"priority_policy": "overflow", "priority_groups": [""]}, (400, 10161, "Group name cannot be an empty string")),
    (
        {"priority_policy": "pinned_client", "priority_groups": ["a b"]},
        (400, 10162, "Valid priority group name must match A-Z, a-z, 0-9, -_/=)+ and may not exceed 16 characters"),
    ),
    (
        {"priority_policy": "prioritized", "priority_groups": ["g" * 17]},
        (400, 10162, "Valid priority group name must match A-Z, a-z, 0-9, -_/=)+ and may not exceed 16 characters"),
    ),
    (
        {"priority_policy": "overflow", "priority_groups": ["g"], "deliver_subject": "push.d"},
        (400, 10178, "priority groups can not be used with push consumers"),
    ),
    ({"priority_groups": ["g"]}, (400, 10196, "consumer can not have priority groups when policy is none")),
    (
        {"priority_policy": "none", "priority_groups": ["g"]},
        (400, 10196, "consumer can not have priority groups when policy is none"),
    ),
    ({"priority_timeout": S}, (400, 10197, "PinnedTTL cannot be set when PriorityPolicy is none")),
    (
        {"priority_policy": "sticky", "priority_groups": ["g"]},
        (400, 10025, 'invalid JSON: unknown priority policy: "sticky"'),
    ),
]


@pytest.mark.parametrize(("config", "want"), CONFIG_ERRORS)
async def test_config_errors(
    js: JetStreamContext, nc: Client, config: dict[str, Any], want: tuple[int, int, str]
) -> None:
    await _stream(js)
    reply = await create(nc, "DURABLE.CREATE.S.d", {"durable_name": "d", "ack_policy": "explicit", **config})
    assert error_of(reply) == want


async def test_config_echo_and_info(js: JetStreamContext, nc: Client) -> None:
    """The pinned policy gets the default timeout (2 minutes); info reports the group and, once pinned, the pin."""
    await _stream(js, 1)
    reply = await create_ok(nc, "DURABLE.CREATE.S.d", {"durable_name": "d", "ack_policy": "explicit", **PINNED})
    cfg = config_of(reply)
    assert (cfg["priority_policy"], cfg["priority_groups"], cfg["priority_timeout"]) == (
        "pinned_client",
        ["jobs"],
        120 * S,
    )
    assert reply["priority_groups"] == [{"group": "jobs", "pinned_ts": "0001-01-01T00:00:00Z"}]
    assert reply["config"]["metadata"]["_nats.req.level"] == "1"  # a 2.11 feature
    over = await create_ok(
        nc,
        "CREATE.S.o",
        {"name": "o", "priority_policy": "overflow", "priority_groups": ["a", "b"], "priority_timeout": -5},
    )
    assert "priority_timeout" not in over["config"] and over["priority_groups"] == [
        {"group": "a", "pinned_ts": "0001-01-01T00:00:00Z"}
    ]
    plain = await create_ok(nc, "CREATE.S.p", {"name": "p", "priority_policy": "none"})
    assert "priority_policy" not in plain["config"] and "priority_groups" not in plain

    inbox = await open_inbox(nc)
    await inbox.next_request("S", "d", {"batch": 1, "group": "jobs"})
    msg = await inbox.get()
    pin = headers_of(msg)["Nats-Pin-Id"]
    info = await consumer_info(nc, "S", "d")
    (state,) = info["priority_groups"]
    assert (
        state["group"] == "jobs" and state["pinned_client_id"] == pin and state["pinned_ts"] != "0001-01-01T00:00:00Z"
    )


REQUEST_ERRORS: list[tuple[dict[str, Any], dict[str, Any], tuple[str, str]]] = [
    ({}, {"batch": 1, "group": "g"}, ("200", "")),  # no policy: the group is ignored (answered by a delivery)
    ({}, {"batch": 1, "min_pending": 1}, ("400", "Bad Request - Not a Overflow Priority consumer")),
    ({}, {"batch": 1, "id": "x"}, ("400", "Bad Request - Not a Pinned Client Priority consumer")),
    ({}, {"batch": 1, "priority": 10}, ("400", "Bad Request - Priority must be between 0 and 9")),
    ({}, {"batch": 1, "priority": -1}, ("400", "Bad Request - Priority must be between 0 and 9")),
    (
        PINNED,
        {"batch": 1, "min_ack_pending": 1, "group": "jobs"},
        ("400", "Bad Request - Not a Overflow Priority consumer"),
    ),
    (PINNED, {"batch": 1}, ("400", "Bad Request - Priority Group missing")),
    (PINNED, {"batch": 1, "group": "other"}, ("400", "Bad Request - Invalid Priority Group")),
    (
        {"priority_policy": "overflow", "priority_groups": ["g"]},
        {"batch": 1, "group": "g", "id": "x"},
        ("400", "Bad Request - Not a Pinned Client Priority consumer"),
    ),
]


@pytest.mark.parametrize(("config", "body", "want"), REQUEST_ERRORS)
async def test_request_checks(
    js: JetStreamContext, nc: Client, config: dict[str, Any], body: dict[str, Any], want: tuple[str, str]
) -> None:
    await _stream(js, 1)
    await create_ok(nc, "DURABLE.CREATE.S.d", {"durable_name": "d", "ack_policy": "explicit", **config})
    inbox = await open_inbox(nc)
    await inbox.next_request("S", "d", body)
    msg = await inbox.get()
    h = headers_of(msg)
    assert (h.get("Status", "200"), h.get("Description", "")) == want


async def test_bare_requests_skip_the_group_checks(js: JetStreamContext, nc: Client) -> None:
    """An empty or numeric request has no priority fields, and the server checks none: it is served unpinned."""
    await _stream(js, 2)
    await create_ok(nc, "DURABLE.CREATE.S.d", {"durable_name": "d", "ack_policy": "explicit", **PINNED})
    inbox = await open_inbox(nc)
    await inbox.next_request("S", "d", b"1")
    msg = await inbox.get()
    assert delivery(msg)[3] == 1
    assert "pinned_client_id" not in (await consumer_info(nc, "S", "d"))["priority_groups"][0]


async def _pin_advisory(sub: Any) -> Any:
    """The next PINNED or UNPINNED advisory (the consumer's CREATED advisory may still be on its way)."""
    while True:
        msg = await sub.next_msg(timeout=2)
        if ".CREATED." not in msg.subject:
            return msg


async def test_pinned_client(js: JetStreamContext, nc: Client) -> None:
    """The first requester is pinned; another requester waits, a wrong id gets 423 at once; UNPIN releases the
    pin and the waiting requester is pinned with a new id; the old id then gets 423 Nats-Wrong-Pin-Id."""
    await _stream(js, 3)
    await create_ok(nc, "DURABLE.CREATE.S.d", {"durable_name": "d", "ack_policy": "explicit", **PINNED})
    sub = await nc.subscribe("$JS.EVENT.ADVISORY.CONSUMER.*.S.d")
    a, b = await open_inbox(nc), await open_inbox(nc)
    await a.next_request("S", "d", {"batch": 1, "group": "jobs"})
    first = await a.get()
    pin = headers_of(first)["Nats-Pin-Id"]
    assert delivery(first)[3] == 1 and len(pin) == 22
    advisory = await _pin_advisory(sub)
    assert advisory.subject == "$JS.EVENT.ADVISORY.CONSUMER.PINNED.S.d"
    assert '"pinned_id":"' + pin + '"' in advisory.data.decode()

    await b.next_request("S", "d", {"batch": 1, "group": "jobs", "expires": 5 * S})
    await _waiting(nc, 1)
    await b.quiet()
    await a.next_request("S", "d", {"batch": 1, "group": "jobs", "id": "wrong"})
    assert (await a.status())[:2] == ("423", "Nats-Pin-Id mismatch")
    await a.next_request("S", "d", {"batch": 1, "group": "jobs", "id": pin})
    second = await a.get()
    assert delivery(second)[3] == 2 and headers_of(second)["Nats-Pin-Id"] == pin

    reply = await api(nc, f"{C}UNPIN.S.d", {"group": "jobs"})
    assert reply == {"type": "io.nats.jetstream.api.v1.consumer_unpin_response"}
    unpinned = await _pin_advisory(sub)
    assert (
        unpinned.subject == "$JS.EVENT.ADVISORY.CONSUMER.UNPINNED.S.d" and '"reason":"admin"' in unpinned.data.decode()
    )
    third = await b.get()
    new_pin = headers_of(third)["Nats-Pin-Id"]
    assert delivery(third)[3] == 3 and new_pin != pin
    await a.next_request("S", "d", {"batch": 1, "group": "jobs", "id": pin})
    assert (await a.status())[:2] == ("423", "Nats-Pin-Id mismatch")


async def test_stale_pin_after_unpin_waits_for_a_message(js: JetStreamContext, nc: Client) -> None:
    """Nobody pinned and a request carrying an old id: it is answered 423 Nats-Wrong-Pin-Id when a message comes."""
    await _stream(js, 1)
    await create_ok(nc, "DURABLE.CREATE.S.d", {"durable_name": "d", "ack_policy": "explicit", **PINNED})
    a = await open_inbox(nc)
    await a.next_request("S", "d", {"batch": 1, "group": "jobs"})
    pin = headers_of(await a.get())["Nats-Pin-Id"]
    assert "error" not in await api(nc, f"{C}UNPIN.S.d", {"group": "jobs"})
    await a.next_request("S", "d", {"batch": 5, "group": "jobs", "id": pin, "expires": 5 * S})
    await _waiting(nc, 1)
    await a.quiet()
    await js.publish("s.x", b"x")
    assert await a.status() == ("423", "Nats-Wrong-Pin-Id", {"Nats-Pending-Messages": "5", "Nats-Pending-Bytes": "0"})


async def test_pin_timeout(js: JetStreamContext, nc: Client) -> None:
    """A pinned client that stops asking loses the pin after priority_timeout (advisory reason "timeout")."""
    await _stream(js, 2)
    await create_ok(
        nc, "DURABLE.CREATE.S.d", {"durable_name": "d", "ack_policy": "explicit", **PINNED, "priority_timeout": S // 2}
    )
    sub = await nc.subscribe("$JS.EVENT.ADVISORY.CONSUMER.UNPINNED.S.d")
    a, b = await open_inbox(nc), await open_inbox(nc)
    await a.next_request("S", "d", {"batch": 1, "group": "jobs"})
    pin = headers_of(await a.get())["Nats-Pin-Id"]
    await b.next_request("S", "d", {"batch": 1, "group": "jobs", "expires": 10 * S})
    advisory = await sub.next_msg(timeout=5)
    assert '"reason":"timeout"' in advisory.data.decode() and '"group":"jobs"' in advisory.data.decode()
    assert headers_of(await b.get())["Nats-Pin-Id"] != pin


async def test_overflow(js: JetStreamContext, nc: Client) -> None:
    """A request with min_pending gets a message only while that many are pending, counting the one it would get;
    one with min_ack_pending once that many deliveries await their ack; a plain request is served as usual."""
    await _stream(js, 2)
    group = {"priority_policy": "overflow", "priority_groups": ["g"]}
    await create_ok(nc, "DURABLE.CREATE.S.d", {"durable_name": "d", "ack_policy": "explicit", **group})
    over = await open_inbox(nc)
    await over.next_request("S", "d", {"batch": 10, "group": "g", "min_pending": 3, "expires": 5 * S})
    await _waiting(nc, 1)
    await over.quiet()
    await js.publish("s.x", b"x")  # three pending: one goes out, and then two are left
    assert delivery(await over.get())[3] == 1
    await over.quiet()

    acked = await open_inbox(nc)
    await acked.next_request("S", "d", {"batch": 1, "group": "g", "min_ack_pending": 2, "expires": 5 * S})
    await _waiting(nc, 2)
    await acked.quiet()
    plain = await open_inbox(nc)
    await plain.next_request("S", "d", {"batch": 1, "group": "g"})
    assert delivery(await plain.get())[3] == 2
    assert delivery(await acked.get())[3] == 3  # two unacknowledged now
    await over.quiet()


async def test_prioritized(js: JetStreamContext, nc: Client) -> None:
    """Waiting requests are served by priority (0 first), whatever their arrival order."""
    await _stream(js)
    group = {"priority_policy": "prioritized", "priority_groups": ["g"]}
    await create_ok(nc, "DURABLE.CREATE.S.d", {"durable_name": "d", "ack_policy": "explicit", **group})
    low, high = await open_inbox(nc), await open_inbox(nc)
    await low.next_request("S", "d", {"batch": 1, "group": "g", "priority": 5, "expires": 5 * S})
    await high.next_request("S", "d", {"batch": 1, "group": "g", "priority": 1, "expires": 5 * S})
    await _waiting(nc, 2)
    await js.publish("s.a", b"a")
    assert delivery(await high.get())[3] == 1
    await js.publish("s.b", b"b")
    assert delivery(await low.get())[3] == 2


UNPIN_CASES: list[tuple[dict[str, Any], tuple[int, int, str] | None]] = [
    ({"group": "jobs"}, None),
    ({"group": "nope"}, (400, 10160, "Provided priority group does not exist for this consumer")),
]


@pytest.mark.parametrize(("body", "want"), UNPIN_CASES)
async def test_unpin(js: JetStreamContext, nc: Client, body: dict[str, Any], want: tuple[int, int, str] | None) -> None:
    """UNPIN when nobody is pinned succeeds (and advises it, as the server does); an unknown group is refused."""
    await _stream(js)
    await create_ok(nc, "DURABLE.CREATE.S.d", {"durable_name": "d", "ack_policy": "explicit", **PINNED})
    reply = await api(nc, f"{C}UNPIN.S.d", body)
    if want is None:
        assert reply == {"type": "io.nats.jetstream.api.v1.consumer_unpin_response"}
    else:
        assert error_of(reply) == want
