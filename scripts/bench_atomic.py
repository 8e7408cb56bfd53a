"""Atomic batch publish against streamd: batches of N messages (intermediate messages without a reply, the commit
with one), against the same messages published one by one with `js.publish_async`; sync always, 128 B.

Usage (from the project root, with the project's venv):

    .venv/bin/python scripts/bench_atomic.py [--batches 50] [--size 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import nats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from streamd import Service, ServiceConfig
from tests.natsd import run_nats_server


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with run_nats_server(Path(tmp)) as server:
            service = Service(ServiceConfig(server=server.url, leaf=server.leaf_url, data=Path(tmp) / "data"))
            task = asyncio.create_task(service.run())
            await service.ready.wait()
            nc = await nats.connect(server.url)
            cfg = {"name": "A", "subjects": ["a.>"], "allow_atomic": True}
            await nc.request("$JS.API.STREAM.CREATE.A", json.dumps(cfg).encode())
            body = b"x" * 128
            started = time.perf_counter()
            for b in range(args.batches):
                for seq in range(1, args.size):
                    h = {"Nats-Batch-Id": f"b{b}", "Nats-Batch-Sequence": str(seq)}
                    await nc.publish("a.x", body, headers=h)
                h = {"Nats-Batch-Id": f"b{b}", "Nats-Batch-Sequence": str(args.size), "Nats-Batch-Commit": "1"}
                ack = json.loads((await nc.request("a.x", body, headers=h, timeout=10)).data)
                assert ack.get("count") == args.size, ack
            atomic = time.perf_counter() - started
            js = nc.jetstream(publish_async_max_pending=args.size)
            started = time.perf_counter()
            for _ in range(args.batches):
                futures = [await js.publish_async("a.y", body) for _ in range(args.size)]
                await asyncio.gather(*futures)
            single = time.perf_counter() - started
            n = args.batches * args.size
            print(
                f"{n} messages, batches of {args.size}: atomic {n / atomic:,.0f} msgs/s "
                f"({atomic / args.batches * 1000:.1f} ms per batch); publish_async {n / single:,.0f} msgs/s"
            )
            await nc.close()
            service.stop()
            await task


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--batches", type=int, default=50)
    p.add_argument("--size", type=int, default=100)
    asyncio.run(main(p.parse_args()))
