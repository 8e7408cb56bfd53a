"""Scrape cost of /metrics with many streams and consumers: how long one scrape takes, how big it is, and how much
it delays API requests that arrive meanwhile (the scrape runs on streamd's event loop).

Usage (from the project root, with the project's venv):

    .venv/bin/python scripts/bench_metrics.py [--streams 1000] [--consumers 10000] [--scrapes 20]

Starts `streamd serve` (embedded nats-server, temp data dir, --metrics-listen on a free loopback port), creates
--streams streams (one subject each, 3 messages each) and --consumers durable pull consumers spread evenly over
them, then times --scrapes sequential GET /metrics (wall time per scrape seen by the client; bytes), and the
round trip of $JS.API.INFO sent every 2 ms, alone and while scraping in a loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import statistics
import sys
import tempfile
import time

import nats
from nats.js.api import ConsumerConfig, StreamConfig


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _scrape(port: int) -> tuple[float, int]:
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
    body = await reader.read()
    writer.close()
    assert body.startswith(b"HTTP/1.1 200"), body[:100]
    return time.perf_counter() - started, len(body)


async def _api_latencies(nc: nats.NATS, seconds: float) -> list[float]:
    out: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        await nc.request("$JS.API.INFO", b"", timeout=5)
        out.append(time.perf_counter() - t)
        await asyncio.sleep(0.002)
    return out


def _ms(values: list[float]) -> str:
    q = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else values * 99
    med, p99, top = statistics.median(values) * 1000, q[98] * 1000, max(values) * 1000
    return f"median {med:.1f} ms, p99 {p99:.1f} ms, max {top:.1f} ms"


async def _setup(nc: nats.NATS, streams: int, consumers: int) -> None:
    js = nc.jetstream(timeout=30)
    per = max(1, consumers // streams)
    for i in range(streams):
        await js.add_stream(StreamConfig(name=f"S{i}", subjects=[f"s.{i}"]))
        for _ in range(3):
            await js.publish(f"s.{i}", b"x" * 32)
        await asyncio.gather(
            *(js.add_consumer(f"S{i}", ConsumerConfig(durable_name=f"c{j}", ack_wait=60)) for j in range(per))
        )
        if i % 100 == 99:
            print(f"  {i + 1} streams, {(i + 1) * per} consumers", file=sys.stderr)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--consumers", type=int, default=10000)
    ap.add_argument("--scrapes", type=int, default=20)
    args = ap.parse_args()
    port, leaf, mport = _free_port(), _free_port(), _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "streamd", "serve", "--data", f"{tmp}/d", "--port", str(port),
            "--leaf-port", str(leaf), "--metrics-listen", f"127.0.0.1:{mport}", "--log-level", "error",
        )  # fmt: skip
        try:
            nc = await _connect(port)
            t = time.perf_counter()
            await _setup(nc, args.streams, args.consumers)
            print(f"setup {time.perf_counter() - t:.1f}s", file=sys.stderr)
            await _scrape(mport)  # warm
            runs = [await _scrape(mport) for _ in range(args.scrapes)]
            took = [r[0] for r in runs]
            print(f"{args.streams} streams, {args.consumers} consumers: /metrics {runs[0][1] / 1e6:.2f} MB")
            print(f"scrape: {_ms(took)}")
            print(f"API INFO alone:           {_ms(await _api_latencies(nc, 3.0))}")
            stop = asyncio.Event()

            async def scrape_loop() -> None:
                while not stop.is_set():
                    await _scrape(mport)

            scraping = asyncio.create_task(scrape_loop())
            during = await _api_latencies(nc, 3.0)
            stop.set()
            await scraping
            print(f"API INFO while scraping:  {_ms(during)}")
            await nc.close()
        finally:
            proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 20)


async def _quiet(exc: Exception) -> None:
    pass


async def _connect(port: int) -> nats.NATS:
    for _ in range(200):
        try:
            nc = await nats.connect(f"nats://127.0.0.1:{port}", allow_reconnect=False, error_cb=_quiet)
            await nc.request("$JS.API.INFO", b"", timeout=1)
            return nc
        except Exception:
            await asyncio.sleep(0.1)
    raise SystemExit("streamd did not start")


if __name__ == "__main__":
    asyncio.run(main())
