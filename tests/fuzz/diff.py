"""Side by side: every request of the edge-value sweep (test_api_fuzz.sweep_requests) and the known-broken
reproductions, sent to streamd and to a real `nats-server -js` set up the same way; prints where the answers differ
(answered / not, error code, status). A tool for whoever fixes input validation, not a test:

    .venv/bin/python -m tests.fuzz.diff [--all]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from streamd import Service, ServiceConfig
from tests.fuzz.env import REPLY_BOUND
from tests.fuzz.rawclient import RawClient, Reply
from tests.fuzz.strategies import Request
from tests.fuzz.test_api_fuzz import must_answer, sweep_requests
from tests.natsd import run_nats_server

SETUP = [
    (b"$JS.API.STREAM.CREATE.FZ", {"name": "FZ", "subjects": ["fz.>"], "allow_direct": True}),
    (
        b"$JS.API.CONSUMER.CREATE.FZ.C1",
        {"stream_name": "FZ", "config": {"durable_name": "C1", "ack_policy": "explicit"}},
    ),
]


def verdict(reply: Reply | None) -> str:
    if reply is None:
        return "no answer"
    if reply.status is not None and b"Nats-Sequence" not in (reply.headers or b""):
        return f"status {reply.status}"
    try:
        doc: Any = json.loads(reply.payload)
    except ValueError:
        return "message"
    if isinstance(doc, dict) and "error" in doc:
        err = doc["error"]
        return f"{err.get('code')}/{err.get('err_code')} {str(err.get('description'))[:70]}"
    return "ok"


async def answers(port: int, requests: list[Request]) -> list[str]:
    raw = await RawClient.connect(port)
    try:
        for subject, body in SETUP:
            number, reply = raw.new_reply()
            raw.publish(subject, json.dumps(body).encode(), reply)
            await raw.reply(number, REPLY_BOUND)
        number, reply = raw.new_reply()
        raw.publish(b"fz.a", b"a", reply)
        await raw.reply(number, REPLY_BOUND)
        out = []
        for req in requests:
            number, reply_subject = raw.new_reply(req.reply_tail or b"")
            raw.publish(req.subject, req.body, reply_subject, req.headers)
            out.append(verdict(await raw.reply(number, REPLY_BOUND if must_answer(req) else 0.3)))
        return out
    finally:
        await raw.close()


async def main(show_all: bool) -> int:
    labelled = sweep_requests()
    requests = [r for _, r in labelled]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        async with run_nats_server(base / "core") as core, run_nats_server(base / "js", jetstream=True) as ref:
            service = Service(ServiceConfig(server=core.url, leaf=core.leaf_url, data=base / "data"))
            task = asyncio.create_task(service.run())
            await service.ready.wait()
            try:
                ours = await answers(core.port, requests)
            finally:
                service.stop()
                await task
            theirs = await answers(ref.port, requests)
    differ = 0
    for (label, _req), a, b in zip(labelled, ours, theirs, strict=True):
        same = a.split(" ")[0] == b.split(" ")[0]
        differ += not same
        if show_all or not same:
            sys.stdout.write(f"{'  ' if same else '!='} {label[:90]}\n     streamd: {a}\n     nats-server: {b}\n")
    sys.stderr.write(f"{differ} of {len(requests)} answers differ\n")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--all", action="store_true", help="print agreeing answers too")
    sys.exit(asyncio.run(main(parser.parse_args().all)))
