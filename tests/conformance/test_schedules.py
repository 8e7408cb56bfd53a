"""Differential conformance: message schedules (`allow_msg_schedules`, the Nats-Schedule headers): config rules,
the publish checks, and what a fired schedule stores, JetStream vs streamd."""

from __future__ import annotations

import base64
import json
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext

from tests.conformance.util import api, error_of
from tests.helpers import wait_for

SCHED = {"name": "S", "subjects": ["s.>"], "allow_msg_schedules": True}
PAST = "@at 2020-01-01T00:00:00Z"  # due already: fires at the next pass
FUTURE = "@at 2099-01-01T00:00:00Z"
OK = {"Nats-Schedule": FUTURE, "Nats-Schedule-Target": "s.out"}


async def test_schedules_config_rules(nc: Client) -> None:
    created = await api(nc, "$JS.API.STREAM.CREATE.S", SCHED)
    cfg = created["config"]
    assert cfg["allow_msg_schedules"] is True and cfg["allow_rollup_hdrs"] is True and not cfg.get("deny_purge")
    assert cfg["metadata"]["_nats.req.level"] == "2"
    off = await api(nc, "$JS.API.STREAM.UPDATE.S", {**SCHED, "allow_msg_schedules": False})
    assert error_of(off) == (500, 10052, "message schedules can not be disabled")
    new = await api(nc, "$JS.API.STREAM.CREATE.N", {"name": "N", "allow_msg_schedules": True, "discard": "new"})
    assert error_of(new) == (500, 10052, "message scheduling cannot use discard new")
    mirror = await api(
        nc, "$JS.API.STREAM.CREATE.M", {"name": "M", "allow_msg_schedules": True, "mirror": {"name": "S"}}
    )
    assert error_of(mirror)[1] == 10186
    source = await api(
        nc, "$JS.API.STREAM.CREATE.O", {"name": "O", "allow_msg_schedules": True, "sources": [{"name": "S"}]}
    )
    assert error_of(source)[1] == 10187
    both = {"name": "C", "allow_msg_schedules": True, "allow_msg_counter": True}
    counter = await api(nc, "$JS.API.STREAM.CREATE.C", both)
    assert error_of(counter) == (500, 10052, "counter stream cannot use message schedules")


# (headers published on s.sched, the PubAck's error code or None when stored) on a stream with schedules allowed.
PUBLISHES: list[tuple[dict[str, str], int | None]] = [
    (OK, None),
    ({**OK, "Nats-Schedule": "@every 2s"}, None),
    ({**OK, "Nats-Schedule": "0 30 9 * * mon-fri", "Nats-Schedule-Time-Zone": "Europe/Amsterdam"}, None),
    ({**OK, "Nats-Schedule": "@hourly"}, None),
    ({**OK, "Nats-Schedule": "*/5 * * * *"}, 10189),
    ({**OK, "Nats-Schedule": "@every 500ms"}, 10189),
    ({**OK, "Nats-Schedule": "@at tomorrow"}, 10189),
    ({**OK, "Nats-Schedule": "nonsense"}, 10189),
    ({**OK, "Nats-Schedule-Time-Zone": "UTC"}, 10189),  # no zone with @at
    ({**OK, "Nats-Schedule": "@daily", "Nats-Schedule-Time-Zone": "Mars/Olympus"}, 10223),
    ({"Nats-Schedule-Time-Zone": "Nowhere/Land"}, 10223),
    ({**OK, "Nats-Schedule-Target": "s.sched"}, 10190),
    ({**OK, "Nats-Schedule-Target": "elsewhere"}, 10190),
    ({**OK, "Nats-Schedule-Target": "s.*"}, 10190),
    ({"Nats-Schedule": FUTURE}, 10190),
    ({**OK, "Nats-Schedule-Source": "s.out"}, 10203),
    ({**OK, "Nats-Schedule-Source": "t.x"}, 10203),
    ({**OK, "Nats-Schedule-Source": "s.src"}, None),
    ({**OK, "Nats-Schedule-TTL": "5s"}, 10166),  # the stream has no per-message TTLs
    ({**OK, "Nats-Schedule-TTL": "soon"}, 10191),
    ({**OK, "Nats-Schedule-Rollup": "all"}, 10192),
    ({**OK, "Nats-Rollup": "all"}, 10192),
    ({"Nats-Schedule-Next": "purge", "Nats-Scheduler": "s.none"}, None),
    ({"Nats-Schedule-Next": "2030-01-01T00:00:00Z", "Nats-Scheduler": "s.none"}, 10212),
    ({"Nats-Schedule-Next": "purge"}, 10212),
    ({"Nats-Schedule-Next": "purge", "Nats-Scheduler": "s.sched"}, 10212),
    ({"Nats-Schedule-Next": "purge", "Nats-Scheduler": "s.plain"}, 10212),  # s.plain is no schedule
    ({"Nats-Scheduler": "s.none"}, 10212),
    # Where the schedule checks sit among the others: after the expected-sequence checks, before deduplication.
    ({"Nats-Msg-Id": "d1"}, None),
    ({"Nats-Msg-Id": "d1", "Nats-Schedule": FUTURE, "Nats-Schedule-Target": "elsewhere"}, 10190),
    ({"Nats-Expected-Last-Sequence": "999999", "Nats-Schedule": "nonsense"}, 10071),
    ({"Nats-Expected-Stream": "X", "Nats-Schedule": "nonsense"}, 10060),
]


