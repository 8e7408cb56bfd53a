"""Far more streams than the old one-database-per-stream layout allowed (it failed at the 3,277th)."""

from __future__ import annotations

import asyncio
import json

from nats.aio.client import Client
from nats.js import JetStreamContext

from tests.conftest import RunningService, StartService

# Well past 3,276; kept at 4,000 for the test's runtime: each create still checks subject overlap against every
# stream (quadratic, a separate part of issue 9). scripts/bench_streams.py shows 100,000 at the store level.
N_STREAMS = 4_000


async def _create_all(nc: Client, n: int, window: int = 250) -> None:
    """STREAM.CREATE requests pipelined `window` at a time; every answer must be a created stream."""

    async def create(i: int) -> None:
        body = json.dumps({"name": f"M{i}", "subjects": [f"m.{i}"], "storage": "file"}).encode()
        reply = json.loads((await nc.request(f"$JS.API.STREAM.CREATE.M{i}", body, timeout=30)).data)
        assert "error" not in reply, reply
        assert reply["config"]["name"] == f"M{i}"

    for start in range(0, n, window):
        await asyncio.gather(*(create(i) for i in range(start, min(n, start + window))))


async def _account_streams(nc: Client) -> int:
    info = json.loads((await nc.request("$JS.API.INFO", b"", timeout=10)).data)
    return int(info["streams"])


async def test_four_thousand_streams_all_work_and_survive_a_restart(
    streamd: RunningService, start_service: StartService, nc: Client, js: JetStreamContext
) -> None:
    await _create_all(nc, N_STREAMS)
    assert await _account_streams(nc) == N_STREAMS
    probes = [0, 1, 3276, 3277, 3999]
    for i in probes:
        ack = await js.publish(f"m.{i}", b"hello %d" % i)
        assert (ack.stream, ack.seq) == (f"M{i}", 1)
    await js.delete_stream("M1")  # a delete among thousands touches no neighbour
    await streamd.stop()
    await start_service()
    assert await _account_streams(nc) == N_STREAMS - 1
    for i in (p for p in probes if p != 1):
        msg = await js.get_msg(f"M{i}", 1)
        assert (msg.subject, msg.data) == (f"m.{i}", b"hello %d" % i)
        assert (await js.stream_info(f"M{i}")).state.messages == 1
    ack = await js.publish("m.3999", b"again")
    assert ack.seq == 2
