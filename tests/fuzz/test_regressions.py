"""Requests that once disabled streamd or went unanswered (found by the fuzz, issue 9), replayed one by one on a
streamd of their own with exactly the fuzz's checks, then a restart on the same data."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import pytest

from tests.conftest import StartService
from tests.fuzz.env import REPLY_BOUND, FuzzEnv
from tests.fuzz.strategies import Request
from tests.fuzz.test_api_fuzz import one_request
from tests.fuzz.test_publish_fuzz import HDR_CONFIG, HSTREAM, one_publish
from tests.natsd import NatsServer

pytestmark = pytest.mark.timeout(120)


def _api(verb: str, subject: bytes, body: bytes, reply_tail: bytes = b"") -> Callable[[FuzzEnv], Awaitable[None]]:
    async def run(env: FuzzEnv) -> None:
        await one_request(env, Request(verb, subject, reply_tail, body, None, tokens_ok=True))

    return run


async def _huge_ttl(env: FuzzEnv) -> None:
    await env.nc.request("$JS.API.STREAM.CREATE." + HSTREAM, json.dumps(HDR_CONFIG).encode(), timeout=REPLY_BOUND)
    await one_publish(env, b"hdr.a", b"NATS/1.0\r\nNats-TTL: 9223372036854775807\r\n\r\n", b"x")


async def _oversized_reply(env: FuzzEnv) -> None:
    ack = await env.js.publish("fz.big", b"x" * 800_000)
    body = json.dumps({"seq": ack.seq}).encode()
    await one_request(env, Request("STREAM.MSG.GET", b"$JS.API.STREAM.MSG.GET.FZ", b"", body, None, tokens_ok=True))


CASES: dict[str, Callable[[FuzzEnv], Awaitable[None]]] = {
    "non_utf8_api_subject": _api("STREAM.INFO", b"$JS.API.STREAM.INFO.\xff", b""),
    "non_utf8_pull_reply": _api("CONSUMER.MSG.NEXT", b"$JS.API.CONSUMER.MSG.NEXT.FZ.C1", b'{"no_wait":true}', b"\xff"),
    "wildcard_inside_token": _api("STREAM.CREATE", b"$JS.API.STREAM.CREATE.W", b'{"name":"W","subjects":["A*"]}'),
    "int_outside_int64": _api(
        "STREAM.CREATE", b"$JS.API.STREAM.CREATE.B", b'{"name":"B","subjects":["b"],"max_msgs":18446744073709551616}'
    ),
    "negative_or_huge_seq": _api("DIRECT.GET", b"$JS.API.DIRECT.GET.FZ", b'{"seq":-1}'),
    "huge_ttl": _huge_ttl,
    "oversized_reply": _oversized_reply,
}


@pytest.mark.parametrize("name", sorted(CASES))
async def test_a_request_that_once_broke_streamd_is_answered(
    nats_server: NatsServer, start_service: StartService, name: str
) -> None:
    env = await FuzzEnv.start(nats_server, start_service)
    try:
        await CASES[name](env)
        await env.restart()
    finally:
        await env.close()
