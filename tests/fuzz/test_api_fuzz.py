"""Fuzz of every `$JS.API` subject: every request nats-server would answer gets a JetStream-shaped answer within
REPLY_BOUND, the service keeps serving after each one, and it restarts on what the fuzz left in its store.

Which requests may stay silent (as nats-server's do): those without a reply subject, CONSUMER.MSG.NEXT (a pull
request may wait for messages), and subjects with the wrong number of asset tokens for their verb. Every other
request is answered, by streamd or, where nothing subscribes (DIRECT.GET of a stream without allow_direct), by
the core server's 503 no-responders status.

STREAMD_FUZZ_EXAMPLES=n runs n examples; STREAMD_FUZZ_RANDOM=1 draws new inputs on every run.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from tests.conftest import StartService
from tests.fuzz import checks
from tests.fuzz.env import EXAMPLE_BOUND, REPLY_BOUND, FuzzEnv, run_examples
from tests.fuzz.rawclient import Reply
from tests.fuzz.strategies import (
    JSON_VERBS,
    PULL,
    STREAM,
    VERBS,
    Request,
    derandomized,
    draw_request,
    examples,
    templates,
)
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
    env.touched(req.verb, req.tokens_ok)
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
            note(repr(req))
            sent.append(req)
            example(env, req)

        await asyncio.to_thread(fuzz)
        if len(sent) >= 100:
            assert {r.verb for r in sent} == set(VERBS), "some API verb was never fuzzed"
        await env.restart()
    finally:
        await env.close()


EDGE_VALUES: list[Any] = [-1, 0, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 1.5, "1", "", ">", "x" * 10_000, None, [], {}]


def sweep_requests() -> list[tuple[str, Request]]:
    """Every field of every verb's valid request, set to each edge value in turn (with a short label)."""
    out: list[tuple[str, Request]] = []
    for verb in sorted(VERBS):
        for base in templates(verb, STREAM, PULL):
            if not isinstance(base, dict):
                continue
            for path in _leaf_paths(base):
                for value in EDGE_VALUES:
                    label = f"{verb} {'.'.join(path)}={json.dumps(value)}"
                    out.append((label, _sweep_request(verb, base, path, value)))
    return out


def _leaf_paths(doc: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for key, value in doc.items():
        if isinstance(value, dict):
            paths += _leaf_paths(value, (*prefix, key))
        elif key not in ("name", "durable_name", "stream_name"):  # the names must match the subject's
            paths.append((*prefix, key))
    return paths


def _sweep_request(verb: str, base: dict[str, Any], path: tuple[str, ...], value: Any) -> Request:
    body = copy.deepcopy(base)
    node = body
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    names = {"S": base.get("name") or base.get("stream_name") or STREAM, "C": PULL}
    if verb.startswith("CONSUMER.") and "CREATE" in verb:
        names["C"] = body["config"]["durable_name"] = "SW" + uuid.uuid4().hex[:12]
    if verb == "STREAM.CREATE":
        if "mirror" not in base:
            body["subjects"] = [f"sw.{uuid.uuid4().hex}"]  # a fresh stream each time: no overlap refusals
        names["S"] = body["name"] = "SW" + uuid.uuid4().hex[:12]
    tokens = [names[k] for k in VERBS[verb]]
    subject = ("$JS.API." + ".".join([verb, *tokens])).encode()
    return Request(verb, subject, b"", json.dumps(body).encode(), None, tokens_ok=True)


async def test_every_field_takes_edge_values(nats_server: NatsServer, start_service: StartService) -> None:
    """Not random: each field of each valid request gets -1, 2^63, 2^64, floats, wrong types; all failures listed."""
    env = await FuzzEnv.start(nats_server, start_service)
    failures: list[str] = []
    try:
        for label, req in sweep_requests():
            try:
                async with asyncio.timeout(EXAMPLE_BOUND):
                    await one_request(env, req)
            except AssertionError as exc:
                failures.append(f"{label} (body {req.body[:300]!r}): {str(exc).splitlines()[0][:300]}")
                if not env.service.task.done():
                    continue
                break
        await env.restart()
    finally:
        await env.close()
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures)
