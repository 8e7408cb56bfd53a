"""Fuzz of every `$JS.API` subject: every request nats-server would answer gets a JetStream-shaped answer within
REPLY_BOUND, the service keeps serving after each one, and it restarts on what the fuzz left in its store.

Which requests may stay silent (as nats-server's do): those without a reply subject, CONSUMER.MSG.NEXT (a pull
request may wait for messages), and subjects with the wrong number of asset tokens for their verb. Every other
request is answered, by streamd or, where nothing subscribes (DIRECT.GET of a stream without allow_direct,
CONSUMER.RESET/UNPIN, which streamd does not serve), by the core server's 503 no-responders status.

STREAMD_FUZZ_EXAMPLES=n runs n examples; STREAMD_FUZZ_RANDOM=1 draws new inputs on every run.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import HealthCheck, Phase, assume, given, note, settings
from hypothesis import strategies as st

from tests.conftest import StartService
from tests.fuzz import checks
from tests.fuzz.env import REPLY_BOUND, FuzzEnv, run_examples
from tests.fuzz.known_broken import known_broken
from tests.fuzz.rawclient import Reply
from tests.fuzz.strategies import JSON_VERBS, VERBS, Request, derandomized, draw_request, examples
from tests.natsd import NatsServer

pytestmark = pytest.mark.timeout(600)

FUZZ_SETTINGS = settings(
    max_examples=examples(250),
    deadline=None,
    derandomize=derandomized(),
    database=None,
    report_multiple_bugs=False,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure can wedge the service for later examples
    suppress_health_check=list(HealthCheck),
)


def must_answer(req: Request) -> bool:
    if req.reply_tail is None or req.verb == "CONSUMER.MSG.NEXT":
        return False
    return req.tokens_ok or req.verb not in JSON_VERBS


def check_answer(req: Request, reply: Reply) -> None:
    if req.verb == "DIRECT.GET":
        checks.check_direct(reply)
    elif req.verb == "CONSUMER.MSG.NEXT":
        checks.check_pull(reply)
    elif reply.status == 503 and (not req.tokens_ok or req.verb not in JSON_VERBS):
        return  # nothing subscribes to it: the core server's no-responders status
    else:
        checks.check_json_answer(req.verb, reply)


async def one_request(env: FuzzEnv, req: Request) -> None:
    await env.reset_assets()
    must = must_answer(req)
    number, reply = await env.request(req.subject, req.body, req.reply_tail, req.headers, REPLY_BOUND if must else 0)
    if must:
        assert reply is not None, f"no answer within {REPLY_BOUND}s"
    await env.assert_serving()
    if reply is None and number:
        reply = await env.raw.reply(number, 0)  # a late or optional answer still has to be well formed
    env.raw.forget(number)
    if reply is not None:
        check_answer(req, reply)
        if req.verb in ("STREAM.CREATE", "STREAM.UPDATE"):
            await publish_to_new_stream(env, reply)


async def publish_to_new_stream(env: FuzzEnv, reply: Reply) -> None:
    """A stream the fuzz got created takes a publish: the PubAck (or error) is well formed and comes in time."""
    doc = json.loads(reply.payload)
    subjects = doc.get("config", {}).get("subjects") if "error" not in doc else None
    if not subjects:
        return
    subject = ".".join("x" if t in ("*", ">") else t for t in subjects[0].split("."))
    number, ack = await env.request(subject.encode(), b"probe", b"", None, REPLY_BOUND)
    env.raw.forget(number)
    assert ack is not None, f"no PubAck within {REPLY_BOUND}s for a publish to {subject!r} of the new stream"
    checks.check_puback(ack)
    await env.assert_serving()


async def test_every_api_request_gets_a_jetstream_shaped_answer(
    nats_server: NatsServer, start_service: StartService
) -> None:
    env = await FuzzEnv.start(nats_server, start_service)
    try:
        example = run_examples(asyncio.get_running_loop(), one_request)
        sent: list[Request] = []

        @FUZZ_SETTINGS
        @given(data=st.data())
        def fuzz(data: st.DataObject) -> None:
            req = draw_request(data)
            assume(known_broken(req) is None)
            note(repr(req))
            sent.append(req)
            example(env, req)

        await asyncio.to_thread(fuzz)
        assert {r.verb for r in sent} == set(VERBS), "some API verb was never fuzzed"
        await env.restart()
    finally:
        await env.close()
