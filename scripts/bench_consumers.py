#!/usr/bin/env python3
"""Many durable consumers on one streamd: create time, memory per consumer, tasks, publish latency, restart.

streamd runs in this process (so its RSS and tasks can be read) on a core nats-server from tests/natsd.py; the
consumers are pull consumers with explicit acks, spread over --streams streams and ten filters per stream. Shows
that idle consumers cost memory only (no task, no timer) and that a publish does not grow with their number.

    .venv/bin/python scripts/bench_consumers.py --consumers 100000      # ~2 min, ~600 MB
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import nats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.natsd: the suite's nats-server runner

from streamd import Service, ServiceConfig
from streamd.server.settings import SyncMode
from tests.natsd import NatsServer, run_nats_server


def rss_mib() -> int:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) // 1024
    return 0


async def start(ns: NatsServer, data: Path) -> tuple[Service, asyncio.Task[None], float]:
    service = Service(ServiceConfig(server=ns.url, leaf=ns.leaf_url, data=data, sync=SyncMode.NEVER))
    began = time.monotonic()
    task = asyncio.create_task(service.run())
    ready = asyncio.create_task(service.ready.wait())
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raises why it did not start
    return service, task, time.monotonic() - began


async def create_consumers(nc: nats.NATS, streams: int, per_stream: int) -> None:
    for s in range(streams):
        pending = []
        for i in range(per_stream):
            cfg = {"durable_name": f"c{i}", "ack_policy": "explicit", "filter_subject": f"s{s}.{i % 10}"}
            body = json.dumps({"stream_name": f"S{s}", "config": cfg}).encode()
            pending.append(nc.request(f"$JS.API.CONSUMER.CREATE.S{s}.c{i}", body, timeout=120))
            if len(pending) >= 200 or i == per_stream - 1:
                for reply in await asyncio.gather(*pending):
                    assert b'"error"' not in reply.data, reply.data
                pending = []


async def main(args: argparse.Namespace) -> None:
    per_stream = args.consumers // args.streams
    with tempfile.TemporaryDirectory() as tmp:
        async with run_nats_server(Path(tmp) / "natsd") as ns:
            service, task, _ = await start(ns, Path(tmp) / "data")
            nc = await nats.connect(ns.url)
            js = nc.jetstream(timeout=30)
            for s in range(args.streams):
                await js.add_stream(name=f"S{s}", subjects=[f"s{s}.>"])
            base = rss_mib()
            began = time.monotonic()
            await create_consumers(nc, args.streams, per_stream)
            created = time.monotonic() - began
            grown = rss_mib() - base
            tasks = sum(1 for t in asyncio.all_tasks() if t.get_name().startswith("streamd-consumer-S"))
            began = time.monotonic()
            await js.publish("s0.1", b"x")
            publish_ms = (time.monotonic() - began) * 1000
            total = per_stream * args.streams
            print(
                f"{total} consumers on {args.streams} streams: created in {created:.1f} s, +{grown} MiB RSS "
                f"({grown * 1024 / total:.1f} KiB each), {tasks} consumer tasks while idle, "
                f"a publish {publish_ms:.1f} ms"
            )
            await nc.close()
            service.stop()
            await task
            service, task, restart = await start(ns, Path(tmp) / "data")
            nc = await nats.connect(ns.url)
            js = nc.jetstream(timeout=30)
            info = json.loads((await nc.request("$JS.API.INFO", b"", timeout=30)).data)
            sub = await js.pull_subscribe("s0.1", durable="c1", stream="S0")
            fetched = await sub.fetch(1, timeout=30)
            print(
                f"restart to ready {restart:.1f} s; INFO counts {info['consumers']} consumers; {len(fetched)} fetched"
            )
            await nc.close()
            service.stop()
            await task


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--consumers", type=int, default=20_000)
    parser.add_argument("--streams", type=int, default=100)
    asyncio.run(main(parser.parse_args()))
