"""Copy rate of a mirror and of a source, streamd beside nats-server -js on the same machine.

Usage (from the project root, with the project's venv):

    .venv/bin/python scripts/bench_mirror.py [--count 50000] [--size 128] [--sync always]

For each system: a stream O gets --count messages (publish_async), then a mirror M and a sourcing stream S of O are
created at once and timed until each holds all of them (checked with STREAM.INFO every 20 ms). Prints messages per
second for each copy; exit status 1 when a copy is incomplete.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

import nats
from bench_publish import run_header, run_main, with_system
from nats.js import JetStreamContext
from nats.js.api import StreamConfig, StreamSource


async def fill(js: JetStreamContext, n: int, size: int) -> None:
    payload = os.urandom(size)
    await js.add_stream(name="O", subjects=["o.>"])
    pending = []
    for i in range(n):
        pending.append(await js.publish_async(f"o.{i % 16}", payload))
        if len(pending) >= 1000:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)


async def copy_rates(url: str, args: argparse.Namespace) -> dict[str, float]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(timeout=30, publish_async_max_pending=2000)
        await fill(js, args.count, args.size)
        start = time.monotonic()
        await js.add_stream(StreamConfig(name="M", mirror=StreamSource(name="O")))
        await js.add_stream(StreamConfig(name="S", sources=[StreamSource(name="O")]))
        done: dict[str, float] = {}
        deadline = start + args.timeout
        while len(done) < 2 and time.monotonic() < deadline:
            for name in ("M", "S"):
                if name not in done and (await js.stream_info(name)).state.messages >= args.count:
                    done[name] = time.monotonic() - start
            await asyncio.sleep(0.02)
        return {name: args.count / done[name] if name in done else 0.0 for name in ("M", "S")}
    finally:
        await nc.close()


async def amain(args: argparse.Namespace) -> int:
    header = await run_header(args, {"count": args.count, "size": args.size})
    warn: list[str] = []
    notes: list[str] = []
    results = {}
    for name in ("jetstream", "streamd"):
        results[name] = await with_system(name, args, warn, notes, lambda url: copy_rates(url, args))
    print(f"# streamd sync: {header['streamd_sync']} | nats-server {header['nats_server']}")
    print(f"# command: {header['command']}")
    print(f"# {args.count} messages of {args.size} B; mirror M and source S created together; msgs/s until complete")
    print(f"{'copy':<10}{'jetstream':>12}{'streamd':>12}")
    for copy, label in (("M", "mirror"), ("S", "source")):
        print(f"{label:<10}{results['jetstream'][copy]:>12,.0f}{results['streamd'][copy]:>12,.0f}")
        if not results["streamd"][copy]:
            warn.append(f"streamd {label} incomplete after {args.timeout} s")
    for w in warn:
        print(f"WARNING: {w}")
    return 1 if warn else 0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sync", choices=["always", "batch-interval", "never"], default="always")
    p.add_argument("--count", type=int, default=50_000, help="messages in the origin stream [50000]")
    p.add_argument("--size", type=int, default=128, help="payload bytes [128]")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the copies [120]")
    p.add_argument("--js-sync-always", action="store_true", help="JetStream reference with sync_interval: always")
    args = p.parse_args()
    args.embedded, args.attach = False, None
    return args


if __name__ == "__main__":
    sys.exit(run_main(amain, parse_args()))