async def test_schedule_publish_checks(nc: Client, js: JetStreamContext) -> None:
    await api(nc, "$JS.API.STREAM.CREATE.S", SCHED)
    await api(nc, "$JS.API.STREAM.CREATE.P", {"name": "P", "subjects": ["p.>"]})
    await js.publish("s.plain", b"")
    got: list[tuple[dict[str, str], int | None]] = []
    for hdrs, _ in PUBLISHES:
        got.append((hdrs, await _puback_error(nc, "s.sched", hdrs)))
    assert got == PUBLISHES
    # A stream without schedules refuses every schedule header as disabled, even a bad pattern.
    for hdrs in (OK, {**OK, "Nats-Schedule": "nonsense"}, {"Nats-Schedule-Next": "purge", "Nats-Scheduler": "p.y"}):
        assert await _puback_error(nc, "p.x", hdrs) == 10188


async def _puback_error(nc: Client, subject: str, hdrs: dict[str, str]) -> int | None:
    reply = json.loads((await nc.request(subject, b"x", timeout=2, headers=hdrs)).data)
    return reply["error"]["err_code"] if "error" in reply else None


async def _last(nc: Client, stream: str, subject: str) -> dict[str, Any] | None:
    reply = await api(nc, f"$JS.API.STREAM.MSG.GET.{stream}", {"last_by_subj": subject})
    return reply.get("message")


async def test_a_delayed_message_fires_once_and_purges_its_schedule(nc: Client, js: JetStreamContext) -> None:
    await api(nc, "$JS.API.STREAM.CREATE.S", {**SCHED, "allow_msg_ttl": True})
    hdrs = {
        "Nats-Schedule": PAST,
        "Nats-Schedule-Target": "s.out",
        "Nats-Schedule-TTL": "1m",
        "Nats-Msg-Id": "m1",
        "Nats-Expected-Last-Sequence": "0",
        "Job": "7",
    }
    ack = await js.publish("s.sched.1", b"payload", headers=hdrs)
    fired = await wait_for(lambda: _last(nc, "S", "s.out"))
    assert fired["seq"] == ack.seq + 1
    raw = base64.b64decode(fired["hdrs"]).decode()
    lines = sorted(raw.split("\r\n")[1:-2])
    assert lines == ["Job: 7", "Nats-Schedule-Next: purge", "Nats-Scheduler: s.sched.1", "Nats-TTL: 1m"]
    assert base64.b64decode(fired["data"]) == b"payload"
    assert await wait_for(lambda: _gone(nc, "S", "s.sched.1"))
    state = (await api(nc, "$JS.API.STREAM.INFO.S"))["state"]
    assert (state["messages"], state["last_seq"]) == (1, 2)


async def _gone(nc: Client, stream: str, subject: str) -> bool:
    return await _last(nc, stream, subject) is None


async def test_a_stored_schedule_carries_a_subject_rollup_and_replaces_the_last(
    nc: Client, js: JetStreamContext
) -> None:
    await api(nc, "$JS.API.STREAM.CREATE.S", SCHED)
    await js.publish("s.sched.r", b"1", headers=OK)
    second = await js.publish("s.sched.r", b"2", headers=OK)
    msg = await _last(nc, "S", "s.sched.r")
    assert msg is not None and msg["seq"] == second.seq
    assert "Nats-Rollup: sub" in base64.b64decode(msg["hdrs"]).decode()
    assert (await api(nc, "$JS.API.STREAM.INFO.S"))["state"]["messages"] == 1


async def test_a_repeating_schedule_fires_from_a_source_until_purged(nc: Client, js: JetStreamContext) -> None:
    await api(nc, "$JS.API.STREAM.CREATE.S", SCHED)
    await js.publish("s.src", b"latest", headers={"From": "src"})
    hdrs = {"Nats-Schedule": "@every 1s", "Nats-Schedule-Target": "s.tick", "Nats-Schedule-Source": "s.src"}
    await js.publish("s.sched.rep", b"own", headers=hdrs)
    fired = await wait_for(lambda: _last(nc, "S", "s.tick"))
    raw = base64.b64decode(fired["hdrs"]).decode()
    assert "From: src" in raw and "Nats-Scheduler: s.sched.rep" in raw and "Nats-Schedule-Next: 20" in raw
    assert base64.b64decode(fired["data"]) == b"latest"
    assert await _last(nc, "S", "s.sched.rep") is not None  # a repeating schedule stays
    purge = {"Nats-Schedule-Next": "purge", "Nats-Scheduler": "s.sched.rep"}
    await js.publish("s.stop", b"", headers=purge)
    assert await _gone(nc, "S", "s.sched.rep")


async def test_a_cron_schedule_writes_its_next_time_in_its_zone(nc: Client, js: JetStreamContext) -> None:
    await api(nc, "$JS.API.STREAM.CREATE.S", SCHED)
    hdrs = {"Nats-Schedule": "* * * * * *", "Nats-Schedule-Time-Zone": "Asia/Kolkata", "Nats-Schedule-Target": "s.c"}
    await js.publish("s.sched.cron", b"", headers=hdrs)
    fired = await wait_for(lambda: _last(nc, "S", "s.c"))
    await js.publish("s.stop", b"", headers={"Nats-Schedule-Next": "purge", "Nats-Scheduler": "s.sched.cron"})
    raw = base64.b64decode(fired["hdrs"]).decode()
    nxt = next(line for line in raw.split("\r\n") if line.startswith("Nats-Schedule-Next: "))
    assert nxt.endswith("+05:30") and "." not in nxt, nxt
