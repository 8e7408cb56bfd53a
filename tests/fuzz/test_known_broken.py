"""One reproduction per entry of known_broken.py, each expected to fail (strict): when a fix lands, its test passes
unexpectedly, which fails the run until the entry and its xfail mark here are removed, so the fuzz covers the case
again. Each runs on its own streamd and checks exactly what the fuzz checks."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import pytest

from tests.conftest import StartService
from tests.fuzz.env import REPLY_BOUND, FuzzEnv
from tests.fuzz.known_broken import KNOWN_BROKEN, KNOWN_BROKEN_OTHER, KNOWN_BROKEN_PUBLISH
from tests.fuzz.strategies import Request
from tests.fuzz.test_api_fuzz import one_request
from tests.fuzz.test_publish_fuzz import HDR_CONFIG, HSTREAM, one_publish
from tests.natsd import NatsServer

pytestmark = pytest.mark.timeout(120)


def _api(verb: str, subject: bytes, body: bytes, reply_tail: bytes = b"") -> Callable[[FuzzEnv], Awaitable[None]]:
    async def run(env: FuzzEnv) -> None:
        await one_request(env, Request(verb, subject, reply_tail, body, None, tokens_ok=True))
        await env.restart()

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


def test_every_known_failure_has_a_reproduction() -> None:
    assert set(CASES) == set(KNOWN_BROKEN) | set(KNOWN_BROKEN_PUBLISH) | set(KNOWN_BROKEN_OTHER)


@pytest.mark.xfail(strict=True, reason="known broken (issue 9); see tests/fuzz/known_broken.py")
@pytest.mark.parametrize("name", sorted(CASES))
async def test_known_failure_still_fails(nats_server: NatsServer, start_service: StartService, name: str) -> None:
    env = await FuzzEnv.start(nats_server, start_service)
    try:
        await CASES[name](env)
    finally:
        await env.close()
